//! A payee's answer to a voucher on `/paych/voucher/1.0.0`, as the payer reads it.
//!
//! The bytes are read exactly as a node reads them from a libp2p stream (size limit, item
//! budget, typed decoder). Reading never panics and refuses with a typed `CodecError`; an
//! accepted message re-encodes within its limits and decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_fuzz::{check_wire, read_response};
use paych_protocol::{VoucherRequest, VoucherResponse};

fuzz_target!(|data: &[u8]| {
    check_wire(read_response::<VoucherRequest, VoucherResponse>(data));
});
