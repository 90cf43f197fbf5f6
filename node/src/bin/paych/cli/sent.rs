//! The messages `paych settle`, `collect` and `voucher submit` send, waited for with the
//! texts of `lotus paych settle`, `collect` and `voucher submit` (Lotus `cli/paych.go`):
//! `StateWaitMsg` on the daemon's API, a failed message refused with its exit code, and
//! Lotus's line once it has landed.

use std::time::Duration;

use anyhow::bail;
use paych_core::lotus_json::CidJson;
use paych_core::types::{Address, SignedVoucher};
use paych_node::rpc::methods::PaychVoucherSubmit;
use paych_node::rpc::params::Bytes;

use super::wait::{Awaited, Waiter};
use super::{show, Daemon};

/// A message a command sends to a channel.
#[derive(Debug, Clone, Copy)]
pub enum ChannelMessage {
    /// `PaychSettle`.
    Settle,
    /// `PaychCollect`.
    Collect,
    /// `PaychVoucherSubmit`.
    Submit,
}

impl ChannelMessage {
    /// What the message does, for the texts of the wait.
    fn doing(self, channel: &str) -> String {
        match self {
            ChannelMessage::Settle => format!("settling channel {channel}"),
            ChannelMessage::Collect => format!("collecting funds from channel {channel}"),
            ChannelMessage::Submit => format!("submitting a voucher to channel {channel}"),
        }
    }

    /// Lotus's error for the message failing with `exit_code`.
    fn failed(self, exit_code: i64) -> String {
        match self {
            ChannelMessage::Settle => {
                format!("settle message execution failed (exit code {exit_code})")
            }
            ChannelMessage::Collect => {
                format!("collect message execution failed (exit code {exit_code})")
            }
            ChannelMessage::Submit => format!("message execution failed (exit code {exit_code})"),
        }
    }

    /// Lotus's line once the message has landed.
    fn done(self, channel: &str) -> String {
        match self {
            ChannelMessage::Settle => format!("Settled channel {channel}\n"),
            ChannelMessage::Collect => format!("Collected funds for channel {channel}\n"),
            ChannelMessage::Submit => "channel updated successfully\n".to_owned(),
        }
    }
}

/// `paych voucher submit`: `PaychVoucherSubmit` (no secret, no proof), then the message
/// waited for.
pub async fn submit(
    out: &mut String,
    daemon: &Daemon,
    (channel, voucher): (Address, SignedVoucher),
    timeout: Duration,
) -> anyhow::Result<()> {
    let params = (channel, voucher, Bytes::default(), Bytes::default());
    let cid = daemon.api.call::<PaychVoucherSubmit>(params).await?;
    wait_for(out, daemon, (ChannelMessage::Submit, channel, cid), timeout).await
}

/// Waits for `message`, sent to `channel` as `cid`; prints Lotus's line once it has
/// landed, or fails with Lotus's error naming its exit code.
pub async fn wait_for(
    out: &mut String,
    daemon: &Daemon,
    (message, channel, cid): (ChannelMessage, Address, CidJson),
    timeout: Duration,
) -> anyhow::Result<()> {
    let channel = daemon.show(&channel).await?;
    let awaited = Awaited { cid: show::cid(&cid)?, what: message.doing(&channel) };
    let lookup = Waiter::new(&daemon.api, timeout).wait_message(&awaited).await?;
    if lookup.receipt.exit_code != 0 {
        bail!(message.failed(lookup.receipt.exit_code));
    }
    out.push_str(&message.done(&channel));
    Ok(())
}
