//! A payee's reconcile request on `/paych/reconcile/1.0.0`, as the payer reads it.
//!
//! The bytes are read exactly as a node reads them from a libp2p stream (size limit, item
//! budget, typed decoder). Reading never panics and refuses with a typed `CodecError`; an
//! accepted message re-encodes within its limits and decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_fuzz::{check_wire, read_request};
use paych_protocol::{ReconcileRequest, ReconcileResponse};

fuzz_target!(|data: &[u8]| {
    check_wire(read_request::<ReconcileRequest, ReconcileResponse>(data));
});
