//! The request-response codec of the paych protocols: framing, size limits, read timeout.
//!
//! Framing: one message per substream direction, with no length prefix. The requester
//! writes the request's CBOR and closes its write side; the responder reads to end of
//! stream, answers with the response's CBOR and closes. A reader takes at most
//! `limit + 1` bytes: more than `limit` is refused without reading further, so a peer can
//! never make this side buffer more than the message's limit. A request must be read in full
//! within the read timeout; a response within the response timeout, which starts when the
//! request is written and so includes the responder's work.
//!
//! Failures surface as [`std::io::Error`]s carrying a [`CodecError`] (get it back with
//! [`CodecError::from_io`]): an oversized or malformed message is
//! [`InvalidData`](io::ErrorKind::InvalidData), a slow one
//! [`TimedOut`](io::ErrorKind::TimedOut), and a message this side refuses to send
//! [`InvalidInput`](io::ErrorKind::InvalidInput). The request-response behaviour reports
//! them as inbound or outbound failures; nothing here panics or closes the connection.

use std::io;
use std::marker::PhantomData;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures::future::{self, Either};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_timer::Delay;
use libp2p::StreamProtocol;

use crate::messages::{
    DecodeError, EncodeError, ReconcileRequest, ReconcileResponse, VoucherRequest, VoucherResponse,
};
use crate::retrieval::{
    RetrievalRequest, RetrievalResponse, RETRIEVAL_REQUEST_MAX_BYTES, RETRIEVAL_REQUEST_MAX_ITEMS,
    RETRIEVAL_RESPONSE_MAX_BYTES, RETRIEVAL_RESPONSE_MAX_ITEMS,
};
use crate::route::{
    RouteRequest, RouteResponse, ROUTE_REQUEST_MAX_BYTES, ROUTE_REQUEST_MAX_ITEMS,
    ROUTE_RESPONSE_MAX_BYTES, ROUTE_RESPONSE_MAX_ITEMS,
};

/// The largest voucher request accepted: a voucher plus a flow reference and an announce
/// with a full peer record.
pub const VOUCHER_REQUEST_MAX_BYTES: usize = 16 * 1024;
/// The largest voucher response accepted: two amounts and a status message.
pub const VOUCHER_RESPONSE_MAX_BYTES: usize = 2 * 1024;
/// The largest reconcile request accepted: up to 1024 vouchers and the payee's peer record.
pub const RECONCILE_REQUEST_MAX_BYTES: usize = 1024 * 1024;
/// The largest reconcile response accepted: a combined voucher (whose merges may name up to
/// 1023 lanes, about 20 KiB) and a status message.
pub const RECONCILE_RESPONSE_MAX_BYTES: usize = 64 * 1024;
/// The most CBOR data items a voucher request may hold (a voucher is 12 to 16, an announce
/// about 30; the rest leaves room for several hundred merges).
pub const VOUCHER_REQUEST_MAX_ITEMS: usize = 2048;
/// The most CBOR data items a voucher response may hold (it has 5).
pub const VOUCHER_RESPONSE_MAX_ITEMS: usize = 64;
/// The most CBOR data items a reconcile request may hold (1024 vouchers of up to 16 items,
/// four times over).
pub const RECONCILE_REQUEST_MAX_ITEMS: usize = 65_536;
/// The most CBOR data items a reconcile response may hold (a combined voucher merging 1023
/// lanes has about 3 100).
pub const RECONCILE_RESPONSE_MAX_ITEMS: usize = 8192;
/// How long reading one request may take, from the substream's opening to its end.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A message of a paych protocol, as the codec frames it.
pub trait WireMessage: Sized + Send + 'static {
    /// What the message is, for errors.
    const NAME: &'static str;
    /// The most bytes its encoding may take on the wire.
    const MAX_BYTES: usize;
    /// The most CBOR data items its encoding may hold. Decoding builds a tree of about
    /// 100 bytes per item, so this, not the byte limit, bounds the memory a message costs.
    const MAX_ITEMS: usize;
    /// The message's CBOR.
    fn encode(&self) -> Result<Vec<u8>, EncodeError>;
    /// The message from exactly its CBOR.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

macro_rules! wire {
    ($t:ty, $name:literal, $max:expr, $items:expr) => {
        impl WireMessage for $t {
            const NAME: &'static str = $name;
            const MAX_BYTES: usize = $max;
            const MAX_ITEMS: usize = $items;
            fn encode(&self) -> Result<Vec<u8>, EncodeError> {
                self.to_cbor()
            }
            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                Self::from_cbor(bytes)
            }
        }
    };
}

