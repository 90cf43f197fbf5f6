//! Signed peer records: a Filecoin key address vouches for a libp2p peer and its
//! multiaddrs; anything tampered with, signed by another key or unparsable is refused with
//! a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use paych_core::crypto::{self, CryptoError};
use paych_core::types::{Address, Signature, SignatureType};
use paych_protocol::messages::{MAX_PEER_RECORD_MULTIADDRS, PEER_RECORD_DOMAIN};
use paych_protocol::{
    EncodeError, PeerRecord, PeerRecordError, RuleViolation, SignedPeerRecord, VerifiedPeer,
};
use paych_testkit::keys::{address, key};

fn peer() -> PeerId {
    PeerId::from(Keypair::generate_ed25519().public())
}

fn addrs() -> Vec<Multiaddr> {
    vec![
        "/ip4/192.0.2.7/tcp/4001".parse().unwrap(),
        "/dns4/provider.example/tcp/443".parse().unwrap(),
        "/ip6/::1/tcp/4001".parse().unwrap(),
    ]
}

/// Re-signs `record` as its address's key would (for records edited on purpose).
fn signed_by(secret: &crypto::SecretKey, record: PeerRecord) -> SignedPeerRecord {
    let signature = crypto::sign(secret, &record.signing_bytes().unwrap());
    SignedPeerRecord { record, signature }
}

fn wrong_signer(error: PeerRecordError) -> (Address, Address) {
    match error {
        PeerRecordError::Signature(CryptoError::WrongSigner { expected, recovered }) => {
            (expected, recovered)
        }
        other => panic!("expected a wrong-signer error, got {other:?}"),
    }
}

#[test]
fn a_signed_record_verifies_and_yields_the_peer_and_its_addresses() {
    let (secret, peer) = (key(1), peer());
    let signed = SignedPeerRecord::new(&secret, &peer, &addrs(), 7).unwrap();
    let expected =
        VerifiedPeer { address: address(&secret), peer_id: peer, multiaddrs: addrs(), sequence: 7 };
    assert_eq!(signed.verify().unwrap(), expected);

    // As stored and sent: its CBOR decodes back to a record that still verifies.
    let decoded = SignedPeerRecord::from_cbor(&signed.to_cbor().unwrap()).unwrap();
    assert_eq!(decoded, signed);
    assert_eq!(decoded.verify().unwrap(), expected);
}

#[test]
fn the_signature_is_over_the_domain_separated_record() {
    let secret = key(1);
    let signed = SignedPeerRecord::new(&secret, &peer(), &addrs(), 1).unwrap();
    let mut expected = PEER_RECORD_DOMAIN.to_vec();
    expected.extend(signed.record.to_cbor().unwrap());
    assert_eq!(signed.record.signing_bytes().unwrap(), expected);
    crypto::verify(&signed.signature, &address(&secret), &expected).unwrap();
    // The same key's signature over the bare record is not a valid record signature.
    let bare = crypto::sign(&secret, &signed.record.to_cbor().unwrap());
    let forged = SignedPeerRecord { signature: bare, ..signed };
    wrong_signer(forged.verify().unwrap_err());
}

#[test]
fn a_tampered_record_is_refused() {
    let secret = key(1);
    let signed = SignedPeerRecord::new(&secret, &peer(), &addrs(), 1).unwrap();

    let mut higher = signed.clone();
    higher.record.sequence = 2;
    let (expected, recovered) = wrong_signer(higher.verify().unwrap_err());
    assert_eq!(expected, address(&secret));
    assert_ne!(recovered, expected);

    let mut redirected = signed.clone();
    redirected.record.multiaddrs[0] =
        "/ip4/203.0.113.66/tcp/4001".parse::<Multiaddr>().unwrap().to_vec();
    wrong_signer(redirected.verify().unwrap_err());

    let mut hijacked = signed.clone();
    hijacked.record.peer_id = peer().to_bytes();
    wrong_signer(hijacked.verify().unwrap_err());

    let mut flipped = signed;
    flipped.signature.bytes[10] ^= 0x01;
    assert!(matches!(flipped.verify(), Err(PeerRecordError::Signature(_))));
}

