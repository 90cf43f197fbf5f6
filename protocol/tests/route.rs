//! `/paych/route/1.0.0` on the wire: every request kind and every status round-trips
//! byte-exactly within the codec's limits; hostile bytes — truncated, of the wrong kind, an
//! unknown kind or status, oversized, over a bound — are refused with a typed error and
//! never panic; a pre-image of the wrong length still decodes, for the routing rules to
//! refuse.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;

use futures::io::Cursor;
use fvm_shared::bigint::{BigInt, Sign};
use ipld_core::ipld::Ipld;
use libp2p::request_response::Codec as _;
use libp2p::StreamProtocol;
use paych_core::types::decode::DecodeError as LayoutError;
use paych_core::types::{Address, Signature, SignedVoucher, TokenAmount};
use paych_protocol::codec::{exceeds_item_budget, CodecError};
use paych_protocol::route::{
    MAX_INVOICE_BYTES, MAX_POLICY_BYTES, MAX_REPLACEMENTS_PER_REQUEST, MAX_ROUTE_MESSAGE_BYTES,
    MAX_SECRET_BYTES, PAYMENT_HASH_BYTES, ROUTE_REQUEST_MAX_BYTES, ROUTE_REQUEST_MAX_ITEMS,
};
use paych_protocol::{
    DecodeError, EncodeError, RouteCodec, RouteKind, RouteReplacement, RouteRequest, RouteResponse,
    RouteStatus, RouteViolation, RuleViolation, WireMessage, ROUTE_PROTOCOL,
};
use paych_testkit::keys::{key, signed_voucher};
use paych_testkit::vouchers::voucher_from_parts;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

// --- strategies --------------------------------------------------------------------------

fn any_address() -> impl Strategy<Value = Address> {
    prop_oneof![
        any::<u64>().prop_map(Address::new_id),
        vec(any::<u8>(), 65).prop_map(|k| Address::new_secp256k1(&k).unwrap()),
        vec(any::<u8>(), 0..40).prop_map(|d| Address::new_actor(&d)),
    ]
}

fn signed_amount() -> impl Strategy<Value = TokenAmount> {
    (any::<bool>(), vec(any::<u8>(), 0..40)).prop_map(|(negative, magnitude)| {
        let amount = TokenAmount::from_atto(BigInt::from_bytes_be(Sign::Plus, &magnitude));
        if negative {
            -amount
        } else {
            amount
        }
    })
}

fn signature() -> impl Strategy<Value = Signature> {
    prop_oneof![
        vec(any::<u8>(), 65).prop_map(Signature::new_secp256k1),
        vec(any::<u8>(), 96).prop_map(Signature::new_bls),
    ]
}

/// Any voucher the actor's layout allows: the route protocol carries it whatever its shape.
fn voucher() -> impl Strategy<Value = SignedVoucher> {
    (
        (any_address(), any::<i64>(), any::<i64>(), vec(any::<u8>(), 0..33)),
        option::of((any_address(), any::<u64>(), vec(any::<u8>(), 0..16))),
        (any::<u64>(), any::<u64>(), signed_amount(), any::<i64>()),
        (vec((any::<u64>(), any::<u64>()), 0..4), option::of(signature())),
    )
        .prop_map(|(head, extra, lane, (merges, sig))| {
            voucher_from_parts((head, extra, lane, merges, sig))
        })
}

fn request() -> impl Strategy<Value = RouteRequest> {
    prop_oneof![
        (vec(any::<u8>(), 0..=MAX_INVOICE_BYTES), voucher())
            .prop_map(|(invoice, voucher)| RouteRequest::Offer { invoice, voucher }),
        (vec(any::<u8>(), PAYMENT_HASH_BYTES), voucher())
            .prop_map(|(payment_hash, voucher)| RouteRequest::Replace { payment_hash, voucher }),
        Just(RouteRequest::Policy),
        vec((vec(any::<u8>(), PAYMENT_HASH_BYTES), voucher()), 1..=4).prop_map(|items| {
            let replacements = items
                .into_iter()
                .map(|(payment_hash, voucher)| RouteReplacement { payment_hash, voucher })
                .collect();
            RouteRequest::ReplaceMany { replacements }
        }),
    ]
}

fn status() -> impl Strategy<Value = RouteStatus> {
    proptest::sample::select(RouteStatus::ALL.to_vec())
}

