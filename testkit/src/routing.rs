//! Routed payments in process: a payer, a hub and a payee on the devnet, each with its
//! manager, its networking over real libp2p on loopback and its [`Routes`] answering
//! `/paych/route/1.0.0`; channels payer → hub and hub → payee; invoices the payee issues
//! naming the hub.

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use paych_core::invoice::{issue, unix_now, Hub, Invoice, InvoiceTerms};
use paych_core::route::RouteParams;
use paych_core::store::RouteRecord;
use paych_core::types::{Address, ChainEpoch, TokenAmount};
use paych_node::host::HostConfig;
use paych_node::inbound::route::{RouteHandler, RouteHandlerSlot};
use paych_node::metrics::Metrics;
use paych_node::network::NetworkClient;
use paych_node::pay::Payer;
use paych_node::route::{HubConfig, RouteSettings, Routes};

use crate::devnet::{Net, Node};
use crate::node::{host, target};

/// One party of a route: its node, networking, routes and metrics.
pub struct RouteParty {
    /// The node (manager, wallet, key).
    pub node: Node,
    /// Its routed payments, answering route requests.
    pub routes: Routes,
    /// Its network client (hold it: the loop stops once no client is left).
    pub client: NetworkClient,
    /// Its peer id.
    pub peer: PeerId,
    /// Where it listens.
    pub addrs: Vec<Multiaddr>,
    /// Where its route handler is set (a test may set a hostile one).
    pub slot: RouteHandlerSlot,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
}

impl RouteParty {
    /// Where it listens, ending in `/p2p/<peer id>`.
    pub fn target(&self) -> Multiaddr {
        target(self.peer, &self.addrs)
    }

    /// Its stored route of `invoice`.
    pub fn route(&self, invoice: &Invoice) -> Option<RouteRecord> {
        self.node.m().store().route(&invoice.payment_hash).unwrap()
    }
}

/// A payer, a hub and a payee with channels payer → hub and hub → payee.
pub struct Triangle {
    /// The payer.
    pub payer: RouteParty,
    /// The hub.
    pub hub: RouteParty,
    /// The payee.
    pub payee: RouteParty,
    /// The payer's channel to the hub.
    pub payer_channel: Address,
    /// The hub's channel to the payee.
    pub hub_channel: Address,
}

/// The payee margin `D_R` of the tests' invoices. The payee's lock `T2` then lies `D_R + S +
/// conf` beyond the head, past twice the payee's landing margin (20 epochs by default), so
/// that the payee's settler does not land its conditional voucher at once, as it does one
/// whose lock comes within that.
pub const TEST_PAYEE_MARGIN: ChainEpoch = 50;

/// The timing parameters of the tests: the devnet's.
pub fn test_params() -> RouteParams {
    RouteParams::default()
}

/// A party on `net` whose key holds `fil` FIL, reaching `peers` (payee address → where it
/// listens), routing as a hub when `hub.enabled`.
pub async fn route_party(
    net: &Net,
    fil: u64,
    hub: HubConfig,
    peers: Vec<(Address, Multiaddr)>,
) -> RouteParty {
    let node = net.node(fil).await;
    let slot = RouteHandlerSlot::new();
    let metrics = Arc::new(Metrics::new());
    let mut config = HostConfig::default().with_metrics(metrics.clone());
    config.inbound.route = slot.clone();
    let (client, peer, addrs) = host(node.m(), config).await;
    let payer = Arc::new(Payer::new(node.m().clone(), client.clone(), peers.into_iter().collect()));
    let settings =
        RouteSettings { hub_address: hub.enabled.then_some(node.addr), hub, params: test_params() };
    let routes =
        Routes::new(node.m().clone(), node.wallet.clone(), payer, settings, metrics.clone())
            .await
            .unwrap();
    slot.set(Arc::new(routes.clone()) as Arc<dyn RouteHandler>);
    RouteParty { node, routes, client, peer, addrs, slot, metrics }
}