wire!(VoucherRequest, "voucher request", VOUCHER_REQUEST_MAX_BYTES, VOUCHER_REQUEST_MAX_ITEMS);
wire!(VoucherResponse, "voucher response", VOUCHER_RESPONSE_MAX_BYTES, VOUCHER_RESPONSE_MAX_ITEMS);
wire!(
    ReconcileRequest,
    "reconcile request",
    RECONCILE_REQUEST_MAX_BYTES,
    RECONCILE_REQUEST_MAX_ITEMS
);
wire!(
    RetrievalRequest,
    "retrieval request",
    RETRIEVAL_REQUEST_MAX_BYTES,
    RETRIEVAL_REQUEST_MAX_ITEMS
);
wire!(
    RetrievalResponse,
    "retrieval response",
    RETRIEVAL_RESPONSE_MAX_BYTES,
    RETRIEVAL_RESPONSE_MAX_ITEMS
);
wire!(
    ReconcileResponse,
    "reconcile response",
    RECONCILE_RESPONSE_MAX_BYTES,
    RECONCILE_RESPONSE_MAX_ITEMS
);
wire!(RouteRequest, "route request", ROUTE_REQUEST_MAX_BYTES, ROUTE_REQUEST_MAX_ITEMS);
wire!(RouteResponse, "route response", ROUTE_RESPONSE_MAX_BYTES, ROUTE_RESPONSE_MAX_ITEMS);

/// Why a message could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The message is larger than its protocol allows.
    #[error("{what} exceeds the {limit}-byte limit")]
    TooLarge {
        /// The message.
        what: &'static str,
        /// Its limit in bytes.
        limit: usize,
    },
    /// The message holds more CBOR data items than its protocol allows.
    #[error("{what} holds more than {limit} CBOR items")]
    TooManyItems {
        /// The message.
        what: &'static str,
        /// Its limit in items.
        limit: usize,
    },
    /// The message did not arrive in full within the read timeout.
    #[error("{what} not received within {timeout:?}")]
    Timeout {
        /// The message.
        what: &'static str,
        /// The read timeout.
        timeout: Duration,
    },
    /// The message's bytes are malformed.
    #[error("malformed {what}: {source}")]
    Decode {
        /// The message.
        what: &'static str,
        /// What is wrong with it.
        source: DecodeError,
    },
    /// The message to send breaks a rule of the wire format.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// The message.
        what: &'static str,
        /// What is wrong with it.
        source: EncodeError,
    },
}

impl CodecError {
    /// The [`CodecError`] an I/O error of this codec carries, if it carries one.
    pub fn from_io(error: &io::Error) -> Option<&CodecError> {
        error.get_ref().and_then(|e| e.downcast_ref::<CodecError>())
    }

    fn into_io(self) -> io::Error {
        let kind = match self {
            CodecError::TooLarge { .. }
            | CodecError::TooManyItems { .. }
            | CodecError::Decode { .. } => io::ErrorKind::InvalidData,
            CodecError::Timeout { .. } => io::ErrorKind::TimedOut,
            CodecError::Encode { .. } => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, self)
    }
}

/// The DAG-CBOR request-response codec of one paych protocol, with the request and
/// response types `Req` and `Resp`.
pub struct Codec<Req, Resp> {
    request_timeout: Duration,
    response_timeout: Duration,
    messages: PhantomData<fn() -> (Req, Resp)>,
}

/// The codec of `/paych/voucher/1.0.0`.
pub type VoucherCodec = Codec<VoucherRequest, VoucherResponse>;
/// The codec of `/paych/reconcile/2.0.0`.
pub type ReconcileCodec = Codec<ReconcileRequest, ReconcileResponse>;
/// The codec of `/paych/retrieval/2.0.0`.
pub type RetrievalCodec = Codec<RetrievalRequest, RetrievalResponse>;
/// The codec of `/paych/route/1.0.0`.
pub type RouteCodec = Codec<RouteRequest, RouteResponse>;

impl<Req, Resp> Codec<Req, Resp> {
    /// A codec that gives up on a request or a response not read in full within
    /// `read_timeout`.
    pub fn new(read_timeout: Duration) -> Self {
        Codec {
            request_timeout: read_timeout,
            response_timeout: read_timeout,
            messages: PhantomData,
        }
    }

    /// Sets how long reading a response may take. The requester starts reading as soon as
    /// its request is written, so this includes the responder's work on the request.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long reading a request may take.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// How long reading a response may take.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }
}

impl<Req, Resp> Default for Codec<Req, Resp> {
    fn default() -> Self {
        Self::new(DEFAULT_READ_TIMEOUT)
    }
}

impl<Req, Resp> Clone for Codec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::new(self.request_timeout).with_response_timeout(self.response_timeout)
    }
}

impl<Req, Resp> std::fmt::Debug for Codec<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("request_timeout", &self.request_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl<Req: WireMessage, Resp: WireMessage> libp2p::request_response::Codec for Codec<Req, Resp> {
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, self.request_timeout).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, self.response_timeout).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, res).await
    }
}