/// Any answer the rules allow: a refusal with an explanation, or an acceptance carrying
/// a secret (of any length up to the bound), a policy, or nothing.
fn response() -> impl Strategy<Value = RouteResponse> {
    let message = ".{0,64}".prop_map(|m: String| {
        let mut m = m;
        while m.len() > MAX_ROUTE_MESSAGE_BYTES {
            m.pop();
        }
        m
    });
    prop_oneof![
        (status(), message.clone()).prop_map(|(status, message)| {
            RouteResponse { message, ..RouteResponse::refused(status, "") }
        }),
        (vec(any::<u8>(), 0..=MAX_SECRET_BYTES), message.clone()).prop_map(|(secret, message)| {
            RouteResponse { message, ..RouteResponse::fulfilled(secret) }
        }),
        (vec(any::<u8>(), 0..=MAX_POLICY_BYTES), message).prop_map(|(policy, message)| {
            RouteResponse { message, ..RouteResponse::policy(policy) }
        }),
    ]
}

// --- helpers -----------------------------------------------------------------------------

/// Whether `bytes` fit `T`'s size and item limits.
fn fits<T: WireMessage>(bytes: &[u8]) -> bool {
    bytes.len() <= T::MAX_BYTES && !exceeds_item_budget(bytes, T::MAX_ITEMS)
}

/// encode → decode gives the value back, decode → encode the bytes back, the serde path
/// decodes the same, the bytes fit the codec's limits, and no mutation of them (one byte
/// changed, or cut short) panics or decodes to something that would not encode.
fn round_trips<T>(value: &T, at: usize, byte: u8)
where
    T: WireMessage + PartialEq + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let bytes = value.encode().unwrap();
    let decoded = T::decode(&bytes).unwrap();
    assert_eq!(&decoded, value);
    assert_eq!(decoded.encode().unwrap(), bytes, "re-encoding is byte-exact");
    let via_serde: T = fvm_ipld_encoding::from_slice(&bytes).unwrap();
    assert_eq!(&via_serde, value);
    assert!(fits::<T>(&bytes), "{} of {} bytes over its limits", T::NAME, bytes.len());
    let at = at % bytes.len();
    let mut changed = bytes.clone();
    changed[at] = byte;
    for candidate in [&changed[..], &bytes[..at]] {
        if let Ok(value) = T::decode(candidate) {
            value.encode().unwrap();
        }
    }
}

/// Encodes without the bounds check, as a peer that ignores the rules would.
fn unchecked<T: serde::Serialize>(value: &T) -> Vec<u8> {
    fvm_ipld_encoding::to_vec(value).unwrap()
}

fn cbor(items: Vec<Ipld>) -> Vec<u8> {
    fvm_ipld_encoding::to_vec(&Ipld::List(items)).unwrap()
}

fn route_rule<T: std::fmt::Debug>(result: Result<T, DecodeError>) -> RouteViolation {
    match result {
        Err(DecodeError::Rule(RuleViolation::Route(v))) => v,
        other => panic!("expected a route rule violation, got {other:?}"),
    }
}

fn encode_rule<T: std::fmt::Debug>(result: Result<T, EncodeError>) -> RouteViolation {
    match result {
        Err(EncodeError::Rule(RuleViolation::Route(v))) => v,
        other => panic!("expected a route rule violation, got {other:?}"),
    }
}

fn layout<T: std::fmt::Debug>(result: Result<T, DecodeError>) -> LayoutError {
    match result {
        Err(DecodeError::Layout(e)) => e,
        other => panic!("expected a layout error, got {other:?}"),
    }
}

fn sample_voucher() -> SignedVoucher {
    let mut voucher = signed_voucher(&key(1), Address::new_id(1001), 0, 1, 1000);
    voucher.secret_hash = vec![9; 32];
    voucher.time_lock_max = 900;
    voucher
}

fn sample_offer() -> RouteRequest {
    RouteRequest::Offer { invoice: vec![0x88; 200], voucher: sample_voucher() }
}

const PROTOCOL: StreamProtocol = StreamProtocol::new(ROUTE_PROTOCOL);

/// Reads `bytes` as a hub reads a route request from a stream.
fn read_request(bytes: Vec<u8>) -> io::Result<RouteRequest> {
    let mut codec = RouteCodec::default();
    futures::executor::block_on(codec.read_request(&PROTOCOL, &mut Cursor::new(bytes)))
}

/// Reads `bytes` as a payer reads a route response from a stream.
fn read_response(bytes: Vec<u8>) -> io::Result<RouteResponse> {
    let mut codec = RouteCodec::default();
    futures::executor::block_on(codec.read_response(&PROTOCOL, &mut Cursor::new(bytes)))
}

