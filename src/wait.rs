//! Waiting on a condition with a deadline: every wait in pgha polls.

use std::time::Duration;

use anyhow::anyhow;
use tokio::time::Instant;

/// How long one remote call may take unless its caller gives it longer (a
/// package install, a backup, a restore): a host whose storage or network
/// hangs fails the call, and so the command, instead of holding it forever.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// For the calls that move a whole data directory or install packages.
pub const LONG_DEADLINE: Duration = Duration::from_secs(6 * 3600);

/// An error that ends a [`poll`] at once instead of being tried again.
#[derive(Debug)]
pub(crate) struct Stop(pub String);

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stop {}

/// Polls `check` until it returns Ok(true) or the deadline passes; the last
/// error is the cause reported. A try still running at the deadline is
/// abandoned: a host that hangs cannot hold the wait past its bound. A
/// [`Stop`] error ends it at once.
pub(crate) async fn poll<F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    poll_for(limit, || {
        let now = check();
        async move { now.await.map(|done| done.then_some(())) }
    })
    .await
}

/// [`poll`] for a value: `check` returns `Some` of what it waited for,
/// `None` to try again (an error also tries again, and is the cause
/// reported should the deadline pass).
pub(crate) async fn poll_for<T, F, Fut>(limit: Duration, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    drive(limit, check, |found| found).await
}

/// What a [`poll_seen`] ended with: the last value a try saw (`None` when no
/// try answered) and whether it was the one waited for.
pub(crate) struct Seen<T> {
    pub last: Option<T>,
    pub outcome: anyhow::Result<()>,
}

/// [`poll`] that keeps what the last try saw, met or not: `check` returns
/// it, and `done` says whether it is what the wait is for.
pub(crate) async fn poll_seen<T, F, Fut>(limit: Duration, check: F, done: impl Fn(&T) -> bool) -> Seen<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut last = None;
    let outcome = drive(limit, check, |seen| {
        let met = done(&seen);
        last = Some(seen);
        met.then_some(())
    })
    .await;
    Seen { last, outcome }
}

/// The one polling loop: each try's answer goes to `judge`, whose `Some`
/// ends the wait.
async fn drive<T, R, F, Fut>(limit: Duration, mut check: F, mut judge: impl FnMut(T) -> Option<R>) -> anyhow::Result<R>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + limit;
    let mut last = anyhow!("condition not met");
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(seen)) => {
                if let Some(found) = judge(seen) {
                    return Ok(found);
                }
            }
            Ok(Err(e)) if e.downcast_ref::<Stop>().is_some() => return Err(e),
            Ok(Err(e)) => last = e,
            // Keep what the tries before said: it is usually why.
            Err(_) => last = last.context("the last try did not answer before the deadline"),
        }
        if Instant::now() >= deadline {
            return Err(last.context(format!("gave up after {} s", limit.as_secs())));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The pause between tries. Each try is a remote round trip or more; a
/// quarter second keeps a flip's or a switchover's waits (several in a row,
/// each on the write path) from adding up to seconds of nothing.
const POLL_EVERY: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_try_that_never_ends_is_cut_at_the_deadline() {
        let started = Instant::now();
        let e = poll(Duration::from_secs(10), || {
            std::future::pending::<anyhow::Result<bool>>()
        })
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("did not answer before the deadline"), "{e:#}");
        assert_eq!(started.elapsed().as_secs(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_hands_back_what_it_found_and_what_it_last_saw() {
        let mut n = 0;
        let found = poll_for(Duration::from_secs(10), || {
            n += 1;
            let now = n;
            async move { Ok((now == 3).then_some(now * 10)) }
        })
        .await
        .unwrap();
        assert_eq!(found, 30);
        let mut n = 0;
        let seen = poll_seen(
            Duration::from_secs(2),
            || {
                n += 1;
                let now = n;
                async move { Ok(now) }
            },
            |&v| v > 100,
        )
        .await;
        assert!(seen.outcome.is_err());
        // Tries every quarter second within 2 s, the last one at the deadline.
        assert_eq!(seen.last, Some(9));
        let seen = poll_seen(Duration::from_secs(1), || async { anyhow::Ok(7) }, |&v| v == 7).await;
        assert!(seen.outcome.is_ok());
        assert_eq!(seen.last, Some(7));
    }
}