impl Net {
    /// A payer, a hub (run with `hub`, enabled) and a payee, started payee first; channels
    /// payer → hub and hub → payee of `balance` each.
    pub async fn triangle(&self, hub: HubConfig, balance: TokenAmount) -> Triangle {
        self.triangle_funded(hub, balance.clone(), balance).await
    }

    /// [`Net::triangle`] with the payer's channel to the hub holding `payer_balance` and
    /// the hub's channel to the payee `hub_balance`.
    pub async fn triangle_funded(
        &self,
        hub: HubConfig,
        payer_balance: TokenAmount,
        hub_balance: TokenAmount,
    ) -> Triangle {
        let payee = route_party(self, 10, HubConfig::default(), Vec::new()).await;
        let hub_config = HubConfig { enabled: true, ..hub };
        let hub = route_party(self, 100, hub_config, vec![(payee.node.addr, payee.target())]).await;
        let payer = route_party(self, 100, HubConfig::default(), Vec::new()).await;
        let payer_channel = payer.node.open_channel(hub.node.addr, payer_balance).await;
        let hub_channel = hub.node.open_channel(payee.node.addr, hub_balance).await;
        Triangle { payer, hub, payee, payer_channel, hub_channel }
    }
}

impl Triangle {
    /// The hub as invoices name it.
    pub fn hub_entry(&self) -> Hub {
        Hub { address: self.hub.node.addr, multiaddr: self.hub.target().to_string() }
    }

    /// An invoice of `amount` the payee issues, naming the hub, payable for an hour, with
    /// the devnet's payee margin.
    pub async fn invoice(&self, amount: TokenAmount) -> Invoice {
        self.invoice_with(amount, unix_now() + 3600).await
    }

    /// An invoice of `amount` expiring at `expiry` (unix seconds).
    pub async fn invoice_with(&self, amount: TokenAmount, expiry: u64) -> Invoice {
        let terms = InvoiceTerms {
            payee: self.payee.node.addr,
            amount,
            expiry,
            payee_margin: TEST_PAYEE_MARGIN,
            hubs: vec![self.hub_entry()],
        };
        issue(self.payee.node.m().store().as_ref(), self.payee.node.wallet.as_ref(), terms)
            .await
            .unwrap()
    }
}

/// The routes of a hub `node` restarted on its store (its manager started again), run with
/// `hub` (enabled): what a hub back from a crash resumes with, networking aside.
pub async fn restarted_routes(node: &Node, hub: HubConfig) -> Routes {
    restarted_routes_reaching(node, hub, Vec::new()).await
}

/// [`restarted_routes`] with the hub's peer book (payee address → where it listens): a hub
/// back from a crash that reaches its payees again, as its configuration makes it.
pub async fn restarted_routes_reaching(
    node: &Node,
    hub: HubConfig,
    peers: Vec<(Address, Multiaddr)>,
) -> Routes {
    let (client, _, _) = host(node.m(), HostConfig::default()).await;
    let payer = Arc::new(Payer::new(node.m().clone(), client, peers.into_iter().collect()));
    let settings = RouteSettings {
        hub: HubConfig { enabled: true, ..hub },
        hub_address: Some(node.addr),
        params: test_params(),
    };
    Routes::new(node.m().clone(), node.wallet.clone(), payer, settings, Arc::new(Metrics::new()))
        .await
        .unwrap()
}

/// The routes of a payer `node` as a node started on its store makes them (no hub):
/// what a payer back from a crash resumes with, networking aside.
pub async fn restarted_payer_routes(node: &Node) -> Routes {
    let (client, _, _) = host(node.m(), HostConfig::default()).await;
    let payer = Arc::new(Payer::new(node.m().clone(), client, Default::default()));
    let settings =
        RouteSettings { hub: HubConfig::default(), hub_address: None, params: test_params() };
    Routes::new(node.m().clone(), node.wallet.clone(), payer, settings, Arc::new(Metrics::new()))
        .await
        .unwrap()
}