// --- round trips -------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_request_kind_and_answer_round_trips_within_the_limits(
        request in request(),
        response in response(),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        round_trips(&request, at, byte);
        round_trips(&response, at, byte);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in vec(any::<u8>(), 0..512)) {
        let _ = RouteRequest::from_cbor(&bytes);
        let _ = RouteResponse::from_cbor(&bytes);
    }

    #[test]
    fn arbitrary_tuples_never_panic_the_decoders(items in vec(any::<u8>(), 0..6), pick in any::<u8>()) {
        // Arrays of small mixed items, led by a small integer: they reach the kind and field
        // checks that random bytes rarely do.
        let mut list = vec![Ipld::Integer(i128::from(pick % 4))];
        list.extend(items.iter().map(|&b| match (b ^ pick) % 5 {
            0 => Ipld::Null,
            1 => Ipld::Integer(i128::from(b)),
            2 => Ipld::Bytes(vec![b; usize::from(b % 40)]),
            3 => Ipld::String("x".repeat(usize::from(b % 3))),
            _ => Ipld::List(vec![Ipld::Integer(i128::from(b))]),
        }));
        let bytes = cbor(list);
        let _ = RouteRequest::from_cbor(&bytes);
        let _ = RouteResponse::from_cbor(&bytes);
    }
}

#[test]
fn every_status_round_trips_with_its_code_and_name() {
    for status in RouteStatus::ALL {
        let response = RouteResponse::refused(status, status.name());
        let bytes = response.to_cbor().unwrap();
        assert_eq!(bytes[1], status.code(), "the status is the first item, as a uint");
        assert_eq!(RouteResponse::from_cbor(&bytes).unwrap(), response);
    }
    assert_eq!(RouteStatus::ALL.len(), 22);
    let names: std::collections::HashSet<_> = RouteStatus::ALL.iter().map(|s| s.name()).collect();
    let labels: std::collections::HashSet<_> = RouteStatus::ALL.iter().map(|s| s.label()).collect();
    assert_eq!((names.len(), labels.len()), (22, 22));
}

#[test]
fn status_codes_are_those_of_the_shared_plan() {
    use RouteStatus as S;
    let expected = [
        (S::Ok, 0),
        (S::BadShape, 1),
        (S::BadSecret, 2),
        (S::HashSeen, 3),
        (S::LanePending, 4),
        (S::ChannelSettling, 5),
        (S::OverCommitted, 6),
        (S::DeadlineTooClose, 7),
        (S::LockTooFar, 8),
        (S::NoCapacity, 9),
        (S::CapExceeded, 10),
        (S::FeeTooLow, 11),
        (S::InvoiceExpired, 12),
        (S::InvoiceInvalid, 13),
        (S::UnknownRoute, 14),
        (S::BadReplacement, 15),
        (S::NoRoute, 16),
        (S::Refused, 17),
        (S::NotAHub, 18),
        (S::Busy, 19),
        (S::Internal, 20),
        (S::UnknownChannel, 21),
    ];
    for (status, code) in expected {
        assert_eq!(status.code(), code, "{status:?}");
    }
    for (kind, code) in [(RouteKind::Offer, 0), (RouteKind::Replace, 1), (RouteKind::Policy, 2)] {
        assert_eq!(kind.code(), code);
        assert_eq!(RouteKind::from_code(code), Some(kind));
    }
}

// --- hostile bytes -----------------------------------------------------------------------

#[test]
fn an_unknown_status_is_a_typed_error() {
    let answer = |status: i128| {
        cbor(vec![
            Ipld::Integer(status),
            Ipld::Bytes(vec![]),
            Ipld::Bytes(vec![]),
            Ipld::String(String::new()),
        ])
    };
    assert_eq!(
        route_rule(RouteResponse::from_cbor(&answer(22))),
        RouteViolation::UnknownStatus(22)
    );
    assert_eq!(
        route_rule(RouteResponse::from_cbor(&answer(255))),
        RouteViolation::UnknownStatus(255)
    );
    assert!(matches!(
        layout(RouteResponse::from_cbor(&answer(256))),
        LayoutError::IntegerOutOfRange { what: "route_response.status", value: 256 }
    ));
    assert!(matches!(
        layout(RouteResponse::from_cbor(&answer(-1))),
        LayoutError::IntegerOutOfRange { .. } | LayoutError::WrongKind { .. }
    ));
}

