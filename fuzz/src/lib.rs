//! The checks the fuzz targets share: reading a wire message the way a node reads it from a
//! libp2p stream, and the round-trip properties every decoder must keep.
//!
//! A target never panics on bad input; it panics (and libFuzzer reports a crash) only when a
//! property below fails: a decoded value that cannot be encoded again, that decodes to
//! something else once re-encoded, or that the node would refuse to send.

use std::fmt::Debug;
use std::future::Future;
use std::io;

use futures::io::Cursor;
use hmac::{Hmac, KeyInit, Mac};
use libp2p::request_response::Codec as _;
use libp2p::StreamProtocol;
use paych_protocol::codec::{exceeds_item_budget, Codec, CodecError, WireMessage};
use paych_testkit::devnet::{runtime, Net};
use sha2::Sha256;

/// The protocol name handed to the codec (the codec does not look at it).
const PROTOCOL: StreamProtocol = StreamProtocol::new("/paych/fuzz");

/// Reads `bytes` as a request of the codec `Codec<Req, Resp>`, exactly as a node reads one
/// from an inbound stream: size limit, item budget, then the typed decoder.
pub fn read_request<Req: WireMessage, Resp: WireMessage>(bytes: &[u8]) -> io::Result<Req> {
    let mut codec = Codec::<Req, Resp>::default();
    futures::executor::block_on(codec.read_request(&PROTOCOL, &mut Cursor::new(bytes)))
}

/// Reads `bytes` as a response of the codec `Codec<Req, Resp>`, as a requester reads one.
pub fn read_response<Req: WireMessage, Resp: WireMessage>(bytes: &[u8]) -> io::Result<Resp> {
    let mut codec = Codec::<Req, Resp>::default();
    futures::executor::block_on(codec.read_response(&PROTOCOL, &mut Cursor::new(bytes)))
}

/// The properties of a wire message read from outside bytes:
///
/// - a refusal is an I/O error carrying a typed [`CodecError`];
/// - an accepted message encodes again, within its protocol's byte limit and item budget
///   (what a node accepts it can also send), and decodes back to itself.
pub fn check_wire<M: WireMessage + PartialEq + Debug>(read: io::Result<M>) {
    let message = match read {
        Ok(message) => message,
        Err(e) => {
            assert!(CodecError::from_io(&e).is_some(), "untyped codec error: {e}");
            return;
        }
    };
    let bytes = match message.encode() {
        Ok(bytes) => bytes,
        Err(e) => panic!("a decoded {} does not encode again: {e}\n{message:?}", M::NAME),
    };
    assert!(bytes.len() <= M::MAX_BYTES, "a decoded {} re-encodes over its limit", M::NAME);
    assert!(
        !exceeds_item_budget(&bytes, M::MAX_ITEMS),
        "a decoded {} re-encodes over its item budget",
        M::NAME
    );
    match M::decode(&bytes) {
        Ok(again) => assert_eq!(again, message, "{} changed in a round trip", M::NAME),
        Err(e) => panic!("a re-encoded {} does not decode: {e}\n{message:?}", M::NAME),
    }
}

/// Decodes with `decode`; on success, encodes with `encode` and checks that the encoding
/// decodes to the same value and is a fixed point (encoding the value again gives the same
/// bytes). Returns the decoded value.
pub fn check_round_trip<T, E1, E2>(
    what: &str,
    input: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E1>,
    encode: impl Fn(&T) -> Result<Vec<u8>, E2>,
) -> Option<T>
where
    T: PartialEq + Debug,
    E1: std::fmt::Display,
    E2: std::fmt::Display,
{
    let value = decode(input).ok()?;
    let bytes = match encode(&value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a decoded {what} does not encode again: {e}\n{value:?}"),
    };
    let again = match decode(&bytes) {
        Ok(again) => again,
        Err(e) => panic!("a re-encoded {what} does not decode: {e}\n{value:?}"),
    };
    assert_eq!(again, value, "{what} changed in a round trip");
    match encode(&again) {
        Ok(twice) => assert_eq!(twice, bytes, "{what}: encoding is not canonical"),
        Err(e) => panic!("{what} encodes once but not twice: {e}"),
    }
    Some(value)
}

/// HMAC-SHA256 of `input` under `secret`: the signature of an HS256 token.
pub fn hs256(secret: &[u8], input: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// The start of a stateful target's world, built once: a runtime, and what `setup` builds
/// on it from a devnet that mines only when told to (so the head stays put while fuzzing).
pub fn on_a_manual_net<T, F: Future<Output = T>>(
    setup: impl FnOnce(Net) -> F,
) -> (tokio::runtime::Runtime, T) {
    let runtime = runtime();
    let built = runtime.block_on(setup(Net::manual()));
    (runtime, built)
}

/// [`check_round_trip`] of `$input` through a type's own CBOR codec (`$t::from_cbor`,
/// `$t::to_cbor`): the decoded value, if `$input` decodes.
#[macro_export]
macro_rules! check_cbor {
    ($what:expr, $input:expr, $t:ty) => {
        $crate::check_round_trip($what, $input, <$t>::from_cbor, <$t>::to_cbor)
    };
}
