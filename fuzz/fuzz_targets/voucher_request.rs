//! A payer's voucher request on `/paych/voucher/1.0.0`, as the payee reads it: the voucher,
//! the flow reference and the optional announce with the payer's signed peer record.
//!
//! The bytes are read exactly as a node reads them from a libp2p stream (size limit, item
//! budget, typed decoder). Reading never panics and refuses with a typed `CodecError`; an
//! accepted message re-encodes within its limits and decodes back to itself, and verifying
//! its peer record (signature, PeerId, multiaddrs) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_fuzz::{check_wire, read_request};
use paych_protocol::{VoucherRequest, VoucherResponse};

fuzz_target!(|data: &[u8]| {
    let read = read_request::<VoucherRequest, VoucherResponse>(data);
    if let Ok(request) = &read {
        if let Some(announce) = &request.announce {
            let _ = announce.peer_record.verify();
        }
    }
    check_wire(read);
});