#[test]
fn an_unknown_request_kind_or_a_wrong_arity_is_a_typed_error() {
    let voucher = Ipld::Bytes(vec![]);
    assert_eq!(
        route_rule(RouteRequest::from_cbor(&cbor(vec![Ipld::Integer(4)]))),
        RouteViolation::UnknownKind(4)
    );
    assert!(matches!(
        layout(RouteRequest::from_cbor(&cbor(vec![]))),
        LayoutError::WrongArity { what: "route_request", expected: 1, found: 0 }
    ));
    // An offer without its voucher, a policy request with a stray item.
    assert!(matches!(
        layout(RouteRequest::from_cbor(&cbor(vec![Ipld::Integer(0), Ipld::Bytes(vec![])]))),
        LayoutError::WrongArity { what: "route_request.offer", expected: 3, found: 2 }
    ));
    assert!(matches!(
        layout(RouteRequest::from_cbor(&cbor(vec![Ipld::Integer(2), voucher.clone()]))),
        LayoutError::WrongArity { what: "route_request.policy", expected: 1, found: 2 }
    ));
    // Several replacements without their list; one of them without its voucher.
    assert!(matches!(
        layout(RouteRequest::from_cbor(&cbor(vec![Ipld::Integer(3)]))),
        LayoutError::WrongArity { what: "route_request.replace_many", expected: 2, found: 1 }
    ));
    let lone_hash = Ipld::List(vec![Ipld::List(vec![Ipld::Bytes(vec![1; 32])])]);
    assert!(matches!(
        layout(RouteRequest::from_cbor(&cbor(vec![Ipld::Integer(3), lone_hash]))),
        LayoutError::WrongArity { what: "route_request.replacement", expected: 2, found: 1 }
    ));
    assert!(matches!(
        layout(RouteRequest::from_cbor(&cbor(vec![Ipld::Integer(3), voucher]))),
        LayoutError::WrongKind { .. }
    ));
    // Not an array at all.
    assert!(matches!(
        layout(RouteRequest::from_cbor(&fvm_ipld_encoding::to_vec(&Ipld::Integer(2)).unwrap())),
        LayoutError::WrongKind { .. }
    ));
}

#[test]
fn fields_of_the_wrong_kind_are_named() {
    let voucher =
        fvm_ipld_encoding::from_slice::<Ipld>(&sample_voucher().to_cbor().unwrap()).unwrap();
    let offer = cbor(vec![Ipld::Integer(0), Ipld::String("invoice".into()), voucher.clone()]);
    assert!(matches!(
        layout(RouteRequest::from_cbor(&offer)),
        LayoutError::WrongKind { what: "route_request.invoice", .. }
    ));
    let replace = cbor(vec![Ipld::Integer(1), Ipld::Null, voucher]);
    assert!(matches!(
        layout(RouteRequest::from_cbor(&replace)),
        LayoutError::WrongKind { what: "route_request.payment_hash", .. }
    ));
    let kind_as_text = cbor(vec![Ipld::String("offer".into())]);
    assert!(matches!(
        layout(RouteRequest::from_cbor(&kind_as_text)),
        LayoutError::WrongKind { what: "route_request.kind", .. }
    ));
    let message_as_bytes =
        cbor(vec![Ipld::Integer(0), Ipld::Bytes(vec![]), Ipld::Bytes(vec![]), Ipld::Bytes(vec![])]);
    assert!(matches!(
        layout(RouteResponse::from_cbor(&message_as_bytes)),
        LayoutError::WrongKind { what: "route_response.message", .. }
    ));
    let secret_as_null =
        cbor(vec![Ipld::Integer(0), Ipld::Null, Ipld::Bytes(vec![]), Ipld::String(String::new())]);
    assert!(matches!(
        layout(RouteResponse::from_cbor(&secret_as_null)),
        LayoutError::WrongKind { what: "route_response.secret", .. }
    ));
}

#[test]
fn every_truncation_of_a_message_is_refused() {
    let messages = [
        sample_offer().to_cbor().unwrap(),
        RouteRequest::Replace { payment_hash: vec![1; 32], voucher: sample_voucher() }
            .to_cbor()
            .unwrap(),
        RouteRequest::Policy.to_cbor().unwrap(),
    ];
    for bytes in &messages {
        for cut in 0..bytes.len() {
            assert!(RouteRequest::from_cbor(&bytes[..cut]).is_err(), "{cut} of {}", bytes.len());
        }
    }
    let answer = RouteResponse::fulfilled(vec![3; 32]).to_cbor().unwrap();
    for cut in 0..answer.len() {
        assert!(RouteResponse::from_cbor(&answer[..cut]).is_err());
    }
    // Trailing bytes are refused too.
    let mut longer = answer.clone();
    longer.push(0);
    assert!(matches!(layout(RouteResponse::from_cbor(&longer)), LayoutError::TrailingBytes));
}

