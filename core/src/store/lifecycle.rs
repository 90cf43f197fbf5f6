//! The transitions of a channel's, a voucher's and a chain message's life, as methods of
//! their records. Each names the states it may start from and refuses any other with a
//! [`LifecycleError`], changing nothing; the manager changes a record's state only through
//! them.
//!
//! A channel: `Creating → Open` (its create landed) or `Creating → CreateFailed`;
//! `Open → Settling` (a settle sent or landed, or seen on chain), back to `Open` only when a
//! settle this node sent is refused or fails before the chain settles; `Settling ⇄ Settled`
//! as the head passes `settling_at` (an update with a later `min_settle_height` moves it
//! back); `Open | Settling | Settled → Collected`.
//!
//! A chain message: `Recorded → Pushed`, `Recorded | Pushed → Landed | Refused`.
//!
//! A voucher: marked submitted (and unmarked when its submit fails), marked superseded.

use super::{
    ChannelId, ChannelRecord, Direction, Lifecycle, MessageRecord, MessageState, VoucherRecord,
};
use crate::types::{Address, ChainEpoch, TokenAmount};

/// A transition asked of a record in a state it may not start from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot go from {from} to {to}")]
pub struct LifecycleError {
    /// The state the record is in.
    pub from: String,
    /// The state asked for.
    pub to: &'static str,
}

fn refuse(from: impl std::fmt::Debug, to: &'static str) -> LifecycleError {
    LifecycleError { from: format!("{from:?}"), to }
}

impl ChannelRecord {
    /// A channel's record at its birth in `lifecycle`: its parties, our key on it (`from`
    /// when outbound, `to` when inbound), and nothing else known yet — no address, no
    /// funds, no lanes.
    pub fn new(
        id: ChannelId,
        direction: Direction,
        from: Address,
        to: Address,
        lifecycle: Lifecycle,
    ) -> Self {
        ChannelRecord {
            id,
            direction,
            channel: None,
            id_address: None,
            from,
            to,
            control: if direction == Direction::Outbound { from } else { to },
            lifecycle,
            confirmed: TokenAmount::default(),
            pending: TokenAmount::default(),
            pending_message: None,
            queued: TokenAmount::default(),
            queued_reserve: TokenAmount::default(),
            reserved: TokenAmount::default(),
            next_lane: 0,
            free_lanes: Vec::new(),
            closed_lanes: Vec::new(),
            settling_at: 0,
            create_error: None,
            queue_failure: None,
            credited: None,
        }
    }

    fn expect(&self, allowed: &[Lifecycle], to: &'static str) -> Result<(), LifecycleError> {
        if allowed.contains(&self.lifecycle) {
            Ok(())
        } else {
            Err(refuse(self.lifecycle, to))
        }
    }

    /// Its create message landed: the channel has its addresses and is open.
    pub fn created(&mut self, robust: Address, id_address: Address) -> Result<(), LifecycleError> {
        self.expect(&[Lifecycle::Creating], "Open")?;
        self.channel = Some(robust);
        self.id_address = Some(id_address);
        self.lifecycle = Lifecycle::Open;
        Ok(())
    }

    /// Its create message was refused or failed, for `reason`.
    pub fn create_failed(&mut self, reason: &str) -> Result<(), LifecycleError> {
        self.expect(&[Lifecycle::Creating], "CreateFailed")?;
        self.lifecycle = Lifecycle::CreateFailed;
        self.create_error = Some(reason.to_owned());
        Ok(())
    }

    /// A settle is on its way (sent by this node, or landed): the channel takes no new
    /// payments. A channel already past its `settling_at` stays settled.
    pub fn begin_settling(&mut self) -> Result<(), LifecycleError> {
        self.expect(&[Lifecycle::Open, Lifecycle::Settling, Lifecycle::Settled], "Settling")?;
        if self.lifecycle != Lifecycle::Settled {
            self.lifecycle = Lifecycle::Settling;
        }
        Ok(())
    }

    /// The settle this node sent was refused or failed: a channel the chain has not settled
    /// (no `settling_at` known) is open again. Answers whether it changed.
    pub fn settle_undone(&mut self) -> bool {
        if self.lifecycle == Lifecycle::Settling && self.settling_at == 0 {
            self.lifecycle = Lifecycle::Open;
            return true;
        }
        false
    }

    /// The chain settles the channel at `settling_at`: settling before it, settled from it
    /// on (at `head`).
    pub fn settling_seen(
        &mut self,
        settling_at: ChainEpoch,
        head: ChainEpoch,
    ) -> Result<(), LifecycleError> {
        let to = if head >= settling_at { Lifecycle::Settled } else { Lifecycle::Settling };
        let name = if to == Lifecycle::Settled { "Settled" } else { "Settling" };
        self.expect(&[Lifecycle::Open, Lifecycle::Settling, Lifecycle::Settled], name)?;
        self.lifecycle = to;
        self.settling_at = settling_at;
        Ok(())
    }

