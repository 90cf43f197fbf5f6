//! Auto-collateral on the in-process devnet: a hub's channel to a payee is topped up in one
//! add-funds message when its available funds fall below the completed flow of the last
//! window, and left alone otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use paych_core::chain::Chain;
use paych_core::types::TokenAmount;
use paych_node::metrics::Metrics;
use paych_node::route::{CollateralPolicy, CollateralTask, FlowLedger};
use paych_testkit::devnet::Net;

fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

#[tokio::test]
async fn a_hub_tops_up_a_payees_channel_short_of_the_recent_completed_flow_in_one_message() {
    let net = Net::manual();
    let [hub, payee] = net.nodes::<2>(10).await;
    let channel = hub.open_channel(payee.addr, atto(1000)).await;
    let ledger = Arc::new(FlowLedger::default());
    let task = CollateralTask {
        manager: hub.m().clone(),
        ledger: ledger.clone(),
        policy: CollateralPolicy { window: 10, min_top_up: atto(1), max_top_up: atto(5000) },
        metrics: Arc::new(Metrics::new()),
        interval: Duration::from_secs(3600),
    };
    // No flow yet: nothing to do.
    assert!(task.pass().await.is_empty());
    let head = net.devnet.head().await.unwrap();
    ledger.completed(channel, head, atto(800));
    // 1000 available covers the 800 of the last window.
    assert!(task.pass().await.is_empty());
    ledger.completed(channel, head, atto(700));
    // 1500 completed in the window, 1000 available: topped up to two windows' worth.
    assert_eq!(task.pass().await, vec![(channel, atto(2000))]);
    // The message is in flight: no second one.
    assert!(task.pass().await.is_empty());
    let funds = hub.m().available_funds(&channel).await.unwrap();
    assert_eq!(funds.pending, atto(2000));
    let cid = funds.pending_wait_sentinel.unwrap();
    net.mine_until_landed(hub.m(), &cid).await;
    let funds = hub.m().available_funds(&channel).await.unwrap();
    assert_eq!(funds.confirmed, atto(3000));
    assert!(task.pass().await.is_empty());
}