/// Reads one message: the rest of the stream, at most `M::MAX_BYTES`, within `timeout`.
async fn read_message<M, T>(io: &mut T, timeout: Duration) -> io::Result<M>
where
    M: WireMessage,
    T: AsyncRead + Unpin + Send,
{
    let bytes = read_body(io, M::NAME, M::MAX_BYTES, timeout).await?;
    if exceeds_item_budget(&bytes, M::MAX_ITEMS) {
        return Err(CodecError::TooManyItems { what: M::NAME, limit: M::MAX_ITEMS }.into_io());
    }
    M::decode(&bytes).map_err(|source| CodecError::Decode { what: M::NAME, source }.into_io())
}

/// The rest of the stream, refused once it exceeds `limit` bytes or `timeout`.
async fn read_body<T>(
    io: &mut T,
    what: &'static str,
    limit: usize,
    timeout: Duration,
) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut bytes = Vec::new();
    // One byte past the limit tells an oversized message from one of exactly `limit` bytes.
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut limited = io.take(cap);
    let mut read = pin!(limited.read_to_end(&mut bytes));
    // A message already in the stream's buffers is read without arming the timer: arming
    // one registers it with the timer's thread and wakes that thread, which costs more than
    // reading a small message.
    match futures::poll!(read.as_mut()) {
        Poll::Ready(result) => {
            result?;
        }
        Poll::Pending => match future::select(read, Delay::new(timeout)).await {
            Either::Left((result, _)) => {
                result?;
            }
            Either::Right(_) => return Err(CodecError::Timeout { what, timeout }.into_io()),
        },
    }
    if bytes.len() > limit {
        return Err(CodecError::TooLarge { what, limit }.into_io());
    }
    Ok(bytes)
}

/// Whether the first CBOR value in `bytes` holds more than `max` data items, counted by
/// walking the item headers without building anything. Bytes that are not DAG-CBOR
/// (truncated, indefinite lengths, reserved values) are left for the decoder to refuse.
/// Each step consumes at least one byte, so the walk is bounded by the input's length.
pub fn exceeds_item_budget(bytes: &[u8], max: usize) -> bool {
    // Items still to be read to complete the value: arrays, maps and tags add their contents.
    let mut pending: u64 = 1;
    let mut items = 0usize;
    let mut pos = 0usize;
    while pending > 0 {
        let Some(&initial) = bytes.get(pos) else { return false };
        pos += 1;
        items += 1;
        if items > max {
            return true;
        }
        pending -= 1;
        let (major, info) = (initial >> 5, initial & 0x1f);
        let argument = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let len = 1usize << (info - 24);
                let Some(be) = bytes.get(pos..pos + len) else { return false };
                pos += len;
                be.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
            }
            _ => return false,
        };
        match major {
            // Byte and text strings: skip the payload.
            2 | 3 => pos = pos.saturating_add(usize::try_from(argument).unwrap_or(usize::MAX)),
            4 => pending = pending.saturating_add(argument),
            5 => pending = pending.saturating_add(argument.saturating_mul(2)),
            6 => pending = pending.saturating_add(1),
            // Integers, simple values and floats: the argument was the whole payload.
            _ => {}
        }
    }
    false
}

