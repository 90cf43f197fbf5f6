//! Waiting for a chain message, as `lotus paych add-funds`, `settle`, `collect` and
//! `voucher submit` wait (Lotus `cli/paych.go`): the call that waits runs on the daemon
//! (`PaychGetWaitReady`, `StateWaitMsg`), while the epoch reached goes to standard error
//! and a timeout (`--timeout`) ends the wait with an error naming the message and what it
//! does. Standard output is left to the command's answer.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use cid::Cid;
use paych_core::lotus_json::MsgLookupJson;
use paych_node::rpc::client::{ApiClient, ClientError};
use paych_node::rpc::methods::{ChainHead, StateWaitMsg};

/// How long a command waits for its message unless `--timeout` says otherwise: on mainnet a
/// message lands in an epoch or two of 30 s and then needs [`MESSAGE_CONFIDENCE`] more.
pub const DEFAULT_TIMEOUT: &str = "10m";
/// How many epochs must pass over a message before it counts as landed: Lotus's
/// `buildconstants.MessageConfidence`, which its `paych` commands wait with.
pub const MESSAGE_CONFIDENCE: u64 = 5;
/// `StateWaitMsg`'s `limit`: look back over the whole chain (Lotus's `LookbackNoLimit`).
const LOOKBACK_NO_LIMIT: i64 = -1;
/// How often the head is read while waiting, to report progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How much longer than the wait its HTTP call may take, so that the wait's own timeout —
/// which names the message — ends it rather than the HTTP client's.
const CALL_MARGIN: Duration = Duration::from_secs(30);

/// A message being waited for: its CID and what it does, for the texts.
#[derive(Debug, Clone)]
pub struct Awaited {
    /// The message.
    pub cid: Cid,
    /// What it does: `creating the channel from t1… to t1…`, `settling channel t2…`.
    pub what: String,
}

/// The wait ended before the message landed.
#[derive(Debug, thiserror::Error)]
#[error(
    "timed out after {after} waiting for message {cid} ({what}) to land on chain; the \
     daemon still tracks it: it may land later (raise --timeout to wait longer)"
)]
pub struct TimedOut {
    /// How long the command waited.
    pub after: String,
    /// The message.
    pub cid: Cid,
    /// What it does.
    pub what: String,
}

/// Waits for messages on one daemon, for at most `timeout` each.
pub struct Waiter {
    /// The daemon, its calls allowed to take the whole wait.
    api: ApiClient,
    /// The daemon, its calls as short as usual (progress).
    quick: ApiClient,
    timeout: Duration,
}

impl Waiter {
    /// Waits on `api`'s daemon, for at most `timeout`.
    pub fn new(api: &ApiClient, timeout: Duration) -> Self {
        let long = api.clone().with_timeout(timeout.saturating_add(CALL_MARGIN));
        Waiter { api: long, quick: api.clone(), timeout }
    }

    /// Waits for `awaited` to land with [`MESSAGE_CONFIDENCE`] (`StateWaitMsg`, a replacing
    /// message accepted as Lotus's v0 API does); answers its lookup.
    pub async fn wait_message(&self, awaited: &Awaited) -> anyhow::Result<MsgLookupJson> {
        let params = (awaited.cid, MESSAGE_CONFIDENCE, LOOKBACK_NO_LIMIT, true);
        self.wait(awaited, |api| api.call::<StateWaitMsg>(params)).await
    }

    /// Runs `call` (which waits on the daemon for `awaited`), reporting progress on standard
    /// error, and ends it with [`TimedOut`] once the timeout has passed.
    pub async fn wait<'a, T, F, Fut>(&'a self, awaited: &Awaited, call: F) -> anyhow::Result<T>
    where
        F: FnOnce(&'a ApiClient) -> Fut,
        Fut: Future<Output = Result<T, ClientError>> + 'a,
    {
        let waited = async {
            tokio::select! {
                answer = call(&self.api) => answer,
                never = report_progress(&self.quick, &awaited.cid) => match never {},
            }
        };
        match tokio::time::timeout(self.timeout, waited).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(TimedOut {
                after: duration_text(self.timeout),
                cid: awaited.cid,
                what: awaited.what.clone(),
            }
            .into()),
        }
    }
}

/// Prints `waiting for message CID (epoch N)` on standard error now and whenever the head
/// has moved since the last report, every [`PROGRESS_EVERY`]; never ends.
async fn report_progress(api: &ApiClient, cid: &Cid) -> Infallible {
    let mut reported: Option<Option<i64>> = None;
    loop {
        let head = head_epoch(api).await;
        if reported != Some(head) {
            match head {
                Some(epoch) => eprintln!("waiting for message {cid} (epoch {epoch})"),
                None if reported.is_none() => eprintln!("waiting for message {cid}"),
                None => {}
            }
            reported = Some(head);
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

/// The epoch of the daemon's chain head, if it answers it.
async fn head_epoch(api: &ApiClient) -> Option<i64> {
    api.call::<ChainHead>(()).await.ok().map(|head| head.height)
}

/// A duration as `--timeout` reads it: `10m`, `90s`, `500ms`.
pub fn duration_text(d: Duration) -> String {
    let millis = d.as_millis();
    match millis {
        m if m % 60_000 == 0 && m > 0 => format!("{}m", m / 60_000),
        m if m % 1000 == 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_the_flag_reads_them() {
        for text in ["10m", "90s", "500ms", "0s", "2m"] {
            let parsed = paych_node::parse_duration(text).unwrap_or_default();
            assert_eq!(duration_text(parsed), text);
        }
    }
}
