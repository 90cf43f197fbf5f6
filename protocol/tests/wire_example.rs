//! The worked examples of `docs/protocol.md`, byte for byte: each is produced here and
//! must appear verbatim in the document, so that the document stays true.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use paych_core::types::{Address, TokenAmount};
use paych_protocol::{PeerRecord, SignedPeerRecord, VoucherRequest, VoucherResponse};
use paych_testkit::keys::{address, key, signed_voucher};

const DOC: &str = include_str!("../../docs/protocol.md");

/// The voucher request of the document: lane 0, nonce 1, 1000 attoFIL on channel f01001,
/// signed by the key of 32 bytes 0x01, with the flow reference "flow-1".
fn example_request() -> VoucherRequest {
    let voucher = signed_voucher(&key(1), Address::new_id(1001), 0, 1, 1000);
    VoucherRequest { voucher, flow: Some(b"flow-1".to_vec()), announce: None }
}

fn example_peer_record() -> PeerRecord {
    let keypair = Keypair::ed25519_from_bytes([7u8; 32]).unwrap();
    let peer = PeerId::from(keypair.public());
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
    PeerRecord::new(address(&key(1)), &peer, &[addr], 1).unwrap()
}

/// Hex as the document prints it: 32 bytes per line.
fn hex_lines(bytes: &[u8]) -> String {
    bytes.chunks(32).map(hex::encode).collect::<Vec<_>>().join("\n")
}

fn assert_in_doc(what: &str, bytes: &[u8]) {
    let hex = hex_lines(bytes);
    assert!(DOC.contains(&hex), "docs/protocol.md must show the {what}:\n{hex}\n");
}

#[test]
fn voucher_request_example_is_in_the_document() {
    let request = example_request();
    let bytes = request.to_cbor().unwrap();
    assert_eq!(VoucherRequest::from_cbor(&bytes).unwrap(), request);
    // Its parts, as the document annotates them.
    let voucher = request.voucher.to_cbor().unwrap();
    assert_eq!(bytes[0], 0x83);
    assert_eq!(&bytes[1..1 + voucher.len()], &voucher[..]);
    assert_eq!(&bytes[1 + voucher.len()..], b"\x46flow-1\xf6");
    assert_in_doc("voucher request", &bytes);
}

#[test]
fn voucher_response_example_is_in_the_document() {
    let amount = TokenAmount::from_atto(1000);
    let bytes = VoucherResponse::accepted(amount.clone(), amount).to_cbor().unwrap();
    assert_eq!(hex::encode(&bytes), "8400430003e8430003e8f6");
    assert_in_doc("voucher response", &bytes);
}

#[test]
fn peer_record_example_is_in_the_document() {
    let record = example_peer_record();
    assert_in_doc("peer record", &record.to_cbor().unwrap());
    let signed = SignedPeerRecord::new(
        &key(1),
        &PeerId::from_bytes(&record.peer_id).unwrap(),
        &["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
        1,
    )
    .unwrap();
    assert_eq!(signed.record, record);
    assert_in_doc("signed peer record", &signed.to_cbor().unwrap());
}

#[test]
fn route_examples_are_in_the_document() {
    use paych_protocol::{RouteRequest, RouteResponse, RouteStatus};
    assert_eq!(RouteRequest::Policy.to_cbor().unwrap(), [0x81, 0x02]);
    assert!(DOC.contains("A policy request is `81 02`"));
    let not_a_hub = RouteResponse::refused(RouteStatus::NotAHub, "this node routes no payments");
    assert_in_doc("NotAHub route response", &not_a_hub.to_cbor().unwrap());
    let fulfilled = RouteResponse::fulfilled(vec![0x11; 32]);
    assert_in_doc("fulfilled route response", &fulfilled.to_cbor().unwrap());
}
