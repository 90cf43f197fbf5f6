//! A provider's answer on `/paych/retrieval/1.0.0` (a manifest or a chunk), as the client reads it.
//!
//! The bytes are read exactly as a node reads them from a libp2p stream (size limit, item
//! budget, typed decoder). Reading never panics and refuses with a typed `CodecError`; an
//! accepted message re-encodes within its limits and decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_fuzz::{check_wire, read_response};
use paych_protocol::{RetrievalRequest, RetrievalResponse};

fuzz_target!(|data: &[u8]| {
    check_wire(read_response::<RetrievalRequest, RetrievalResponse>(data));
});
