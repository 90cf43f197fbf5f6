//! A peer that does not follow the wire format: it writes whatever bytes it is given on the
//! voucher protocol, and may stall before finishing a request, to show that the other side
//! refuses it and keeps answering.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use paych_protocol::VOUCHER_PROTOCOL;

/// The most bytes a raw peer reads of a response.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;
/// How long a raw peer waits for a response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a raw peer keeps a connection with nothing in flight.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A codec that writes whatever bytes it is given, outbound only; with `stall`, it never
/// finishes a request once its bytes are written.
#[derive(Clone, Default)]
pub struct RawCodec {
    /// Whether a request stalls after its bytes.
    pub stall: bool,
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> Answer<Vec<u8>> {
        outbound_only()
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> Answer<Vec<u8>> {
        let mut bytes = Vec::new();
        io.take(MAX_RESPONSE_BYTES).read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> Answer<()> {
        io.write_all(&bytes).await?;
        io.flush().await?;
        if self.stall {
            futures::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, _: Vec<u8>) -> Answer<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        outbound_only()
    }
}

/// What a codec method answers.
type Answer<T> = io::Result<T>;

/// What a raw peer answers when asked to serve: it only sends.
fn outbound_only<T>() -> Answer<T> {
    Err(io::Error::other("outbound only"))
}

/// A swarm speaking the voucher protocol through a [`RawCodec`].
pub type RawSwarm = Swarm<request_response::Behaviour<RawCodec>>;

/// A raw peer with a fresh identity (TCP, Noise, Yamux); see [`RawCodec`] for `stall`.
pub fn raw_swarm(stall: bool) -> RawSwarm {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec { stall },
                [(StreamProtocol::new(VOUCHER_PROTOCOL), ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build()
}

/// Sends raw `bytes` to `peer` at `addr` and drives the swarm until the request fails or is
/// answered.
pub async fn send_raw(swarm: &mut RawSwarm, peer: PeerId, addr: &Multiaddr, bytes: Vec<u8>) {
    let id = swarm.behaviour_mut().send_request_with_addresses(&peer, bytes, vec![addr.clone()]);
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                request_id, ..
            })
            | SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { request_id, .. },
                ..
            }) if request_id == id => return,
            _ => {}
        }
    }
}
