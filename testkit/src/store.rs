//! A snapshot of everything a store holds that the manager writes, to show that a refused
//! operation changed nothing.

use paych_core::store::{ChannelRecord, MessageRecord, Store, VoucherRecord};

/// Everything a store holds that the manager writes: channels, their vouchers, messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSnapshot {
    /// Every channel.
    pub channels: Vec<ChannelRecord>,
    /// Every voucher of every channel, channel by channel.
    pub vouchers: Vec<VoucherRecord>,
    /// Every message, in CID order.
    pub messages: Vec<MessageRecord>,
}

impl StoreSnapshot {
    /// What `store` holds now.
    pub fn of(store: &dyn Store) -> Self {
        let channels = store.channels().unwrap();
        let vouchers =
            channels.iter().flat_map(|c| store.vouchers(c.id).unwrap()).collect::<Vec<_>>();
        let mut messages = store.messages().unwrap();
        messages.sort_by_key(|m| m.cid.to_bytes());
        StoreSnapshot { channels, vouchers, messages }
    }
}