#[test]
fn a_record_signed_by_another_key_is_refused() {
    let (owner, thief) = (key(1), key(2));
    // Claims the owner's address, signed with the thief's key.
    let record = PeerRecord::new(address(&owner), &peer(), &addrs(), 1).unwrap();
    let forged = signed_by(&thief, record);
    assert_eq!(wrong_signer(forged.verify().unwrap_err()), (address(&owner), address(&thief)));

    // sign_with checks the signer's work before returning the record.
    let result = SignedPeerRecord::sign_with(address(&owner), &peer(), &addrs(), 1, |bytes| {
        Ok::<_, std::io::Error>(crypto::sign(&thief, bytes))
    });
    wrong_signer(result.unwrap_err());
}

#[test]
fn sign_with_uses_an_external_signer_and_reports_its_failure() {
    let secret = key(3);
    let signed = SignedPeerRecord::sign_with(address(&secret), &peer(), &addrs(), 9, |bytes| {
        Ok::<_, std::io::Error>(crypto::sign(&secret, bytes))
    })
    .unwrap();
    assert_eq!(signed.verify().unwrap().sequence, 9);

    let failed = SignedPeerRecord::sign_with(address(&secret), &peer(), &addrs(), 9, |_| {
        Err(std::io::Error::other("wallet locked"))
    });
    assert!(matches!(failed, Err(PeerRecordError::Signer(e)) if e.to_string() == "wallet locked"));
}

#[test]
fn bad_multiaddr_bytes_are_refused_after_the_signature_checks() {
    let secret = key(1);
    let mut record = PeerRecord::new(address(&secret), &peer(), &addrs(), 1).unwrap();
    record.multiaddrs.push(vec![0xff, 0xff, 0xff]);
    let signed = signed_by(&secret, record);
    match signed.verify() {
        Err(PeerRecordError::Multiaddr { index, .. }) => assert_eq!(index, 3),
        other => panic!("expected a multiaddr error, got {other:?}"),
    }
}

#[test]
fn bad_peer_id_bytes_are_refused() {
    let secret = key(1);
    let mut record = PeerRecord::new(address(&secret), &peer(), &addrs(), 1).unwrap();
    // A sha2-256 multihash that declares 32 bytes of digest and carries one.
    record.peer_id = vec![0x12, 0x20, 0x01];
    let signed = signed_by(&secret, record);
    assert!(matches!(signed.verify(), Err(PeerRecordError::PeerId(_))));
}

#[test]
fn only_an_f1_address_with_a_secp256k1_signature_can_sign() {
    let secret = key(1);
    let mut record = PeerRecord::new(address(&secret), &peer(), &addrs(), 1).unwrap();
    record.address = Address::new_id(1001);
    let signed = signed_by(&secret, record);
    assert!(matches!(
        signed.verify(),
        Err(PeerRecordError::Signature(CryptoError::NotSecpAddress(_)))
    ));

    let mut bls = SignedPeerRecord::new(&secret, &peer(), &addrs(), 1).unwrap();
    bls.signature = Signature::new_bls(vec![0; 96]);
    assert!(matches!(
        bls.verify(),
        Err(PeerRecordError::Signature(CryptoError::UnsupportedSignatureType(SignatureType::BLS)))
    ));
}

#[test]
fn a_record_with_too_many_addresses_cannot_be_made() {
    let many: Vec<Multiaddr> = (0..=MAX_PEER_RECORD_MULTIADDRS as u16)
        .map(|port| format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap())
        .collect();
    assert_eq!(
        PeerRecord::new(address(&key(1)), &peer(), &many, 1),
        Err(RuleViolation::TooManyMultiaddrs(MAX_PEER_RECORD_MULTIADDRS + 1))
    );
    assert!(matches!(
        SignedPeerRecord::new(&key(1), &peer(), &many, 1),
        Err(PeerRecordError::Encode(EncodeError::Rule(RuleViolation::TooManyMultiaddrs(17))))
    ));
}
