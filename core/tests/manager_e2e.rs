//! A payer and a payee on a devnet, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use paych_core::chain::Chain;
use paych_core::manager::AddOutcome;
use paych_core::store::{Lifecycle, MessagePurpose};
use paych_core::types::TokenAmount;
use paych_core::types::SETTLE_DELAY;
use paych_testkit::amounts::atto;
use paych_testkit::devnet::{test_config, Net};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_settler_redeems_before_settlement_and_collect_returns_the_rest() {
    let net = Net::new();
    let payer = net.node_with(10, test_config()).await;
    // The payee's settler only redeems; the payer's collects.
    let payee_config =
        paych_core::manager::ManagerConfig { collect_inbound: false, ..test_config() };
    let payee = net.node_with(10, payee_config).await;

    let handle = payer.m().create(payer.addr, payee.addr, atto(7000), atto(0)).await.unwrap();
    let ch = payer.m().get_wait_ready(&handle.wait_sentinel.unwrap()).await.unwrap();

    // 3 lanes × 2 vouchers, each accepted with minDelta 1000.
    let mut paid = atto(0);
    for _ in 0..3 {
        let lane = payer.m().allocate_lane(&ch).await.unwrap();
        for step in 1..=2u64 {
            let amount = atto(1000 * step);
            let v = payer.create_voucher(&ch, amount, lane).await;
            let outcome = payee.m().voucher_add(&ch, &v, atto(1000)).await.unwrap();
            assert_eq!(outcome, AddOutcome::Accepted { delta: atto(1000) });
        }
        paid += atto(2000);
    }
    assert_eq!(paid, atto(6000));

    // The payer settles; the payee's settler submits its best vouchers before settling_at.
    let settle = payer.m().settle(&ch).await.unwrap();
    payer.m().wait_message(&settle).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = net.devnet.channel(&ch).await.unwrap();
        if state.state.to_send == atto(6000) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "settler did not submit: {state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // After settling_at the payer's settler collects: the payee gets exactly 6000, the
    // payer the unspent 1000 less the gas of its collect message.
    let payer_before = payer.balance().await;
    let payee_before = payee.balance().await;
    net.devnet.mine(SETTLE_DELAY as u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while net.devnet.actor(&ch).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "nobody collected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let collect = payer
        .m()
        .store()
        .messages()
        .unwrap()
        .into_iter()
        .find(|m| matches!(m.purpose, MessagePurpose::Collect { .. }))
        .expect("the payer's settler sent a collect");
    let landed = net.devnet.search(&collect.cid).await.unwrap().unwrap();
    assert!(landed.receipt.is_ok());
    let fee = TokenAmount::from_atto(200) * landed.receipt.gas_used;
    assert_eq!(payee.balance().await - payee_before, atto(6000));
    assert_eq!(payer.balance().await - payer_before, atto(1000) - fee);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while payer.m().status(&ch).await.unwrap().lifecycle != Lifecycle::Collected {
        assert!(tokio::time::Instant::now() < deadline, "payer never recorded the collect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_that_learned_a_channel_by_its_id_address_takes_vouchers_on_its_robust_address() {
    let net = Net::new();
    let (payer, payee, robust) = net.channel(10, 10, atto(1000)).await;
    let id = net.devnet.lookup_id(&robust).await.unwrap().unwrap();

    // The payee first hears of the channel by its ID address, then by its robust one.
    let first = payer.create_voucher(&robust, atto(10), 0).await;
    let added = payee.m().voucher_add(&id, &first, atto(0)).await.unwrap();
    assert!(matches!(added, AddOutcome::Accepted { delta } if delta == atto(10)));
    let second = payer.create_voucher(&robust, atto(25), 0).await;
    let added = payee.m().voucher_add(&robust, &second, atto(0)).await.unwrap();
    assert!(matches!(added, AddOutcome::Accepted { ref delta } if *delta == atto(15)), "{added:?}");

    // One channel, known by both addresses.
    assert_eq!(payee.m().list().unwrap().len(), 1);
    for addr in [id, robust] {
        assert_eq!(payee.m().voucher_list(&addr).unwrap().len(), 2);
    }
}
