//! A node's networking for one payment-channel manager, built and started in one call
//! ([`Host::start`]): the transport ([`crate::network`]: the swarm, its limits, the event
//! loop) and the node's answers to what peers send ([`crate::inbound`]), wired together and
//! listening. The daemon, `paych bench` and the tests start a node's networking this way
//! only.
//!
//! It owns the two tasks and stops them ([`Host::shutdown`]); it never decides anything
//! about a request itself.

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use paych_core::manager::PaymentChannelManager;
use tokio::task::JoinHandle;

use crate::inbound::route::RouteHandlerSlot;
use crate::inbound::{self, InboundConfig};
use crate::metrics::Metrics;
use crate::network::{self, NetworkClient, NetworkConfig, NetworkError};
use crate::retrieval::provider::RetrievalProvider;

/// How a node's networking behaves: its transport and its answers.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// The swarm and its limits.
    pub network: NetworkConfig,
    /// How inbound requests are answered.
    pub inbound: InboundConfig,
}

impl HostConfig {
    /// The same configuration, counting everything in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.network.metrics = metrics.clone();
        self.inbound.metrics = metrics;
        self
    }
}

/// A node's running networking: the event loop and the inbound handling.
pub struct Host {
    client: NetworkClient,
    listen_addrs: Vec<Multiaddr>,
    retrieval: Arc<RetrievalProvider>,
    route: RouteHandlerSlot,
    network_task: JoinHandle<()>,
    inbound_task: JoinHandle<()>,
}

impl Host {
    /// Builds the swarm for `keypair`, starts its event loop and the answering of inbound
    /// requests through `manager`, and listens on `listen` (waiting, at most
    /// [`network::LISTEN_WAIT`], until the swarm reports where).
    pub async fn start(
        keypair: Keypair,
        config: HostConfig,
        manager: PaymentChannelManager,
        listen: Multiaddr,
    ) -> Result<Host, NetworkError> {
        let retrieval = config.inbound.retrieval.clone();
        let route = config.inbound.route.clone();
        let (client, inbound, network_task) = network::spawn(keypair, config.network)?;
        let inbound_task = inbound::spawn(manager, config.inbound, inbound);
        client.listen(listen).await?;
        let listen_addrs = network::wait_for_listen_addrs(&client).await?;
        Ok(Host { client, listen_addrs, retrieval, route, network_task, inbound_task })
    }

    /// The client of the event loop; cheap to clone.
    pub fn client(&self) -> &NetworkClient {
        &self.client
    }

    /// The local peer id.
    pub fn peer_id(&self) -> PeerId {
        self.client.local_peer_id()
    }

    /// The addresses the swarm listened on once started.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// The blobs this node serves over `/paych/retrieval/2.0.0`.
    pub fn retrieval(&self) -> &Arc<RetrievalProvider> {
        &self.retrieval
    }

    /// Where the handler of `/paych/route/1.0.0` is set (the one of the configuration this
    /// host started with): set it once the parts it needs exist, the client included.
    pub fn route_handler(&self) -> &RouteHandlerSlot {
        &self.route
    }

    /// Stops the event loop (closing the swarm's listeners and connections) and waits at
    /// most `wait` for it; the inbound handling stops once the loop has (it is aborted when
    /// the loop does not stop in time). Answers whether the loop stopped in time. Answers
    /// already being worked out on tasks of their own finish, and are dropped.
    pub async fn shutdown(self, wait: Duration) -> bool {
        self.client.shutdown().await;
        if tokio::time::timeout(wait, self.network_task).await.is_err() {
            self.inbound_task.abort();
            return false;
        }
        // The loop has dropped its end of the inbound requests: the handling ends at once.
        if tokio::time::timeout(wait, self.inbound_task).await.is_err() {
            tracing::debug!("the inbound handling did not stop in time");
        }
        true
    }
}