#[test]
fn a_300_byte_pre_image_decodes_for_the_routing_rules_to_refuse() {
    // The decoder does not judge a secret's length: a wrong one must reach the checker,
    // which answers BadSecret. Only beyond the 1 KiB bound is it refused as malformed.
    let long = RouteResponse::fulfilled(vec![0xab; 300]);
    assert_eq!(RouteResponse::from_cbor(&long.to_cbor().unwrap()).unwrap(), long);
    let short = RouteResponse::fulfilled(vec![0xab; 31]);
    assert_eq!(RouteResponse::from_cbor(&short.to_cbor().unwrap()).unwrap(), short);
    let largest = RouteResponse::fulfilled(vec![0xab; MAX_SECRET_BYTES]);
    assert_eq!(RouteResponse::from_cbor(&largest.to_cbor().unwrap()).unwrap(), largest);

    let over = RouteResponse::fulfilled(vec![0xab; MAX_SECRET_BYTES + 1]);
    let expected = RouteViolation::SecretTooLong(MAX_SECRET_BYTES + 1);
    assert_eq!(encode_rule(over.to_cbor()), expected);
    assert_eq!(route_rule(RouteResponse::from_cbor(&unchecked(&over))), expected);
}

#[test]
fn every_bound_is_enforced_when_encoding_and_when_decoding() {
    let long_invoice =
        RouteRequest::Offer { invoice: vec![1; MAX_INVOICE_BYTES + 1], voucher: sample_voucher() };
    let short_hash = RouteRequest::Replace { payment_hash: vec![1; 31], voucher: sample_voucher() };
    let long_hash = RouteRequest::Replace { payment_hash: vec![1; 33], voucher: sample_voucher() };
    let replacement = |hash_len: usize| RouteReplacement {
        payment_hash: vec![1; hash_len],
        voucher: sample_voucher(),
    };
    let none = RouteRequest::ReplaceMany { replacements: vec![] };
    let too_many = RouteRequest::ReplaceMany {
        replacements: vec![replacement(32); MAX_REPLACEMENTS_PER_REQUEST + 1],
    };
    let one_short_hash =
        RouteRequest::ReplaceMany { replacements: vec![replacement(32), replacement(31)] };
    let twice = RouteRequest::ReplaceMany {
        replacements: vec![
            RouteReplacement { payment_hash: vec![2; 32], voucher: sample_voucher() },
            replacement(32),
            RouteReplacement { payment_hash: vec![2; 32], voucher: sample_voucher() },
        ],
    };
    for (request, violation) in [
        (long_invoice, RouteViolation::InvoiceTooLong(MAX_INVOICE_BYTES + 1)),
        (short_hash, RouteViolation::PaymentHashLength(31)),
        (long_hash, RouteViolation::PaymentHashLength(33)),
        (none, RouteViolation::ReplacementCount(0)),
        (too_many, RouteViolation::ReplacementCount(MAX_REPLACEMENTS_PER_REQUEST + 1)),
        (one_short_hash, RouteViolation::PaymentHashLength(31)),
        (twice, RouteViolation::DuplicatePaymentHash(hex::encode([2; 32]))),
    ] {
        assert_eq!(route_rule(RouteRequest::from_cbor(&unchecked(&request))), violation);
        assert_eq!(encode_rule(request.to_cbor()), violation);
    }

    let long_policy = RouteResponse::policy(vec![2; MAX_POLICY_BYTES + 1]);
    let long_message = RouteResponse {
        message: "x".repeat(MAX_ROUTE_MESSAGE_BYTES + 1),
        ..RouteResponse::refused(RouteStatus::Refused, "")
    };
    for (response, violation) in [
        (long_policy, RouteViolation::PolicyTooLong(MAX_POLICY_BYTES + 1)),
        (long_message, RouteViolation::MessageTooLong(MAX_ROUTE_MESSAGE_BYTES + 1)),
    ] {
        assert_eq!(encode_rule(response.to_cbor()), violation);
        assert_eq!(route_rule(RouteResponse::from_cbor(&unchecked(&response))), violation);
    }
}