    /// Its collect landed, or the actor is gone from the chain.
    pub fn mark_collected(&mut self) -> Result<(), LifecycleError> {
        self.expect(
            &[Lifecycle::Open, Lifecycle::Settling, Lifecycle::Settled, Lifecycle::Collected],
            "Collected",
        )?;
        self.lifecycle = Lifecycle::Collected;
        Ok(())
    }
}

impl VoucherRecord {
    /// Submitted on chain (or below one that was); answers whether it changed.
    pub fn mark_submitted(&mut self) -> bool {
        !std::mem::replace(&mut self.submitted, true)
    }

    /// Its submit was refused or failed: it can be submitted again. Answers whether it
    /// changed.
    pub fn unmark_submitted(&mut self) -> bool {
        std::mem::replace(&mut self.submitted, false)
    }

    /// Folded into a combined voucher: no longer redeemable on its own.
    pub fn mark_superseded(&mut self) {
        self.superseded = true;
    }
}

impl MessageRecord {
    /// Whether it is still on its way (recorded or pushed, neither landed nor refused).
    pub fn is_open(&self) -> bool {
        matches!(self.state, MessageState::Recorded | MessageState::Pushed)
    }

    fn resolve(&mut self, state: MessageState, to: &'static str) -> Result<(), LifecycleError> {
        if !self.is_open() {
            return Err(refuse(&self.state, to));
        }
        self.state = state;
        Ok(())
    }

    /// The message pool took it.
    pub fn mark_pushed(&mut self) -> Result<(), LifecycleError> {
        self.resolve(MessageState::Pushed, "Pushed")
    }

    /// The message pool refused it, for `reason`: it will never land.
    pub fn mark_refused(&mut self, reason: String) -> Result<(), LifecycleError> {
        self.resolve(MessageState::Refused { reason }, "Refused")
    }

    /// It executed with `exit_code` at `epoch`, returning `return_data`.
    pub fn mark_landed(
        &mut self,
        exit_code: u32,
        epoch: ChainEpoch,
        return_data: Vec<u8>,
    ) -> Result<(), LifecycleError> {
        self.resolve(MessageState::Landed { exit_code, epoch, return_data }, "Landed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(lifecycle: Lifecycle) -> ChannelRecord {
        let (from, to) = (Address::new_id(1000), Address::new_id(1001));
        ChannelRecord::new(1, Direction::Outbound, from, to, lifecycle)
    }

    #[test]
    fn a_transition_from_a_state_it_may_not_start_from_changes_nothing() {
        let mut record = channel(Lifecycle::Collected);
        let before = record.clone();
        assert!(record.begin_settling().is_err());
        assert!(record.settling_seen(10, 5).is_err());
        assert!(record.created(Address::new_id(1), Address::new_id(2)).is_err());
        assert!(record.create_failed("no").is_err());
        assert_eq!(record, before);
        let mut creating = channel(Lifecycle::Creating);
        assert!(creating.mark_collected().is_err());
        assert_eq!(creating, channel(Lifecycle::Creating));
    }

    #[test]
    fn a_channel_walks_its_life_from_creating_to_collected() {
        let mut record = channel(Lifecycle::Creating);
        record.created(Address::new_id(1), Address::new_id(2)).unwrap();
        assert_eq!(record.lifecycle, Lifecycle::Open);
        record.begin_settling().unwrap();
        assert!(record.settle_undone(), "a refused settle reopens the channel");
        record.settling_seen(10, 5).unwrap();
        assert_eq!((record.lifecycle, record.settling_at), (Lifecycle::Settling, 10));
        assert!(!record.settle_undone(), "the chain settles it: no way back");
        record.settling_seen(10, 10).unwrap();
        assert_eq!(record.lifecycle, Lifecycle::Settled);
        record.begin_settling().unwrap();
        assert_eq!(record.lifecycle, Lifecycle::Settled, "a late settle does not undo settled");
        record.mark_collected().unwrap();
        assert_eq!(record.lifecycle, Lifecycle::Collected);
    }

    #[test]
    fn a_resolved_message_is_neither_refused_nor_landed_again() {
        use crate::store::MessagePurpose;
        use crate::types::{Message, Signature, SignedMessage, TokenAmount};
        let a = Address::new_id(1000);
        let message = Message::new(a, a, 0, TokenAmount::default(), 0, Vec::new());
        let signed = SignedMessage { message, signature: Signature::new_secp256k1(vec![0; 65]) };
        let mut record = MessageRecord {
            cid: crate::types::cid_of(b"message"),
            signed,
            purpose: MessagePurpose::Settle { channel: 1 },
            state: MessageState::Recorded,
        };
        record.mark_pushed().unwrap();
        record.mark_landed(0, 7, Vec::new()).unwrap();
        let landed = record.clone();
        assert!(record.mark_refused("late".into()).is_err());
        assert!(record.mark_landed(1, 8, Vec::new()).is_err());
        assert!(record.mark_pushed().is_err());
        assert_eq!(record, landed, "a refused transition changes nothing");
    }
}
