//! Encoding of every wire message: byte-exact round trips, bounds and rules enforced on
//! both sides, exact arity, and decoding that never panics whatever the bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fvm_shared::bigint::{BigInt, Sign};
use ipld_core::ipld::Ipld;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use paych_core::combine::ReconcileStatus;
use paych_core::types::decode::{self as core_decode, DecodeError as LayoutError};
use paych_core::types::{Address, Merge, Signature, SignedVoucher, TokenAmount};
use paych_protocol::codec::exceeds_item_budget;
use paych_protocol::messages::{
    MAX_FLOW_BYTES, MAX_MULTIADDR_BYTES, MAX_PEER_ID_BYTES, MAX_PEER_RECORD_MULTIADDRS,
    MAX_RECONCILE_VOUCHERS, MAX_STATUS_MESSAGE_BYTES,
};
use paych_protocol::{
    Announce, DecodeError, EncodeError, PeerRecord, ReconcileRequest, ReconcileResponse,
    RuleViolation, SignedPeerRecord, VoucherRequest, VoucherResponse, VoucherStatus, WireMessage,
};
use paych_testkit::keys::{address, key, signed_voucher};
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

/// Non-negative amounts of up to 40 bytes of magnitude.
fn amount() -> impl Strategy<Value = TokenAmount> {
    vec(any::<u8>(), 0..40)
        .prop_map(|m| TokenAmount::from_atto(BigInt::from_bytes_be(Sign::Plus, &m)))
}

fn signed_amount() -> impl Strategy<Value = TokenAmount> {
    (any::<bool>(), amount()).prop_map(|(neg, a)| if neg { -a } else { a })
}

fn signature() -> impl Strategy<Value = Signature> {
    prop_oneof![
        vec(any::<u8>(), 65).prop_map(Signature::new_secp256k1),
        vec(any::<u8>(), 96).prop_map(Signature::new_bls),
    ]
}

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

fn message() -> impl Strategy<Value = Option<String>> {
    // At most 256 characters of at most 4 bytes: within the 1024-byte bound.
    option::of(".{0,256}")
}

fn peer_record() -> impl Strategy<Value = PeerRecord> {
    (
        any_address(),
        vec(any::<u8>(), 0..=MAX_PEER_ID_BYTES),
        vec(vec(any::<u8>(), 0..=MAX_MULTIADDR_BYTES), 0..=MAX_PEER_RECORD_MULTIADDRS),
        any::<u64>(),
    )
        .prop_map(|(address, peer_id, multiaddrs, sequence)| PeerRecord {
            address,
            peer_id,
            multiaddrs,
            sequence,
        })
}

fn signed_peer_record() -> impl Strategy<Value = SignedPeerRecord> {
    (peer_record(), signature())
        .prop_map(|(record, signature)| SignedPeerRecord { record, signature })
}

fn announce() -> impl Strategy<Value = Announce> {
    (any_address(), any_address(), any_address(), signed_peer_record())
        .prop_map(|(channel, from, to, peer_record)| Announce { channel, from, to, peer_record })
}

fn voucher_request() -> impl Strategy<Value = VoucherRequest> {
    (
        voucher(),
        option::of(vec(any::<u8>(), 0..=MAX_FLOW_BYTES)),
        option::of(announce().prop_map(Box::new)),
    )
        .prop_map(|(voucher, flow, announce)| VoucherRequest { voucher, flow, announce })
}

fn voucher_response() -> impl Strategy<Value = VoucherResponse> {
    (any::<u8>(), amount(), amount(), message()).prop_map(
        |(status, delta, lane_amount, message)| {
            let delta = if status == 0 { delta } else { TokenAmount::default() };
            VoucherResponse { status, delta, lane_amount, message }
        },
    )
}

fn reconcile_request() -> impl Strategy<Value = ReconcileRequest> {
    (vec(voucher(), 0..6), amount(), signed_peer_record()).prop_map(
        |(vouchers, req_val, payee_record)| ReconcileRequest { vouchers, req_val, payee_record },
    )
}

fn reconcile_response() -> impl Strategy<Value = ReconcileResponse> {
    prop_oneof![
        (voucher(), message()).prop_map(|(v, message)| ReconcileResponse {
            combined: Some(v),
            status: 0,
            message
        }),
        (1..=255u8, message()).prop_map(|(status, message)| ReconcileResponse {
            combined: None,
            status,
            message
        }),
    ]
}

