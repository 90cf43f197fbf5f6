//! Invoices: their CBOR and text round trips, and every refusal of a decoder or a payer's
//! check, each named for what it shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use paych_core::crypto::{self, CryptoError, SecretKey};
use paych_core::invoice::{
    new_id, new_secret, payment_hash, Hub, Invoice, InvoiceError, MAX_HUBS, MAX_INVOICE_BYTES,
    MAX_MULTIADDR_LEN, MAX_TEXT_LEN, TEXT_PREFIX,
};
use paych_core::types::decode::DecodeError;
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;

fn key(seed: u8) -> SecretKey {
    crypto::secret_key(&[seed; 32]).unwrap()
}

fn address(key: &SecretKey) -> Address {
    crypto::secp_address(&crypto::public_key(key))
}

fn hub(n: u8) -> Hub {
    Hub {
        address: Address::new_id(1000 + u64::from(n)),
        multiaddr: format!("/ip4/127.0.0.{n}/tcp/4001/p2p/12D3KooWhub{n}"),
    }
}

fn unsigned(payee: &SecretKey) -> Invoice {
    Invoice {
        id: new_id().unwrap(),
        amount: TokenAmount::from_atto(1_000_000u64),
        payment_hash: new_secret().unwrap().1,
        payee: address(payee),
        hubs: vec![hub(1), hub(2)],
        expiry: NOW + 3600,
        payee_margin: 30,
        signature: None,
    }
}

fn signed(payee: &SecretKey) -> Invoice {
    let mut invoice = unsigned(payee);
    invoice.sign(payee).unwrap();
    invoice
}

/// The invoice's CBOR with one item of its 8-item array replaced by `item` (CBOR bytes).
fn with_item(invoice: &Invoice, index: usize, item: &[u8]) -> Vec<u8> {
    let value: ipld_core::ipld::Ipld =
        serde_ipld_dagcbor::from_slice(&invoice.to_cbor().unwrap()).unwrap();
    let ipld_core::ipld::Ipld::List(mut items) = value else { panic!("not a list") };
    items[index] = serde_ipld_dagcbor::from_slice(item).unwrap();
    serde_ipld_dagcbor::to_vec(&ipld_core::ipld::Ipld::List(items)).unwrap()
}

#[test]
fn signed_invoice_round_trips_through_cbor_and_text() {
    let invoice = signed(&key(1));
    assert_eq!(Invoice::from_cbor(&invoice.to_cbor().unwrap()).unwrap(), invoice);
    let text = invoice.to_text().unwrap();
    assert!(text.starts_with(TEXT_PREFIX), "{text}");
    assert!(!text.contains(|c: char| c.is_ascii_uppercase() || c == '='), "{text}");
    assert_eq!(Invoice::from_text(&format!("  {text}\n")).unwrap(), invoice);
    invoice.verify(NOW).unwrap();
}

#[test]
fn payment_hash_is_the_blake2b_256_of_the_secret_and_secrets_differ() {
    let (secret, hash) = new_secret().unwrap();
    assert_eq!(hash, crypto::blake2b_256(&secret));
    assert_eq!(hash, payment_hash(&secret));
    assert_ne!(new_secret().unwrap().0, secret);
}

#[test]
fn payer_refuses_invoice_with_a_bad_signature() {
    let mut invoice = signed(&key(1));
    invoice.amount = TokenAmount::from_atto(2_000_000u64);
    assert!(matches!(
        invoice.verify(NOW),
        Err(InvoiceError::BadSignature(CryptoError::WrongSigner { .. }))
    ));
    let mut garbled = signed(&key(1));
    garbled.signature.as_mut().unwrap().bytes[64] = 9;
    assert!(matches!(garbled.verify(NOW), Err(InvoiceError::BadSignature(_))));
}

#[test]
fn payer_refuses_invoice_signed_by_someone_other_than_the_payee() {
    let mut invoice = unsigned(&key(1));
    invoice.sign(&key(2)).unwrap();
    let err = invoice.verify(NOW).unwrap_err();
    assert!(
        matches!(err, InvoiceError::BadSignature(CryptoError::WrongSigner { expected, .. }) if expected == address(&key(1))),
        "{err}"
    );
}

#[test]
fn payer_refuses_unsigned_invoice() {
    assert_eq!(unsigned(&key(1)).verify(NOW), Err(InvoiceError::Unsigned));
}

#[test]
fn payer_refuses_expired_invoice() {
    let invoice = signed(&key(1));
    invoice.verify(invoice.expiry).unwrap();
    assert_eq!(
        invoice.verify(invoice.expiry + 1),
        Err(InvoiceError::Expired { expiry: invoice.expiry, now: invoice.expiry + 1 })
    );
}

#[test]
fn decoder_refuses_a_payment_hash_that_is_not_32_bytes() {
    let invoice = signed(&key(1));
    let mut short = vec![0x58, 31];
    short.extend_from_slice(&[7; 31]);
    let err = Invoice::from_cbor(&with_item(&invoice, 2, &short)).unwrap_err();
    assert_eq!(
        err,
        InvoiceError::Decode(DecodeError::WrongLength {
            what: "invoice.payment_hash",
            expected: 32,
            found: 31
        })
    );
    let err = Invoice::from_cbor(&with_item(&invoice, 0, &[0x41, 1])).unwrap_err();
    assert!(
        matches!(err, InvoiceError::Decode(DecodeError::WrongLength { what: "invoice.id", .. })),
        "{err}"
    );
}