/// Writes one message, refusing one its peer would refuse.
async fn write_message<M, T>(io: &mut T, message: M) -> io::Result<()>
where
    M: WireMessage,
    T: AsyncWrite + Unpin + Send,
{
    let bytes = message
        .encode()
        .map_err(|source| CodecError::Encode { what: M::NAME, source }.into_io())?;
    if bytes.len() > M::MAX_BYTES {
        return Err(CodecError::TooLarge { what: M::NAME, limit: M::MAX_BYTES }.into_io());
    }
    io.write_all(&bytes).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use futures::io::Cursor;
    use paych_core::types::{Address, SignedVoucher, TokenAmount};

    fn request() -> VoucherRequest {
        VoucherRequest::new(SignedVoucher::new(
            Address::new_id(1001),
            0,
            1,
            TokenAmount::from_atto(5),
        ))
    }

    #[test]
    fn reads_back_what_it_writes() {
        futures::executor::block_on(async {
            let mut out = Vec::new();
            write_message(&mut out, request()).await.unwrap();
            let read: VoucherRequest =
                read_message(&mut Cursor::new(out), DEFAULT_READ_TIMEOUT).await.unwrap();
            assert_eq!(read, request());
        });
    }

    #[test]
    fn refuses_a_body_one_byte_over_the_limit_and_takes_one_at_the_limit() {
        futures::executor::block_on(async {
            let at_limit = vec![0u8; 10];
            let body =
                read_body(&mut Cursor::new(at_limit), "x", 10, DEFAULT_READ_TIMEOUT).await.unwrap();
            assert_eq!(body.len(), 10);
            let over = vec![0u8; 11];
            let err =
                read_body(&mut Cursor::new(over), "x", 10, DEFAULT_READ_TIMEOUT).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert_eq!(
                CodecError::from_io(&err),
                Some(&CodecError::TooLarge { what: "x", limit: 10 })
            );
        });
    }

    #[test]
    fn a_stalled_reader_times_out() {
        futures::executor::block_on(async {
            let err =
                read_body(&mut Stalled, "x", 10, Duration::from_millis(50)).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert!(matches!(CodecError::from_io(&err), Some(CodecError::Timeout { .. })));
        });
    }

    #[test]
    fn item_budget_counts_every_nested_item_and_skips_string_payloads() {
        // [1, [2, 3], h'aabb', {"a": 4}] = 1 + 1 + 3 + 1 + 3 = 9 items.
        let bytes = [0x84, 0x01, 0x82, 0x02, 0x03, 0x42, 0xaa, 0xbb, 0xa1, 0x61, 0x61, 0x04];
        assert!(!exceeds_item_budget(&bytes, 9));
        assert!(exceeds_item_budget(&bytes, 8));
        // A byte string's contents are not items, however many bytes it holds.
        let mut long = vec![0x59, 0x10, 0x00];
        long.extend([0x01; 4096]);
        assert!(!exceeds_item_budget(&long, 1));
    }

    #[test]
    fn item_budget_refuses_a_flood_of_tiny_items_before_decoding() {
        // An array of 100 000 zeros: 100 kB that would decode into ~10 MB of tree.
        let mut flood = vec![0x9a, 0x00, 0x01, 0x86, 0xa0];
        flood.extend(std::iter::repeat_n(0x00, 100_000));
        assert!(exceeds_item_budget(&flood, RECONCILE_REQUEST_MAX_ITEMS));
        let err = refused_as_invalid_data::<ReconcileRequest>(flood);
        assert!(matches!(CodecError::from_io(&err), Some(CodecError::TooManyItems { .. })));
    }

    /// Reads `bytes` as one `M`, which the codec refuses as invalid data: the error.
    fn refused_as_invalid_data<M: WireMessage + std::fmt::Debug>(bytes: Vec<u8>) -> io::Error {
        futures::executor::block_on(async {
            let err = read_message::<M, _>(&mut Cursor::new(bytes), DEFAULT_READ_TIMEOUT)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            err
        })
    }

    #[test]
    fn item_budget_leaves_malformed_bytes_to_the_decoder() {
        for bytes in [&[][..], &[0x9f, 0x01, 0xff][..], &[0x82, 0x01][..], &[0x5a, 0xff][..]] {
            assert!(!exceeds_item_budget(bytes, 1_000));
        }
    }

    #[test]
    fn malformed_bytes_are_invalid_data_with_a_decode_error() {
        let err = refused_as_invalid_data::<VoucherRequest>(vec![0x83, 0x01]);
        assert!(matches!(CodecError::from_io(&err), Some(CodecError::Decode { .. })));
    }

    #[test]
    fn a_reader_that_stalls_after_its_first_bytes_times_out() {
        futures::executor::block_on(async {
            let mut reader = Trickle { waited: true, chunk: Some(vec![0u8; 4]), then_end: false };
            let err = read_body(&mut reader, "x", 10, Duration::from_millis(50)).await.unwrap_err();
            assert!(matches!(CodecError::from_io(&err), Some(CodecError::Timeout { .. })));
        });
    }

    #[test]
    fn a_message_not_there_at_the_first_read_is_read_once_it_arrives() {
        futures::executor::block_on(async {
            let mut reader = Trickle { waited: false, chunk: Some(vec![1u8; 6]), then_end: true };
            let body = read_body(&mut reader, "x", 10, DEFAULT_READ_TIMEOUT).await.unwrap();
            assert_eq!(body, vec![1u8; 6]);
        });
    }

    /// A reader that is not ready at its first poll unless `waited`, then yields `chunk`
    /// once, then ends the stream (`then_end`) or stalls.
    struct Trickle {
        waited: bool,
        chunk: Option<Vec<u8>>,
        then_end: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            if !self.waited {
                self.waited = true;
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            match self.chunk.take() {
                Some(chunk) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    std::task::Poll::Ready(Ok(n))
                }
                None if self.then_end => std::task::Poll::Ready(Ok(0)),
                None => std::task::Poll::Pending,
            }
        }
    }

    /// A reader that never yields data.
    struct Stalled;

    impl AsyncRead for Stalled {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::task::Poll::Pending
        }
    }
}
