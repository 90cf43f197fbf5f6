//! A request-response behaviour that reports every inbound failure, including requests
//! that could not be read.
//!
//! `libp2p::request_response::Behaviour` reports an inbound failure only for a request it
//! has already handed to the application: when the codec refuses a request (malformed,
//! oversized, too slow) the failure is merely logged, and the application never learns
//! that a peer misbehaved. [`Exchange`] wraps the behaviour, delegates everything to it,
//! and turns those otherwise silent failures into ordinary
//! [`request_response::Event::InboundFailure`] events, carrying the peer, the connection
//! and the codec's error. It dereferences to the wrapped behaviour, so requests and
//! responses are sent exactly as with `request_response::Behaviour`.
//!
//! This module never interprets messages.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::request_response::{self, InboundFailure, InboundRequestId};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// The most failure reports held until the swarm collects them; beyond it, reports are
/// dropped (the swarm collects one per poll, so this only fills if it stops polling).
pub const MAX_QUEUED_FAILURES: usize = 256;

/// A request-response protocol with codec `C` that reports requests it could not read.
pub struct Exchange<C>
where
    C: request_response::Codec + Clone + Send + 'static,
{
    inner: request_response::Behaviour<C>,
    failures: VecDeque<request_response::Event<C::Request, C::Response>>,
}

impl<C> Exchange<C>
where
    C: request_response::Codec + Clone + Send + 'static,
{
    /// Wraps `inner`.
    pub fn new(inner: request_response::Behaviour<C>) -> Self {
        Exchange { inner, failures: VecDeque::new() }
    }

    /// Reports a failure of an inbound request the wrapped behaviour does not know of
    /// (because it was never read), if there is room.
    fn report(
        &mut self,
        peer: PeerId,
        connection_id: ConnectionId,
        request_id: InboundRequestId,
        error: InboundFailure,
    ) {
        if self.failures.len() < MAX_QUEUED_FAILURES {
            self.failures.push_back(request_response::Event::InboundFailure {
                peer,
                connection_id,
                request_id,
                error,
            });
        }
    }
}

impl<C> Deref for Exchange<C>
where
    C: request_response::Codec + Clone + Send + 'static,
{
    type Target = request_response::Behaviour<C>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<C> DerefMut for Exchange<C>
where
    C: request_response::Codec + Clone + Send + 'static,
{
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

/// The events the wrapped behaviour's connection handlers send it.
type HandlerEvent<C> = THandlerOutEvent<request_response::Behaviour<C>>;

impl<C> NetworkBehaviour for Exchange<C>
where
    C: request_response::Codec + Clone + Send + 'static,
{
    type ConnectionHandler = THandler<request_response::Behaviour<C>>;
    type ToSwarm = request_response::Event<C::Request, C::Response>;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner.handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        // A failure of a request the application never received is only logged by the
        // wrapped behaviour: report it here instead.
        match event {
            HandlerEvent::<C>::InboundStreamFailed { request_id, error }
                if !self.inner.is_pending_inbound(&peer, &request_id) =>
            {
                self.report(peer, connection_id, request_id, InboundFailure::Io(error))
            }
            HandlerEvent::<C>::InboundTimeout(request_id)
                if !self.inner.is_pending_inbound(&peer, &request_id) =>
            {
                self.report(peer, connection_id, request_id, InboundFailure::Timeout)
            }
            other => self.inner.on_connection_handler_event(peer, connection_id, other),
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(event) = self.failures.pop_front() {
            return Poll::Ready(ToSwarm::GenerateEvent(event));
        }
        self.inner.poll(cx)
    }
}
