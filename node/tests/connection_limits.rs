//! Connection limits seen from outside, over real TCP on loopback: one host with many
//! identities cannot take the slots honest payers need.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{atto, idle_connection_from, node, party, DEADLINE};

use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_node::network::NetworkConfig;
use paych_protocol::{VoucherRequest, VoucherStatus};

/// Identities the attacking host makes: more than the node's connections in total.
const ATTACKERS: usize = 300;
/// Connections the attacker opens at once.
const ATTACK_CONCURRENCY: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_identities_from_one_address_cannot_keep_an_honest_payer_out() {
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(Duration::from_millis(5)),
        ..DevnetConfig::default()
    })
    .unwrap();
    devnet.start_mining();
    let payer = party(&devnet, 10).await;
    let payee = party(&devnet, 0).await;
    let handle = payer.manager.create(payer.addr, payee.addr, atto(1000), atto(0)).await.unwrap();
    let channel = tokio::time::timeout(
        DEADLINE,
        payer.manager.get_wait_ready(&handle.wait_sentinel.unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let (_payee_net, payee_peer, payee_addrs) =
        node(&payee.manager, NetworkConfig::default()).await;

    // The attacking host, 127.0.0.2: a fresh identity per connection, each connection held
    // open and never used.
    let attacker = IpAddr::from([127, 0, 0, 2]);
    let target = payee_addrs[0].clone();
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
    let (payer_net, _, _) = node(&payer.manager, NetworkConfig::default()).await;
    let voucher = payer.manager.voucher_create(&channel, atto(10), 0).await.unwrap().voucher.unwrap();
    let response = tokio::time::timeout(
        DEADLINE,
        payer_net.send_voucher(payee_peer, payee_addrs.clone(), VoucherRequest::new(voucher)),
    )
    .await
    .expect("the voucher exchange timed out")
    .expect("the honest payer could not reach the payee");
    assert_eq!(response.status(), Some(VoucherStatus::Accepted), "{response:?}");
    drop(held);
}
