//! The one deadline a test waits for anything, and the ways to wait within it.
//!
//! Reaching the deadline is a failure, not a measurement: it is generous because the
//! machine may be busy.

use std::future::Future;
use std::time::Duration;

/// How long a test waits for something that should happen before it gives up.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(10);

/// Awaits `f`, failing the test if it has not finished within [`DEADLINE`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(out) => out,
        Err(_) => panic!("gave up waiting for {what}"),
    }
}

/// Polls `check` until it answers true, failing the test after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `read` (a blocking check, for tests without a runtime) every `every` until it
/// answers `Some`, failing the test with `what` after [`DEADLINE`].
pub fn wait_until<T>(what: &str, every: Duration, mut read: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = read() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "{what}");
        std::thread::sleep(every);
    }
}
