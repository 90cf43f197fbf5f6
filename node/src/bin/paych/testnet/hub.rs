//! `paych testnet --hub`: the phases that differ when every payment goes through one hub.
//!
//! C clients and P providers never open a channel to each other: each client opens one
//! channel to the hub, and the hub one to each provider (C + P channels instead of C × P).
//! The hub is a daemon like the others, with `[hub] enabled = 1` in its config; it is
//! started after the providers (whose addresses it knows, to forward to them) and before the
//! clients (who learn of it from the providers' invoices). Every chunk of a retrieval is
//! paid with the provider's invoice through the hub ([`super::rounds`]). After the rounds,
//! the hub redeems what its clients paid it and the providers what the hub paid them; the
//! clients settle their channels to the hub, the hub its channels to the providers, and the
//! settlers submit whatever is left — conditional vouchers with their secrets included.
//!
//! With `--crash hub` (or `--crash provider-N`) that daemon is killed with SIGKILL while
//! routes are in flight and restarted on its repo; the payments that failed are paid again
//! with fresh invoices, and the report's invariants say whether anybody lost money.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use paych_core::invoice::Hub;
use paych_core::manager::TopUpPolicy;
use paych_core::types::{Address, TokenAmount};
use paych_node::route::HubConfig;

use super::nodes::{Node, NodeRpc};
use super::{wait_for_pool, Testnet};

/// The hub's name among the nodes (`--crash hub`).
pub const HUB_NAME: &str = "hub";
/// How long every route may take to resolve after the rounds (its lock is some 300 epochs
/// away at most; the epochs mined while waiting pass it within about a minute).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(150);
/// How often the run looks whether the routes are resolved: the daemons' sweep interval
/// (the devnet preset's block time), after which their gauges are current.
const RESOLVE_POLL: Duration = Duration::from_secs(1);
/// Epochs mined beside the devnet's own while routes are open, per look: fewer than the
/// inclusion delay `S` of the daemons' route parameters, so that every sweep and every
/// watchtower pass still comes in time for the deadlines it keeps.
const RESOLVE_EPOCHS_PER_POLL: u64 = 5;

/// The hub of a `--hub` testnet and the channels through it.
pub struct HubSide {
    /// The hub's index among the nodes (after the providers and the clients).
    pub index: usize,
    /// The hub as the providers' invoices name it.
    pub entry: Hub,
    /// Each client's channel to the hub.
    pub inbound: BTreeMap<usize, String>,
    /// The hub's channel to each provider.
    pub outbound: BTreeMap<usize, String>,
}

/// The `[hub]` section of the hub's config: hub mode on, the defaults otherwise (a fee of
/// [`HubConfig::default`]'s parts per million).
pub fn hub_config() -> HubConfig {
    HubConfig { enabled: true, ..HubConfig::default() }
}

impl Testnet {
    /// Starts the hub, knowing the providers; returns it with its entry in invoices.
    pub(super) async fn start_hub(
        &self,
        providers: &[(Address, libp2p::Multiaddr)],
    ) -> anyhow::Result<(Node, Hub)> {
        self.progress.phase("starting the hub");
        let hub = self.launcher.start(HUB_NAME, providers, None, hub_config()).await?;
        let entry = Hub { address: hub.address, multiaddr: hub.peer.to_string() };
        Ok((hub, entry))
    }

    /// The hub side; an error outside `--hub`.
    pub(super) fn hub_side(&self) -> anyhow::Result<&HubSide> {
        self.hub.as_ref().context("not a --hub testnet")
    }

    /// The top-up of the clients' channels to the hub: one retrieval and its fees.
    pub(super) fn routed_top_up(&self) -> TopUpPolicy {
        let low = self.blob_price() + self.fees_of(self.args.chunks);
        TopUpPolicy { low_water: low.clone(), high_water: low * 2u64 }
    }

    /// The hub's fees on `payments` chunk payments, by its config.
    pub(super) fn fees_of(&self, payments: u64) -> TokenAmount {
        let config = hub_config();
        let fee = paych_core::route::FeePolicy { base: config.fee_base, ppm: config.fee_ppm };
        fee.fee(&self.price) * payments
    }

    /// Phase 3 with `--hub`: each client opens a channel to the hub with funds for its
    /// payments and their fees; the hub opens one to each provider with funds for the
    /// payments it forwards there (twice that, as payments the hub forwarded but that are
    /// not yet resolved hold funds until they are).
    pub(super) async fn open_hub_channels(&mut self) -> anyhow::Result<()> {
        let (clients, providers) = (self.args.clients, self.args.providers);
        self.progress.phase(&format!(
            "opening {} channels through the hub ({} without it)",
            clients + providers,
            self.pairs()
        ));
        let per_pair = self.retrievals().div_ceil(self.pairs()).max(1) as u64;
        let payments_per_pair = per_pair * self.args.chunks;
        let hub = self.node(self.hub_side()?.index).read().await;
        let (hub_rpc, hub_from) = (hub.rpc.clone(), self.address_text(&hub.address));
        let hub_text = self.address_text(&hub.address);
        drop(hub);
        let client_reserve =
            (&self.price * payments_per_pair + self.fees_of(payments_per_pair)) * providers as u64;
        let mut inbound = Vec::new();
        for c in 0..clients {
            let client = self.client(c).read().await;
            let (rpc, from) = (client.rpc.clone(), self.address_text(&client.address));
            drop(client);
            let (to, reserve) = (hub_text.clone(), client_reserve.clone());
            inbound
                .push(async move { anyhow::Ok((c, rpc.paych_get(&from, &to, &reserve).await?)) });
        }
        let hub_reserve = &self.price * payments_per_pair * (2 * clients) as u64;
        let mut outbound = Vec::new();
        for p in 0..providers {
            let to = self.address_text(&self.node(p).read().await.address);
            let (rpc, from, reserve) = (hub_rpc.clone(), hub_from.clone(), hub_reserve.clone());
            outbound
                .push(async move { anyhow::Ok((p, rpc.paych_get(&from, &to, &reserve).await?)) });
        }
        let (inbound, outbound) = futures::future::try_join(
            futures::future::try_join_all(inbound),
            futures::future::try_join_all(outbound),
        )
        .await?;
        let side = self.hub.as_mut().context("not a --hub testnet")?;
        side.inbound = inbound.into_iter().collect();
        side.outbound = outbound.into_iter().collect();
        Ok(())
    }

