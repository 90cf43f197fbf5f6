//! Connection limits seen from outside, over real TCP on loopback: one host with many
//! identities cannot take the slots honest payers need.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId};
use paych_core::types::{Address, SignedVoucher};
use paych_node::daemon::{Daemon, DaemonOptions, RepoConfig};
use paych_node::host::HostConfig;
use paych_node::metrics::Metrics;
use paych_node::network::{NetworkClient, NetworkConfig};
use paych_protocol::ip_limits::{DEFAULT_MAX_INBOUND_PER_IP, MAX_PENDING_INBOUND_PER_IP};
use paych_protocol::{VoucherResponse, VoucherStatus};
use paych_testkit::amounts::atto;
use paych_testkit::deadline::DEADLINE;
use paych_testkit::devnet::{Net, Node};
use paych_testkit::keys::sign_as_stranger;
use paych_testkit::node::{
    assert_refusals, host, idle_connection_from, limits, metered_host, send_voucher,
};

/// Identities the attacking host makes: more than the node's connections in total.
const ATTACKERS: usize = 300;
/// Connections the attacker opens at once.
const ATTACK_CONCURRENCY: usize = 16;
/// TCP connections that never start their handshake: more than the node upgrades at once.
const STALLED: usize = 40;

/// A payer with a channel of 1000 to a payee whose node counts in metrics of its own.
struct Watched {
    /// What the payee's node counts.
    metrics: Arc<Metrics>,
    /// The devnet both run on.
    _net: Net,
    /// The payer, paying from a node of its own (see [`Watched::pay_10`]).
    payer: Node,
    /// The payee, whose node the test watches.
    payee: Node,
    /// The channel from the payer to the payee.
    channel: Address,
    /// The payee's network client, held: its loop stops once no client is left.
    _payee_net: NetworkClient,
    payee_peer: PeerId,
    payee_addrs: Vec<Multiaddr>,
}

/// See [`Watched`]; the payee's node runs with `config`.
async fn watched(config: HostConfig) -> Watched {
    let net = Net::new();
    let (payer, payee, channel) = net.channel(10, 0, atto(1000)).await;
    let (metrics, _payee_net, payee_peer, payee_addrs) = metered_host(payee.m(), config).await;
    Watched { metrics, _net: net, payer, payee, channel, _payee_net, payee_peer, payee_addrs }
}

impl Watched {
    /// The payer, from a node of its own on 127.0.0.1, sends a voucher of 10 to the payee:
    /// the payer's network client, the voucher and the payee's answer.
    async fn pay_10(&self) -> (NetworkClient, SignedVoucher, VoucherResponse) {
        let (payer_net, _, _) = host(self.payer.m(), HostConfig::default()).await;
        let voucher = self.payer.create_voucher(&self.channel, atto(10), 0).await;
        let response =
            send_voucher(&payer_net, self.payee_peer, &self.payee_addrs, voucher.clone()).await;
        (payer_net, voucher, response)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_identities_from_one_address_cannot_keep_an_honest_payer_out() {
    let payee = watched(HostConfig::default()).await;

    // The attacking host, 127.0.0.2: a fresh identity per connection, each connection held
    // open and never used.
    let attacker = IpAddr::from([127, 0, 0, 2]);
    let target = payee.payee_addrs[0].clone();
    let held: Vec<_> = tokio::time::timeout(
        DEADLINE,
        futures::stream::iter(0..ATTACKERS)
            .map(|_| idle_connection_from(attacker, &target))
            .buffer_unordered(ATTACK_CONCURRENCY)
            .filter_map(|connection| async move { connection.ok() })
            .collect(),
    )
    .await
    .expect("the attack timed out");
    // An honest payer on another address (127.0.0.1) connects and is paid for.
    let (_, _, response) = payee.pay_10().await;
    assert_eq!(response.status(), Some(VoucherStatus::Accepted), "{response:?}");
    // The attacking host got its cap of connections, no more; every other attempt was
    // refused and counted (the payee's loop handled those refusals before the payment).
    assert_eq!(held.len(), DEFAULT_MAX_INBOUND_PER_IP as usize);
    let refused = ATTACKERS - held.len();
    assert_refusals(&payee.metrics, "connections_per_ip", refused);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_vouchers_and_vouchers_over_the_in_flight_cap_are_counted_by_reason() {
    let closed = limits(NetworkConfig { max_inbound_per_peer: 0, ..NetworkConfig::default() });
    let closed = watched(closed).await;
    let (payer_net, voucher, response) = closed.pay_10().await;
    assert_eq!(response.status(), Some(VoucherStatus::RateLimited), "{response:?}");
    assert_refusals(&closed.metrics, "voucher_rate_limited", 1);

    // A payee that takes requests refuses a voucher signed by a stranger, and counts it.
    let (metrics, _open_net, open_peer, open_addrs) =
        metered_host(closed.payee.m(), HostConfig::default()).await;
    let forged = sign_as_stranger(voucher);
    let response = send_voucher(&payer_net, open_peer, &open_addrs, forged).await;
    assert_eq!(response.status(), Some(VoucherStatus::InvalidSignature), "{response:?}");
    assert_refusals(&metrics, "voucher_refused", 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_handshake_cannot_fill_the_pending_slots() {
    let payee = watched(HostConfig::default()).await;
    let port = payee.payee_addrs[0]
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();

    // 127.0.0.2 opens more TCP connections than the node upgrades at once (32), and never
    // starts the handshake on any of them.
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((IpAddr::from([127, 0, 0, 2]), 0).into()).unwrap();
        stalled.push(socket.connect(([127, 0, 0, 1], port).into()).await.unwrap());
    }

    let (_, _, response) = payee.pay_10().await;
    assert_eq!(response.status(), Some(VoucherStatus::Accepted), "{response:?}");
    // The address may hold only a few connections in their handshake; the rest are refused.
    let refused = STALLED - MAX_PENDING_INBOUND_PER_IP as usize;
    assert_refusals(&payee.metrics, "connections_per_ip", refused);
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_takes_its_per_ip_cap_from_config_toml_and_counts_hits_on_metrics() {
    let repo = tempfile::tempdir().unwrap();
    let config = RepoConfig {
        listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        api: "127.0.0.1:0".parse().unwrap(),
        max_inbound_connections_per_ip: 1,
        ..RepoConfig::default()
    };
    std::fs::write(repo.path().join("config.toml"), config.to_text()).unwrap();
    let daemon =
        Daemon::start(DaemonOptions { repo: repo.path().to_owned(), ..DaemonOptions::default() })
            .await
            .unwrap();
    let target = daemon.listen_addrs()[0].clone();
    let host = IpAddr::from([127, 0, 0, 2]);

    let first = idle_connection_from(host, &target).await;
    assert!(first.is_ok(), "{:?}", first.err());
    let second = idle_connection_from(host, &target).await;
    assert!(second.is_err(), "a second connection from the address got in");

    // The denial reaches /metrics once the daemon's network loop has counted it.
    let url = format!("http://{}/metrics", daemon.api_addr());
    let expected = "paych_refusals_total{reason=\"connections_per_ip\"} 1\n";
    let counted = tokio::time::timeout(DEADLINE, async {
        loop {
            let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
            if text.contains(expected) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "{expected:?} never appeared on /metrics");
    drop(first);
    daemon.shutdown().await.unwrap();
}
