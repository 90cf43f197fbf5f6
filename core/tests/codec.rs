//! Decoding wire types: round trips, typed errors for every malformation, no panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fvm_shared::bigint::BigInt;
use paych_core::crypto;
use paych_core::types::*;
use paych_testkit::vouchers::voucher_from_parts;
use proptest::prelude::*;

fn sample_voucher() -> SignedVoucher {
    let key = crypto::secret_key(&[7u8; 32]).unwrap();
    let mut v = SignedVoucher::new(Address::new_id(1001), 3, 9, TokenAmount::from_atto(5000));
    v.merges = vec![Merge { lane: 0, nonce: 2 }];
    v.signature = Some(crypto::sign(&key, &v.signing_bytes().unwrap()));
    v
}

/// Replaces the voucher array header byte `0x8b` (11 items) by another arity.
fn with_arity(cbor: &[u8], items: u8) -> Vec<u8> {
    let mut out = cbor.to_vec();
    assert_eq!(out[0], 0x8b);
    out[0] = 0x80 | items;
    out
}

#[test]
fn a_voucher_array_of_ten_or_twelve_items_is_wrong_arity() {
    let cbor = sample_voucher().to_cbor().unwrap();
    // Drop the last item (the signature: 0x58 0x42 and 66 bytes) and declare 10 items.
    let mut short = with_arity(&cbor, 10);
    short.truncate(short.len() - 68);
    assert_eq!(
        SignedVoucher::from_cbor(&short),
        Err(DecodeError::WrongArity { what: "voucher", expected: 11, found: 10 })
    );
    let mut long = with_arity(&cbor, 12);
    long.push(0xf6);
    assert_eq!(
        SignedVoucher::from_cbor(&long),
        Err(DecodeError::WrongArity { what: "voucher", expected: 11, found: 12 })
    );
}

#[test]
fn trailing_bytes_after_a_voucher_are_refused() {
    let mut cbor = sample_voucher().to_cbor().unwrap();
    cbor.push(0x00);
    assert_eq!(SignedVoucher::from_cbor(&cbor), Err(DecodeError::TrailingBytes));
}

#[test]
fn an_unknown_signature_type_is_refused() {
    let mut v = sample_voucher();
    v.signature = None;
    let mut cbor = v.to_cbor().unwrap();
    // Replace the trailing null with a 66-byte string whose type byte is 3 (delegated).
    assert_eq!(cbor.pop(), Some(0xf6));
    cbor.extend_from_slice(&[0x58, 66, 3]);
    cbor.extend_from_slice(&[0u8; 65]);
    assert_eq!(SignedVoucher::from_cbor(&cbor), Err(DecodeError::UnknownSignatureType(3)));
}

#[test]
fn an_amount_over_128_bytes_is_refused() {
    let mut v = sample_voucher();
    v.signature = None;
    let amount = TokenAmount::from_atto(BigInt::from(1) << (8 * 127));
    // 128 magnitude bytes + the sign byte = 129 bytes: encode the field by hand.
    let mut cbor = v.to_cbor().unwrap();
    let encoded_amount = fvm_ipld_encoding::to_vec(&v.amount).unwrap();
    let at = cbor.windows(encoded_amount.len()).position(|w| w == encoded_amount).unwrap();
    let mut field = vec![0x58, 129, 0];
    field.extend_from_slice(&amount.atto().to_bytes_be().1);
    cbor.splice(at..at + encoded_amount.len(), field);
    assert_eq!(
        SignedVoucher::from_cbor(&cbor),
        Err(DecodeError::AmountTooLarge { what: "voucher.amount", len: 129 })
    );
}

#[test]
fn a_bad_amount_sign_byte_is_refused() {
    let bytes = [0x82, 0x42, 0x02, 0x2a, 0x03]; // LaneState with sign byte 2
    assert_eq!(
        decode::decode::<LaneState>(&bytes),
        Err(DecodeError::InvalidAmountSign { what: "lane_state.redeemed", byte: 2 })
    );
}

#[test]
fn a_negative_nonce_is_out_of_range() {
    let bytes = [0x82, 0x40, 0x20]; // LaneState with nonce -1
    assert_eq!(
        decode::decode::<LaneState>(&bytes),
        Err(DecodeError::IntegerOutOfRange { what: "lane_state.nonce", value: -1 })
    );
}

#[test]
fn text_that_is_not_base64url_is_refused() {
    assert!(matches!(SignedVoucher::from_base64url("not base64!"), Err(DecodeError::Base64(_))));
}

#[test]
fn deeply_nested_input_is_refused_without_overflowing_the_stack() {
    let bytes = vec![0x81; 100_000];
    assert!(SignedVoucher::from_cbor(&bytes).is_err());
}