// --- round trips -------------------------------------------------------------------------

/// encode → decode gives the value back; decode → encode gives the bytes back; the serde
/// path (as when embedded in other structures) decodes identically.
fn round_trip<T>(
    value: &T,
    encode: impl Fn(&T) -> Result<Vec<u8>, EncodeError>,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
) -> Vec<u8>
where
    T: PartialEq + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let bytes = encode(value).unwrap();
    let decoded = decode(&bytes).unwrap();
    assert_eq!(&decoded, value);
    assert_eq!(encode(&decoded).unwrap(), bytes, "re-encoding is byte-exact");
    let via_serde: T = fvm_ipld_encoding::from_slice(&bytes).unwrap();
    assert_eq!(&via_serde, value);
    bytes
}

/// Every mutation of valid bytes (one byte changed, or cut short) decodes to an error or to
/// a value that itself encodes: decoding never panics and never accepts what encoding
/// would refuse.
fn mutations_never_panic<T>(
    bytes: &[u8],
    at: usize,
    byte: u8,
    encode: impl Fn(&T) -> Result<Vec<u8>, EncodeError>,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
) {
    let at = at % bytes.len().max(1);
    let mut changed = bytes.to_vec();
    if let Some(b) = changed.get_mut(at) {
        *b = byte;
    }
    for candidate in [&changed[..], &bytes[..at]] {
        if let Ok(value) = decode(candidate) {
            encode(&value).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Each of the four request and response messages round-trips byte-exactly, fits the
    /// codec's limits, and decodes any mutation of its bytes without panicking.
    #[test]
    fn voucher_and_reconcile_messages_round_trip(
        voucher_req in voucher_request(),
        voucher_resp in voucher_response(),
        reconcile_req in reconcile_request(),
        reconcile_resp in reconcile_response(),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        prop_assert!(round_trips_within_limits(&voucher_req, at, byte, VoucherRequest::to_cbor, VoucherRequest::from_cbor));
        prop_assert!(round_trips_within_limits(&voucher_resp, at, byte, VoucherResponse::to_cbor, VoucherResponse::from_cbor));
        prop_assert!(round_trips_within_limits(&reconcile_req, at, byte, ReconcileRequest::to_cbor, ReconcileRequest::from_cbor));
        prop_assert!(round_trips_within_limits(&reconcile_resp, at, byte, ReconcileResponse::to_cbor, ReconcileResponse::from_cbor));
    }

    #[test]
    fn peer_records_and_announces_round_trip(a in announce(), at in any::<usize>(), byte in any::<u8>()) {
        round_trip(&a.peer_record.record, PeerRecord::to_cbor, PeerRecord::from_cbor);
        round_trip(&a.peer_record, SignedPeerRecord::to_cbor, SignedPeerRecord::from_cbor);
        let bytes = round_trip(&a, Announce::to_cbor, Announce::from_cbor);
        mutations_never_panic(&bytes, at, byte, Announce::to_cbor, Announce::from_cbor);
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in vec(any::<u8>(), 0..512)) {
        decode_as_every_exchange_message(&bytes);
        let _ = Announce::from_cbor(&bytes);
        let _ = PeerRecord::from_cbor(&bytes);
        let _ = SignedPeerRecord::from_cbor(&bytes);
    }

    #[test]
    fn arbitrary_tuples_never_panic_any_decoder(items in vec(any::<u8>(), 0..8), pick in any::<u8>()) {
        // CBOR arrays of small mixed items reach deeper into the field checks than random bytes.
        let ipld = Ipld::List(items.iter().map(|&b| match (b ^ pick) % 5 {
            0 => Ipld::Null,
            1 => Ipld::Integer(i128::from(b)),
            2 => Ipld::Bytes(vec![b; usize::from(b % 4)]),
            3 => Ipld::String("x".repeat(usize::from(b % 3))),
            _ => Ipld::List(vec![Ipld::Integer(i128::from(b))]),
        }).collect());
        let bytes = fvm_ipld_encoding::to_vec(&ipld).unwrap();
        decode_as_every_exchange_message(&bytes);
        let _ = SignedPeerRecord::from_cbor(&bytes);
    }
}

/// Decodes `bytes` as each request and response of the voucher and reconcile exchanges,
/// ignoring the answers: only a panic fails.
fn decode_as_every_exchange_message(bytes: &[u8]) {
    let _ = VoucherRequest::from_cbor(bytes);
    let _ = VoucherResponse::from_cbor(bytes);
    let _ = ReconcileRequest::from_cbor(bytes);
    let _ = ReconcileResponse::from_cbor(bytes);
}

// --- limits --------------------------------------------------------------------------------

/// Whether `bytes` fit `T`'s size and item limits.
fn fits<T: WireMessage>(bytes: &[u8]) -> bool {
    bytes.len() <= T::MAX_BYTES && !exceeds_item_budget(bytes, T::MAX_ITEMS)
}

/// `value` round-trips (asserted), no mutation of its bytes panics, and whether its bytes
/// fit the codec's limits for `T`.
fn round_trips_within_limits<T>(
    value: &T,
    at: usize,
    byte: u8,
    encode: impl Fn(&T) -> Result<Vec<u8>, EncodeError> + Copy,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError> + Copy,
) -> bool
where
    T: WireMessage + PartialEq + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let bytes = round_trip(value, encode, decode);
    let fits = fits::<T>(&bytes);
    mutations_never_panic(&bytes, at, byte, encode, decode);
    fits
}

/// The largest messages the rules allow fit the codec's size and item limits.
#[test]
fn the_largest_legal_messages_fit_their_size_limits() {
    let big = TokenAmount::from_atto(BigInt::from_bytes_be(Sign::Plus, &[0xff; 127]));
    let longest = Some("é".repeat(MAX_STATUS_MESSAGE_BYTES / 2));
    let wide_address = Address::new_actor(b"x");
    let mut voucher = SignedVoucher::new(wide_address, u64::MAX, u64::MAX, big.clone());
    voucher.signature = Some(Signature::new_bls(vec![0xaa; 96]));
    voucher.secret_hash = vec![0xbb; 32];

    let response = VoucherResponse {
        status: 0,
        delta: big.clone(),
        lane_amount: big.clone(),
        message: longest.clone(),
    };
    assert!(fits::<VoucherResponse>(&response.to_cbor().unwrap()));

    let record = PeerRecord {
        address: Address::new_secp256k1(&[4; 65]).unwrap(),
        peer_id: vec![1; MAX_PEER_ID_BYTES],
        multiaddrs: vec![vec![2; MAX_MULTIADDR_BYTES]; MAX_PEER_RECORD_MULTIADDRS],
        sequence: u64::MAX,
    };
    let request = VoucherRequest {
        voucher: voucher.clone(),
        flow: Some(vec![3; MAX_FLOW_BYTES]),
        announce: Some(Box::new(Announce {
            channel: wide_address,
            from: wide_address,
            to: wide_address,
            peer_record: SignedPeerRecord { record, signature: Signature::new_bls(vec![5; 96]) },
        })),
    };
    assert!(fits::<VoucherRequest>(&request.to_cbor().unwrap()));
    let largest_record = request.announce.as_ref().unwrap().peer_record.clone();

    let mut combined = voucher.clone();
    combined.merges = (1..MAX_RECONCILE_VOUCHERS as u64)
        .map(|lane| Merge { lane: u64::MAX - lane, nonce: u64::MAX })
        .collect();
    let response = ReconcileResponse { combined: Some(combined), status: 0, message: longest };
    assert!(fits::<ReconcileResponse>(&response.to_cbor().unwrap()));

    let request = ReconcileRequest {
        vouchers: vec![voucher; MAX_RECONCILE_VOUCHERS],
        req_val: big,
        payee_record: largest_record,
    };
    assert!(fits::<ReconcileRequest>(&request.to_cbor().unwrap()));
}

/// Encodes without the bounds check, as a peer that ignores the rules would.
fn unchecked<T: serde::Serialize>(value: &T) -> Vec<u8> {
    fvm_ipld_encoding::to_vec(value).unwrap()
}

fn rule<T: std::fmt::Debug>(result: Result<T, DecodeError>) -> RuleViolation {
    match result {
        Err(DecodeError::Rule(v)) => v,
        other => panic!("expected a rule violation, got {other:?}"),
    }
}

fn encode_rule<T: std::fmt::Debug>(result: Result<T, EncodeError>) -> RuleViolation {
    match result {
        Err(EncodeError::Rule(v)) => v,
        other => panic!("expected a rule violation, got {other:?}"),
    }
}

fn sample_voucher() -> SignedVoucher {
    signed_voucher(&key(1), Address::new_id(1001), 0, 1, 1000)
}

/// The payee's record, `key(2)` vouching for a fresh PeerId.
fn sample_record(sequence: u64) -> SignedPeerRecord {
    let peer = PeerId::from(Keypair::generate_ed25519().public());
    SignedPeerRecord::new(&key(2), &peer, &[], sequence).unwrap()
}

#[test]
fn flow_reference_is_bounded_on_both_sides() {
    let mut request = VoucherRequest::new(sample_voucher());
    request.flow = Some(vec![7; MAX_FLOW_BYTES]);
    request.to_cbor().unwrap();
    request.flow = Some(vec![7; MAX_FLOW_BYTES + 1]);
    let expected = RuleViolation::FlowTooLong(MAX_FLOW_BYTES + 1);
    assert_eq!(encode_rule(request.to_cbor()), expected);
    assert_eq!(rule(VoucherRequest::from_cbor(&unchecked(&request))), expected);
}

#[test]
fn status_message_is_bounded_on_both_sides_and_constructors_truncate() {
    let long = "ü".repeat(MAX_STATUS_MESSAGE_BYTES); // 2 bytes each
    let response = VoucherResponse {
        status: 23,
        delta: TokenAmount::default(),
        lane_amount: TokenAmount::default(),
        message: Some(long.clone()),
    };
    let expected = RuleViolation::MessageTooLong(2 * MAX_STATUS_MESSAGE_BYTES);
    assert_eq!(encode_rule(response.to_cbor()), expected);
    assert_eq!(rule(VoucherResponse::from_cbor(&unchecked(&response))), expected);

    let refused = ReconcileResponse { combined: None, status: 13, message: Some(long.clone()) };
    assert_eq!(encode_rule(refused.to_cbor()), expected);
    assert_eq!(rule(ReconcileResponse::from_cbor(&unchecked(&refused))), expected);

    // The constructors cut at a character boundary instead.
    let rejected =
        VoucherResponse::rejected(VoucherStatus::Malformed, TokenAmount::default(), long.clone());
    assert_eq!(rejected.message.as_ref().unwrap().len(), MAX_STATUS_MESSAGE_BYTES);
    rejected.to_cbor().unwrap();
    let odd = format!("a{long}");
    let refused = ReconcileResponse::refused(ReconcileStatus::Internal, odd);
    assert_eq!(refused.message.as_ref().unwrap().len(), MAX_STATUS_MESSAGE_BYTES - 1);
    refused.to_cbor().unwrap();
}

#[test]
fn reconcile_request_carries_at_most_the_core_limit_of_vouchers() {
    let voucher = sample_voucher();
    let at_limit = ReconcileRequest {
        vouchers: vec![voucher.clone(); MAX_RECONCILE_VOUCHERS],
        req_val: TokenAmount::from_atto(1),
        payee_record: sample_record(1),
    };
    ReconcileRequest::from_cbor(&at_limit.to_cbor().unwrap()).unwrap();
    let over = ReconcileRequest {
        vouchers: vec![voucher; MAX_RECONCILE_VOUCHERS + 1],
        req_val: TokenAmount::from_atto(1),
        payee_record: sample_record(1),
    };
    let expected = RuleViolation::TooManyVouchers(MAX_RECONCILE_VOUCHERS + 1);
    assert_eq!(encode_rule(over.to_cbor()), expected);
    assert_eq!(rule(ReconcileRequest::from_cbor(&unchecked(&over))), expected);
}

#[test]
fn peer_record_sizes_are_bounded_on_both_sides() {
    let base = PeerRecord {
        address: address(&key(1)),
        peer_id: vec![1; 38],
        multiaddrs: vec![],
        sequence: 1,
    };
    let cases = [
        (
            PeerRecord {
                multiaddrs: vec![vec![0]; MAX_PEER_RECORD_MULTIADDRS + 1],
                ..base.clone()
            },
            RuleViolation::TooManyMultiaddrs(MAX_PEER_RECORD_MULTIADDRS + 1),
        ),
        (
            PeerRecord { multiaddrs: vec![vec![0; MAX_MULTIADDR_BYTES + 1]], ..base.clone() },
            RuleViolation::MultiaddrTooLong(MAX_MULTIADDR_BYTES + 1),
        ),
        (
            PeerRecord { peer_id: vec![1; MAX_PEER_ID_BYTES + 1], ..base.clone() },
            RuleViolation::PeerIdTooLong(MAX_PEER_ID_BYTES + 1),
        ),
    ];
    for (record, expected) in cases {
        assert_eq!(encode_rule(record.to_cbor()), expected);
        assert_eq!(rule(PeerRecord::from_cbor(&unchecked(&record))), expected);
        let signed = SignedPeerRecord { record, signature: Signature::new_secp256k1(vec![0; 65]) };
        assert_eq!(rule(SignedPeerRecord::from_cbor(&unchecked(&signed))), expected);
    }
}

#[test]
fn protocol_amounts_are_never_negative() {
    let response = VoucherResponse {
        status: 0,
        delta: TokenAmount::from_atto(-1),
        lane_amount: TokenAmount::from_atto(5),
        message: None,
    };
    let expected = RuleViolation::NegativeAmount("voucher_response.delta");
    assert_eq!(encode_rule(response.to_cbor()), expected);
    assert_eq!(rule(VoucherResponse::from_cbor(&unchecked(&response))), expected);

    let request = ReconcileRequest {
        vouchers: vec![],
        req_val: TokenAmount::from_atto(-7),
        payee_record: sample_record(1),
    };
    let expected = RuleViolation::NegativeAmount("reconcile_request.req_val");
    assert_eq!(encode_rule(request.to_cbor()), expected);
    assert_eq!(rule(ReconcileRequest::from_cbor(&unchecked(&request))), expected);
}

#[test]
fn only_an_accepted_voucher_credits_a_delta() {
    let response = VoucherResponse {
        status: VoucherStatus::Covered.code(),
        delta: TokenAmount::from_atto(3),
        lane_amount: TokenAmount::from_atto(5),
        message: None,
    };
    let expected = RuleViolation::DeltaWithoutAcceptance(1);
    assert_eq!(encode_rule(response.to_cbor()), expected);
    assert_eq!(rule(VoucherResponse::from_cbor(&unchecked(&response))), expected);
}

#[test]
fn a_combined_voucher_comes_exactly_with_success() {
    let without = ReconcileResponse { combined: None, status: 0, message: None };
    let expected = RuleViolation::CombinedMismatch { status: 0, combined: false };
    assert_eq!(encode_rule(without.to_cbor()), expected);
    assert_eq!(rule(ReconcileResponse::from_cbor(&unchecked(&without))), expected);

    let with = ReconcileResponse { combined: Some(sample_voucher()), status: 7, message: None };
    let expected = RuleViolation::CombinedMismatch { status: 7, combined: true };
    assert_eq!(encode_rule(with.to_cbor()), expected);
    assert_eq!(rule(ReconcileResponse::from_cbor(&unchecked(&with))), expected);
}

// --- layout errors -----------------------------------------------------------------------

fn layout<T: std::fmt::Debug>(result: Result<T, DecodeError>) -> LayoutError {
    match result {
        Err(DecodeError::Layout(e)) => e,
        other => panic!("expected a layout error, got {other:?}"),
    }
}

/// The bytes of `bytes`' top-level array with `edit` applied.
fn edited(bytes: &[u8], edit: impl FnOnce(&mut Vec<Ipld>)) -> Vec<u8> {
    let Ipld::List(mut items) = core_decode::parse(bytes).unwrap() else { panic!("not an array") };
    edit(&mut items);
    fvm_ipld_encoding::to_vec(&Ipld::List(items)).unwrap()
}

#[test]
fn every_message_checks_its_arity_exactly() {
    let request = VoucherRequest::new(sample_voucher()).to_cbor().unwrap();
    let response = VoucherResponse::accepted(TokenAmount::from_atto(1), TokenAmount::from_atto(1))
        .to_cbor()
        .unwrap();
    let reconcile = ReconcileRequest {
        vouchers: vec![],
        req_val: TokenAmount::default(),
        payee_record: sample_record(1),
    }
    .to_cbor()
    .unwrap();
    let answer = ReconcileResponse::refused(ReconcileStatus::Internal, "x").to_cbor().unwrap();
    type Decoder = fn(&[u8]) -> Result<(), DecodeError>;
    let cases: [(&[u8], &str, usize, Decoder); 4] = [
        (&request, "voucher_request", 3, |b| VoucherRequest::from_cbor(b).map(drop)),
        (&response, "voucher_response", 4, |b| VoucherResponse::from_cbor(b).map(drop)),
        (&reconcile, "reconcile_request", 3, |b| ReconcileRequest::from_cbor(b).map(drop)),
        (&answer, "reconcile_response", 3, |b| ReconcileResponse::from_cbor(b).map(drop)),
    ];
    for (bytes, what, n, decode) in cases {
        let longer = edited(bytes, |items| items.push(Ipld::Null));
        assert_eq!(
            layout(decode(&longer)),
            LayoutError::WrongArity { what, expected: n, found: n + 1 }
        );
        let shorter = edited(bytes, |items| {
            items.pop();
        });
        assert_eq!(
            layout(decode(&shorter)),
            LayoutError::WrongArity { what, expected: n, found: n - 1 }
        );
        let mut trailing = bytes.to_vec();
        trailing.push(0x00);
        assert_eq!(layout(decode(&trailing)), LayoutError::TrailingBytes);
        assert!(matches!(layout(decode(&bytes[..bytes.len() - 1])), LayoutError::Cbor(_)));
        assert!(matches!(layout(decode(&[])), LayoutError::Cbor(_)));
    }
}

#[test]
fn fields_of_the_wrong_kind_or_range_are_named() {
    let response = VoucherResponse::covered(TokenAmount::from_atto(9)).to_cbor().unwrap();
    let status_too_big = edited(&response, |items| items[0] = Ipld::Integer(256));
    assert_eq!(
        layout(VoucherResponse::from_cbor(&status_too_big)),
        LayoutError::IntegerOutOfRange { what: "voucher_response.status", value: 256 }
    );
    let message_as_bytes = edited(&response, |items| items[3] = Ipld::Bytes(vec![1]));
    assert_eq!(
        layout(VoucherResponse::from_cbor(&message_as_bytes)),
        LayoutError::WrongKind {
            what: "voucher_response.message",
            expected: "string or null",
            found: "bytes"
        }
    );
    let bad_sign = edited(&response, |items| items[2] = Ipld::Bytes(vec![2, 1]));
    assert_eq!(
        layout(VoucherResponse::from_cbor(&bad_sign)),
        LayoutError::InvalidAmountSign { what: "voucher_response.lane_amount", byte: 2 }
    );
    let huge = edited(&response, |items| items[2] = Ipld::Bytes(vec![0; 129]));
    assert_eq!(
        layout(VoucherResponse::from_cbor(&huge)),
        LayoutError::AmountTooLarge { what: "voucher_response.lane_amount", len: 129 }
    );

    let request = VoucherRequest::new(sample_voucher()).to_cbor().unwrap();
    let flow_as_text = edited(&request, |items| items[1] = Ipld::String("f".into()));
    assert_eq!(
        layout(VoucherRequest::from_cbor(&flow_as_text)),
        LayoutError::WrongKind { what: "voucher_request.flow", expected: "bytes", found: "string" }
    );
    // The voucher itself goes through paych_core's decoder, with its own field names.
    let short_voucher = edited(&request, |items| {
        if let Ipld::List(fields) = &mut items[0] {
            fields.pop();
        }
    });
    assert_eq!(
        layout(VoucherRequest::from_cbor(&short_voucher)),
        LayoutError::WrongArity { what: "voucher", expected: 11, found: 10 }
    );
}

#[test]
fn deeply_nested_input_is_refused_without_exhausting_the_stack() {
    let mut bytes = vec![0x81; 100_000];
    bytes.push(0x00);
    assert!(matches!(layout(VoucherRequest::from_cbor(&bytes)), LayoutError::Cbor(_)));
}

// --- request hash ---------------------------------------------------------------------------

#[test]
fn request_hash_is_the_blake2b_of_the_canonical_encoding() {
    let request = ReconcileRequest {
        vouchers: vec![sample_voucher(), signed_voucher(&key(1), Address::new_id(1001), 1, 1, 5)],
        req_val: TokenAmount::from_atto(1000),
        payee_record: sample_record(1),
    };
    let hash = request.request_hash().unwrap();
    // Over `[vouchers, req_val]`: the request's first two items, as an array of two.
    let full = request.to_cbor().unwrap();
    let asked = edited(&full, |items| {
        items.pop();
    });
    assert_eq!(asked[0], 0x82, "an array of two");
    assert_eq!(hash, paych_core::crypto::blake2b_256(&asked));
    assert_eq!(request.clone().request_hash().unwrap(), hash, "identical requests, identical hash");
    // The same question with the payee's record signed anew is the same request.
    let resigned = ReconcileRequest { payee_record: sample_record(2), ..request.clone() };
    assert_eq!(resigned.request_hash().unwrap(), hash);

    let other = ReconcileRequest { req_val: TokenAmount::from_atto(999), ..request.clone() };
    assert_ne!(other.request_hash().unwrap(), hash);
    let reordered = ReconcileRequest {
        vouchers: request.vouchers.iter().rev().cloned().collect(),
        ..request.clone()
    };
    assert_ne!(reordered.request_hash().unwrap(), hash, "voucher order is part of the request");

    // A non-minimal amount encoding (a leading zero byte) decodes to the same request, and
    // hashes the same: the hash is over the canonical re-encoding, not the bytes received.
    let padded = edited(&request.to_cbor().unwrap(), |items| {
        items[1] = Ipld::Bytes(vec![0x00, 0x00, 0x03, 0xe8]);
    });
    let decoded = ReconcileRequest::from_cbor(&padded).unwrap();
    assert_eq!(decoded, request);
    assert_eq!(decoded.request_hash().unwrap(), hash);
}

// --- status codes -------------------------------------------------------------------------

#[test]
fn voucher_status_codes_are_stable() {
    use VoucherStatus::*;
    let table = [
        (Accepted, 0),
        (Covered, 1),
        (AlreadyHeld, 2),
        (UnknownChannel, 16),
        (InvalidSignature, 17),
        (StaleNonce, 18),
        (InsufficientFunds, 19),
        (TimeLock, 20),
        (Settling, 21),
        (BelowMinimum, 22),
        (Malformed, 23),
        (Internal, 24),
        (RateLimited, 25),
        (HashLocked, 26),
        (MessageLocked, 27),
        (Merges, 28),
        (SettleHeight, 29),
    ];
    for (status, code) in table {
        assert_eq!(status.code(), code);
        assert_eq!(VoucherStatus::from_code(code), Some(status));
        assert_eq!(status.is_held(), code < 16);
    }
    let known: Vec<u8> = table.iter().map(|(_, c)| *c).collect();
    for code in 0..=255u8 {
        if !known.contains(&code) {
            assert_eq!(VoucherStatus::from_code(code), None);
            let response = VoucherResponse {
                status: code,
                delta: TokenAmount::default(),
                lane_amount: TokenAmount::default(),
                message: None,
            };
            assert!(!response.is_held(), "an unknown code {code} counts as a rejection");
        }
    }
}

#[test]
fn reconcile_responses_carry_core_status_codes() {
    let refusal = paych_core::combine::Refusal {
        status: ReconcileStatus::LaneNotOnChain,
        message: "lane 2 has never been redeemed on chain".into(),
    };
    let response = ReconcileResponse::from(refusal);
    let decoded = ReconcileResponse::from_cbor(&response.to_cbor().unwrap()).unwrap();
    assert_eq!(decoded.status, 6);
    assert_eq!(decoded.status(), Some(ReconcileStatus::LaneNotOnChain));
    assert_eq!(
        ReconcileResponse::success(sample_voucher()).status(),
        Some(ReconcileStatus::Success)
    );
}

#[test]
fn wire_message_names_and_limits_are_those_of_the_codec() {
    assert_eq!(<VoucherRequest as WireMessage>::MAX_BYTES, 16 * 1024);
    assert_eq!(<VoucherResponse as WireMessage>::MAX_BYTES, 2 * 1024);
    assert_eq!(<ReconcileRequest as WireMessage>::MAX_BYTES, 1024 * 1024);
    assert_eq!(<ReconcileResponse as WireMessage>::MAX_BYTES, 64 * 1024);
}

#[test]
fn peer_ids_and_multiaddrs_are_carried_in_binary() {
    let peer = PeerId::from(Keypair::generate_ed25519().public());
    let addr: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
    let record = PeerRecord::new(address(&key(1)), &peer, std::slice::from_ref(&addr), 3).unwrap();
    assert_eq!(record.peer_id, peer.to_bytes());
    assert_eq!(record.multiaddrs, vec![addr.to_vec()]);
}