    /// Phase 5 with `--hub`: the hub redeems the unconditional vouchers its clients paid it,
    /// the providers those the hub paid them (conditional ones still pending are left to
    /// their holders' settlers).
    pub(super) async fn redeem_routed(&mut self) -> anyhow::Result<()> {
        self.progress.phase("the hub and the providers redeem their best vouchers");
        for (rpc, ch) in self.routed_holders().await? {
            submit_unconditional(&rpc, &ch).await?;
        }
        wait_for_pool(&self.devnet).await
    }

    /// Each channel through the hub with the node that holds its vouchers — the hub for the
    /// clients' channels, each provider for the hub's — once the holder knows of it (a payee
    /// learns of a channel with its first voucher).
    async fn routed_holders(&self) -> anyhow::Result<Vec<(Arc<NodeRpc>, String)>> {
        let side = self.hub_side()?;
        let mut holders = Vec::new();
        for ch in side.inbound.values() {
            holders.push((self.rpc(side.index).await, ch.clone()));
        }
        for (p, ch) in &side.outbound {
            holders.push((self.rpc(*p).await, ch.clone()));
        }
        let mut known = Vec::new();
        for (rpc, ch) in holders {
            if rpc.paych_list().await?.contains(&ch) {
                known.push((rpc, ch));
            }
        }
        Ok(known)
    }

    /// After the rounds with `--hub`: waits until no daemon has a route open — a payment
    /// that failed under a crash resolves by its secret (replaced, or redeemed on chain and
    /// found by the watchtowers) or by its lock passing — mining a few epochs beside the
    /// devnet's own while any is open, so that locks pass sooner; at most
    /// [`RESOLVE_TIMEOUT`]. Its time, and the routes still open then (by node), go in the
    /// ledger for the report's invariants; the run goes on.
    pub(super) async fn resolve_routes(&mut self) -> anyhow::Result<()> {
        self.progress.phase("waiting for every route to resolve");
        let started = Instant::now();
        let mut quiet_looks = 0;
        loop {
            let mut open = 0;
            let mut by_node = Vec::new();
            for node in &self.nodes {
                let (rpc, name) = {
                    let node = node.read().await;
                    (node.rpc.clone(), node.name.clone())
                };
                let count = rpc.routes_in_flight().await?;
                if count > 0 {
                    by_node.push(format!("{name} {count}"));
                }
                open += count;
            }
            // Two looks in a row with none open: a sweep ran between them.
            quiet_looks = if open == 0 { quiet_looks + 1 } else { 0 };
            if quiet_looks >= 2 {
                break;
            }
            if started.elapsed() > RESOLVE_TIMEOUT {
                self.ledger.open_routes = by_node;
                break;
            }
            if open > 0 {
                let chain = self.devnet.clone();
                tokio::task::spawn_blocking(move || chain.mine(RESOLVE_EPOCHS_PER_POLL))
                    .await
                    .context("mining while routes resolve failed")?;
            }
            tokio::time::sleep(RESOLVE_POLL).await;
        }
        self.ledger.resolve_secs = started.elapsed().as_secs_f64();
        Ok(())
    }

    /// Phase 8 with `--hub`: the clients settle their channels to the hub and the hub its
    /// channels to the providers; the settlers of the hub and the providers submit what was
    /// left.
    pub(super) async fn settle_routed(&mut self) -> anyhow::Result<()> {
        self.progress.phase("clients and the hub settle; the settlers submit");
        let side = self.hub_side()?;
        let hub = self.rpc(side.index).await;
        let mut settlers = Vec::new();
        for (c, ch) in &side.inbound {
            settlers.push((self.client(*c).read().await.rpc.clone(), ch));
        }
        settlers.extend(side.outbound.values().map(|ch| (hub.clone(), ch)));
        let settling = settlers.iter().map(|(rpc, ch)| rpc.paych_settle(ch));
        futures::future::try_join_all(settling).await?;
        self.wait_settling().await?;
        self.await_routed_settlers().await
    }

    /// Waits until the hub's and the providers' settlers have nothing left to submit.
    async fn await_routed_settlers(&self) -> anyhow::Result<()> {
        self.await_holders(&self.routed_holders().await?).await
    }
}

/// Submits the best spendable voucher of each lane of `ch` that needs no secret.
async fn submit_unconditional(rpc: &NodeRpc, ch: &str) -> anyhow::Result<usize> {
    let vouchers = rpc.paych_voucher_best_spendable(ch).await?;
    let mut submitted = 0;
    for v in vouchers.iter().filter(|v| v.secret_hash.is_empty()) {
        rpc.paych_voucher_submit(ch, v).await?;
        submitted += 1;
    }
    Ok(submitted)
}
