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
    let deadline = Instant::now() + limit;
    let mut last = anyhow!("condition not met");
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => {}
            Ok(Err(e)) if e.downcast_ref::<Stop>().is_some() => return Err(e),
            Ok(Err(e)) => last = e,
            // Keep what the tries before said: it is usually why.
            Err(_) => last = last.context("the last try did not answer before the deadline"),
        }
        if Instant::now() >= deadline {
            return Err(last.context(format!("gave up after {} s", limit.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

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
}
