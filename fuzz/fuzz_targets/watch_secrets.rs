//! The watchtower's reading of a tipset's messages: the fuzz bytes are the parameters of an
//! `UpdateChannelState` message to a watched channel (the first byte picks whether it names
//! the channel by its robust or its ID address, and whether every hash is wanted).
//!
//! `secrets_in` never panics; every secret it finds is 1 to 256 bytes, hashes to the payment
//! hash it reports, and was found in the one message given, on the watched channel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_core::chain::ChainMessage;
use paych_core::crypto::blake2b_256;
use paych_core::types::{paych_method, Address, Message, TokenAmount, MAX_SECRET_SIZE};
use paych_core::watch::{secrets_in, WatchSet};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, params)) = data.split_first() else { return };
    let channel = Address::new_actor(b"watched channel");
    let id = Address::new_id(1500);
    let mut watched = WatchSet::new();
    watched.watch(channel, Some(id));
    let to = if flags & 1 == 0 { channel } else { id };
    let method = paych_method::UPDATE_CHANNEL_STATE;
    let message =
        Message::new(Address::new_id(1600), to, 0, TokenAmount::default(), method, params.to_vec());
    let Ok(cid) = message.cid() else { return };
    let messages = [ChainMessage { cid, message }];
    let wanted = |hash: &[u8]| flags & 2 == 0 || hash.first() == Some(&flags);
    for found in secrets_in(7, &messages, &watched, wanted) {
        assert!((1..=MAX_SECRET_SIZE).contains(&found.secret.len()));
        assert_eq!(found.payment_hash, blake2b_256(&found.secret).to_vec());
        assert_eq!((found.channel, found.message, found.epoch), (channel, cid, 7));
    }
});