#[test]
fn a_huge_declared_length_is_refused_without_allocating_it() {
    let bytes = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert!(SignedVoucher::from_cbor(&bytes).is_err());
    let bytes = [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert!(SignedVoucher::from_cbor(&bytes).is_err());
}

fn arb_address() -> impl Strategy<Value = Address> {
    prop_oneof![
        any::<u64>().prop_map(Address::new_id),
        any::<[u8; 20]>()
            .prop_map(
                |p| Address::new_secp256k1(&[&[4u8][..], &p, &p, &p, &[0u8; 4]].concat()).unwrap()
            ),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|d| Address::new_actor(&d)),
    ]
}

fn arb_amount() -> impl Strategy<Value = TokenAmount> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_flat_map(|bytes| {
        any::<bool>().prop_map(move |negative| {
            let sign = if negative {
                fvm_shared::bigint::Sign::Minus
            } else {
                fvm_shared::bigint::Sign::Plus
            };
            TokenAmount::from_atto(BigInt::from_bytes_be(sign, &bytes))
        })
    })
}

fn arb_voucher() -> impl Strategy<Value = SignedVoucher> {
    (
        (arb_address(), any::<i64>(), any::<i64>(), proptest::collection::vec(any::<u8>(), 0..64)),
        proptest::option::of((
            arb_address(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )),
        (any::<u64>(), any::<u64>(), arb_amount(), any::<i64>()),
        proptest::collection::vec((any::<u64>(), any::<u64>()), 0..8),
        proptest::option::of((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..100))),
    )
        .prop_map(|(head, extra, lane, merges, sig)| {
            let sig = sig.map(|(bls, bytes)| Signature {
                sig_type: if bls { SignatureType::BLS } else { SignatureType::Secp256k1 },
                bytes,
            });
            voucher_from_parts((head, extra, lane, merges, sig))
        })
}

proptest! {
    #[test]
    fn voucher_encode_decode_round_trips(v in arb_voucher()) {
        let cbor = v.to_cbor().unwrap();
        prop_assert_eq!(&SignedVoucher::from_cbor(&cbor).unwrap(), &v);
        let text = v.to_base64url().unwrap();
        prop_assert_eq!(&SignedVoucher::from_base64url(&text).unwrap(), &v);
        // The signing bytes are the CBOR with the signature item replaced by null.
        let mut unsigned = v.clone();
        unsigned.signature = None;
        prop_assert_eq!(v.signing_bytes().unwrap(), unsigned.to_cbor().unwrap());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = SignedVoucher::from_cbor(&bytes);
        let _ = Message::from_cbor(&bytes);
        let _ = SignedMessage::from_cbor(&bytes);
        let _ = decode::decode::<UpdateChannelStateParams>(&bytes);
        let _ = decode::decode::<PaychState>(&bytes);
        let _ = decode::decode::<LaneState>(&bytes);
        let _ = decode::decode::<ExecParams>(&bytes);
        let _ = decode::decode::<ExecReturn>(&bytes);
    }

    #[test]
    fn mutating_a_valid_voucher_never_panics(index in 0usize..200, byte in any::<u8>(), truncate in 0usize..200) {
        let mut cbor = sample_voucher().to_cbor().unwrap();
        let i = index % cbor.len();
        cbor[i] = byte;
        cbor.truncate(cbor.len() - truncate % cbor.len());
        let _ = SignedVoucher::from_cbor(&cbor);
    }

    #[test]
    fn a_voucher_signature_verifies_only_for_its_signer(seed in 1u8..=200, other in 1u8..=200, amount in any::<u64>()) {
        let key = crypto::secret_key(&[seed; 32]).unwrap();
        let signer = crypto::secp_address(&crypto::public_key(&key));
        let mut v = SignedVoucher::new(Address::new_id(1001), 0, 1, TokenAmount::from_atto(amount));
        let sig = crypto::sign(&key, &v.signing_bytes().unwrap());
        prop_assert!(crypto::verify(&sig, &signer, &v.signing_bytes().unwrap()).is_ok());
        v.amount = TokenAmount::from_atto(u128::from(amount) + 1);
        prop_assert!(crypto::verify(&sig, &signer, &v.signing_bytes().unwrap()).is_err());
        if other != seed {
            let other_addr = crypto::secp_address(&crypto::public_key(&crypto::secret_key(&[other; 32]).unwrap()));
            v.amount = TokenAmount::from_atto(amount);
            prop_assert!(crypto::verify(&sig, &other_addr, &v.signing_bytes().unwrap()).is_err());
        }
    }
}
