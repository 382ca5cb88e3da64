//! Waiting on a condition with a deadline: every wait in pgha polls.

use std::time::Duration;

use anyhow::anyhow;
use tokio::time::Instant;

/// Polls `check` until it returns Ok(true) or the deadline passes; the last
/// error is the cause reported.
pub(crate) async fn poll<F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    let mut last = anyhow!("condition not met");
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(last.context(format!("gave up after {} s", limit.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