/// An invoice of payee 1 changed by `change`, then signed by the payee.
fn signed_after(change: impl FnOnce(&mut Invoice)) -> Invoice {
    let payee = key(1);
    let mut invoice = unsigned(&payee);
    change(&mut invoice);
    invoice.sign(&payee).unwrap();
    invoice
}

/// Whether `invoice`'s CBOR is refused for a field over its bound, `what`.
fn decoding_refuses_as_too_long(invoice: &Invoice, what: &str) -> bool {
    let err = Invoice::from_cbor(&invoice.to_cbor().unwrap()).unwrap_err();
    matches!(err, InvoiceError::Decode(DecodeError::TooLong { what: w, .. }) if w == what)
}

#[test]
fn too_many_hubs_are_refused_when_verifying_and_when_decoding() {
    let invoice = signed_after(|i| i.hubs = (0..=MAX_HUBS as u8).map(hub).collect());
    assert_eq!(invoice.verify(NOW), Err(InvoiceError::TooManyHubs(MAX_HUBS + 1)));
    assert!(decoding_refuses_as_too_long(&invoice, "invoice.hubs"));
}

#[test]
fn hub_multiaddr_beyond_its_bound_is_refused() {
    let multiaddr = "/".repeat(MAX_MULTIADDR_LEN + 1);
    let invoice = signed_after(|i| i.hubs = vec![Hub { address: Address::new_id(7), multiaddr }]);
    assert_eq!(invoice.verify(NOW), Err(InvoiceError::BadMultiaddr(MAX_MULTIADDR_LEN + 1)));
    assert!(decoding_refuses_as_too_long(&invoice, "hub.multiaddr"));
}

#[test]
fn invoice_without_a_positive_amount_or_with_a_margin_beyond_a_settle_window_is_refused() {
    let invoice = signed_after(|i| i.amount = TokenAmount::from_atto(0));
    assert_eq!(invoice.verify(NOW), Err(InvoiceError::NonPositiveAmount));
    let invoice = signed_after(|i| i.payee_margin = 1441);
    assert_eq!(invoice.verify(NOW), Err(InvoiceError::BadPayeeMargin(1441)));
    let invoice = signed_after(|i| i.payee_margin = -1);
    assert_eq!(invoice.verify(NOW), Err(InvoiceError::BadPayeeMargin(-1)));
}

#[test]
fn oversized_text_and_cbor_are_refused_before_decoding() {
    let text = format!("{TEXT_PREFIX}{}", "a".repeat(MAX_TEXT_LEN));
    assert_eq!(Invoice::from_text(&text), Err(InvoiceError::TextTooLong(text.len())));
    let bytes = vec![0u8; MAX_INVOICE_BYTES + 1];
    assert!(matches!(
        Invoice::from_cbor(&bytes),
        Err(InvoiceError::Decode(DecodeError::TooLong { .. }))
    ));
}

#[test]
fn trailing_bytes_after_an_invoice_are_refused() {
    let mut bytes = signed(&key(1)).to_cbor().unwrap();
    bytes.push(0);
    assert_eq!(Invoice::from_cbor(&bytes), Err(InvoiceError::Decode(DecodeError::TrailingBytes)));
}

#[test]
fn text_without_the_prefix_or_not_in_canonical_base32_is_refused() {
    let text = signed(&key(1)).to_text().unwrap();
    let body = text.strip_prefix(TEXT_PREFIX).unwrap();
    assert_eq!(Invoice::from_text(body), Err(InvoiceError::MissingPrefix));
    assert_eq!(Invoice::from_text(&format!("paychinv2{body}")), Err(InvoiceError::MissingPrefix));
    assert!(matches!(
        Invoice::from_text(&text.to_ascii_uppercase()),
        Err(InvoiceError::MissingPrefix)
    ));
    let upper = format!("{TEXT_PREFIX}{}", body.to_ascii_uppercase());
    assert!(matches!(Invoice::from_text(&upper), Err(InvoiceError::Base32(_))));
    assert!(matches!(Invoice::from_text(&format!("{text}=")), Err(InvoiceError::Base32(_))));
    assert!(matches!(Invoice::from_text(&format!("{text}1")), Err(InvoiceError::Base32(_))));
}

proptest! {
    #[test]
    fn any_signed_invoice_round_trips_and_verifies(
        id in any::<[u8; 16]>(),
        atto in 1u64..,
        hash in any::<[u8; 32]>(),
        hubs in prop::collection::vec((any::<u64>(), "/[a-z0-9/.]{0,60}"), 0..=MAX_HUBS),
        expiry in any::<u64>(),
        margin in 0i64..=1440,
        seed in 1u8..=127,
    ) {
        let payee = key(seed);
        let mut invoice = Invoice {
            id,
            amount: TokenAmount::from_atto(atto),
            payment_hash: hash,
            payee: address(&payee),
            hubs: hubs.into_iter().map(|(id, multiaddr)| Hub { address: Address::new_id(id), multiaddr }).collect(),
            expiry,
            payee_margin: margin,
            signature: None,
        };
        invoice.sign(&payee).unwrap();
        let text = invoice.to_text().unwrap();
        let decoded = Invoice::from_text(&text).unwrap();
        prop_assert_eq!(&decoded, &invoice);
        prop_assert_eq!(decoded.to_text().unwrap(), text);
        prop_assert_eq!(decoded.verify_signature(), Ok(()));
    }
}
