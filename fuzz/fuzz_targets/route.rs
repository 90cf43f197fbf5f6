//! `/paych/route/1.0.0` messages, as a node reads them from a libp2p stream: the first byte
//! picks a request (even: an offer, a replacement, several or a policy request, as a hub or a payee
//! reads it) or a response (odd: as a payer or a hub reads the answer), the rest is the input.
//!
//! The bytes are read exactly as a node reads them (size limit, item budget, typed decoder).
//! Reading never panics and refuses with a typed `CodecError`; an accepted message re-encodes
//! within its limits and decodes back to itself; its kind and status are ones this version
//! knows, a replacement names a 32-byte payment hash (several: 1 to 32 of them, each so), and a refusal carries neither a secret
//! nor a policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_fuzz::{check_wire, read_request, read_response};
use paych_protocol::route::{MAX_REPLACEMENTS_PER_REQUEST, MAX_SECRET_BYTES, PAYMENT_HASH_BYTES};
use paych_protocol::{RouteKind, RouteRequest, RouteResponse, RouteStatus};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let read = read_request::<RouteRequest, RouteResponse>(input);
        if let Ok(request) = &read {
            let kind = request.kind();
            assert_eq!(RouteKind::from_code(kind.code()), Some(kind), "unknown kind decoded");
            if let RouteRequest::Replace { payment_hash, .. } = request {
                assert_eq!(payment_hash.len(), PAYMENT_HASH_BYTES, "a short payment hash decoded");
            }
            if let RouteRequest::ReplaceMany { replacements } = request {
                let count = replacements.len();
                assert!((1..=MAX_REPLACEMENTS_PER_REQUEST).contains(&count), "{count} decoded");
                let mut hashes = std::collections::HashSet::new();
                for r in replacements {
                    assert_eq!(r.payment_hash.len(), PAYMENT_HASH_BYTES, "a short hash decoded");
                    assert!(hashes.insert(&r.payment_hash), "a hash named twice decoded");
                }
            }
        }
        check_wire(read);
    } else {
        let read = read_response::<RouteRequest, RouteResponse>(input);
        if let Ok(response) = &read {
            let status = response.status;
            assert_eq!(
                RouteStatus::from_code(status.code()),
                Some(status),
                "unknown status decoded"
            );
            assert!(response.secret.len() <= MAX_SECRET_BYTES, "a secret over the bound decoded");
            if !status.is_ok() {
                assert!(
                    response.secret.is_empty() && response.policy.is_empty(),
                    "a refusal carrying a body decoded"
                );
            }
        }
        check_wire(read);
    }
});
