//! Signed peer records (binding a Filecoin key address to a libp2p peer) and the announce
//! that carries one, from their CBOR. The first byte picks the type.
//!
//! Decoding never panics; an accepted record re-encodes canonically to itself, and verifying
//! it (signature, PeerId, multiaddrs) never panics. A record that verifies names the
//! address that signed it and carries its sequence number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_fuzz::check_cbor;
use paych_protocol::{Announce, SignedPeerRecord};

fn check_verified(record: &SignedPeerRecord) {
    if let Ok(peer) = record.verify() {
        assert_eq!(peer.address, record.record.address);
        assert_eq!(peer.sequence, record.record.sequence);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, cbor)) = data.split_first() else { return };
    if kind % 2 == 0 {
        if let Some(record) = check_cbor!("signed peer record", cbor, SignedPeerRecord) {
            check_verified(&record);
        }
    } else if let Some(announce) = check_cbor!("announce", cbor, Announce) {
        check_verified(&announce.peer_record);
    }
});