#[test]
fn a_refusal_carries_no_secret_and_an_acceptance_not_both() {
    let refusal_with_secret =
        RouteResponse { secret: vec![1; 32], ..RouteResponse::refused(RouteStatus::Refused, "no") };
    let refusal_with_policy =
        RouteResponse { policy: vec![1; 8], ..RouteResponse::refused(RouteStatus::NotAHub, "no") };
    let both = RouteResponse { policy: vec![1; 8], ..RouteResponse::fulfilled(vec![1; 32]) };
    for (response, code) in [(refusal_with_secret, 17), (refusal_with_policy, 18), (both, 0)] {
        assert_eq!(encode_rule(response.to_cbor()), RouteViolation::BodyMismatch(code));
        assert_eq!(
            route_rule(RouteResponse::from_cbor(&unchecked(&response))),
            RouteViolation::BodyMismatch(code)
        );
    }
}

#[test]
fn the_codec_refuses_oversized_messages_and_item_floods_before_decoding() {
    let oversized = vec![0u8; ROUTE_REQUEST_MAX_BYTES + 1];
    let err = read_request(oversized).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(matches!(CodecError::from_io(&err), Some(CodecError::TooLarge { .. })), "{err}");

    // An array of 2 000 zeros: small in bytes, over the item budget.
    let mut flood = vec![0x99, 0x07, 0xd0];
    flood.extend(std::iter::repeat_n(0x00, 2000));
    assert!(flood.len() <= ROUTE_REQUEST_MAX_BYTES && 2000 > ROUTE_REQUEST_MAX_ITEMS);
    let err = read_request(flood).unwrap_err();
    assert!(matches!(CodecError::from_io(&err), Some(CodecError::TooManyItems { .. })), "{err}");

    let unknown_status = cbor(vec![
        Ipld::Integer(99),
        Ipld::Bytes(vec![]),
        Ipld::Bytes(vec![]),
        Ipld::String(String::new()),
    ]);
    let err = read_response(unknown_status).unwrap_err();
    assert!(matches!(CodecError::from_io(&err), Some(CodecError::Decode { .. })), "{err}");

    let good = read_request(sample_offer().to_cbor().unwrap()).unwrap();
    assert_eq!(good, sample_offer());
}

#[test]
fn the_largest_legal_messages_fit_their_size_limits() {
    let big = TokenAmount::from_atto(BigInt::from_bytes_be(Sign::Plus, &[0xff; 127]));
    let mut voucher = SignedVoucher::new(Address::new_actor(b"x"), u64::MAX, u64::MAX, big);
    voucher.signature = Some(Signature::new_bls(vec![0xaa; 96]));
    voucher.secret_hash = vec![0xbb; 32];
    voucher.time_lock_max = i64::MAX;
    voucher.time_lock_min = i64::MIN;
    voucher.min_settle_height = i64::MIN;
    let offer = RouteRequest::Offer { invoice: vec![0xcc; MAX_INVOICE_BYTES], voucher };
    assert!(fits::<RouteRequest>(&offer.to_cbor().unwrap()));

    let message = "é".repeat(MAX_ROUTE_MESSAGE_BYTES / 2);
    let secret = RouteResponse {
        message: message.clone(),
        ..RouteResponse::fulfilled(vec![1; MAX_SECRET_BYTES])
    };
    assert!(fits::<RouteResponse>(&secret.to_cbor().unwrap()));
    let policy = RouteResponse { message, ..RouteResponse::policy(vec![1; MAX_POLICY_BYTES]) };
    assert!(fits::<RouteResponse>(&policy.to_cbor().unwrap()));

    // As many replacements as a request takes, each a plain voucher as large as a
    // replacement gets: a robust channel address, the largest lane, nonce and amount a
    // channel can reach, a signature.
    let amount = TokenAmount::from_atto(BigInt::from_bytes_be(Sign::Plus, &[0xff; 16]));
    let mut plain = SignedVoucher::new(Address::new_actor(b"x"), u64::MAX, u64::MAX, amount);
    plain.signature = Some(Signature::new_secp256k1(vec![0xaa; 65]));
    // Each on its own payment hash: a request names a hash once.
    let replacements = (0..MAX_REPLACEMENTS_PER_REQUEST)
        .map(|i| RouteReplacement {
            payment_hash: vec![0xd0 ^ i as u8; PAYMENT_HASH_BYTES],
            voucher: plain.clone(),
        })
        .collect();
    let many = RouteRequest::ReplaceMany { replacements };
    assert!(fits::<RouteRequest>(&many.to_cbor().unwrap()));
    assert_eq!(read_request(many.to_cbor().unwrap()).unwrap(), many);
}
