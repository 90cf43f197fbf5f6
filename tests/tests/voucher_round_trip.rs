//! A voucher's journey through the foundation: signed by a keystore wallet on disk, sent
//! as text, decoded and verified by the payee.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paych_core::crypto;
use paych_core::types::{Address, Merge, Network, SignedVoucher, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet};

#[test]
fn a_voucher_signed_by_the_keystore_survives_the_text_form_and_verifies() {
    let repo = tempfile::tempdir().unwrap();
    let wallet = KeyStore::open(repo.path().join("keystore"), Network::Testnet).unwrap();
    let payer = wallet.new_key().unwrap();

    let mut voucher = SignedVoucher::new(Address::new_id(1001), 2, 5, TokenAmount::from_whole(3));
    voucher.merges = vec![Merge { lane: 0, nonce: 4 }];
    voucher.signature = Some(wallet.sign(&payer, &voucher.signing_bytes().unwrap()).unwrap());
    let text = voucher.to_base64url().unwrap();

    // The payee, holding only the text and the payer's address.
    let received = SignedVoucher::from_base64url(&text).unwrap();
    assert_eq!(received, voucher);
    let signature = received.signature.as_ref().unwrap();
    crypto::verify(signature, &payer, &received.signing_bytes().unwrap()).unwrap();

    // Any change to what was signed breaks the signature.
    let mut tampered = received.clone();
    tampered.amount = TokenAmount::from_whole(30);
    assert!(crypto::verify(signature, &payer, &tampered.signing_bytes().unwrap()).is_err());
}
