//! The in-process devnet: what the conformance suite does not already show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use paych_core::chain::devnet::state::{code_cid, gas};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::{ActorKind, Chain};
use paych_core::crypto::{self, SecretKey};
use paych_core::types::{
    decode, Address, ConstructorParams, ExecParams, ExecReturn, Message, PaychState, SignedMessage,
    TokenAmount, INIT_ACTOR_ID, INIT_EXEC_METHOD, METHOD_SEND,
};
use paych_testkit::keys::{address, key};

struct Account {
    key: SecretKey,
    addr: Address,
}

fn account(seed: u8) -> Account {
    let key = key(seed);
    Account { addr: address(&key), key }
}

fn funded(devnet: &Devnet, who: &Account) {
    devnet.faucet(&who.addr, TokenAmount::from_whole(100)).unwrap();
    devnet.mine(1);
}

async fn send(
    devnet: &Devnet,
    from: &Account,
    to: Address,
    value: TokenAmount,
    method: u64,
    params: Vec<u8>,
) -> (SignedMessage, paych_core::chain::MessageLookup) {
    let nonce = devnet.next_nonce(&from.addr).await.unwrap();
    let message = Message::new(from.addr, to, nonce, value, method, params);
    let message = devnet.estimate_gas(message).await.unwrap();
    let signed = crypto::sign_message(&from.key, message).unwrap();
    let cid = devnet.push(&signed).await.unwrap();
    devnet.mine(1);
    let lookup = devnet.wait(&cid, 0, Duration::from_secs(5)).await.unwrap();
    (signed, lookup)
}

/// `from` asks the Init actor (with 5 FIL) to construct an actor of `code` for a channel
/// from `from` to `to`.
async fn exec(
    devnet: &Devnet,
    from: &Account,
    code: cid::Cid,
    to: &Account,
) -> (SignedMessage, paych_core::chain::MessageLookup) {
    let ctor = fvm_ipld_encoding::to_vec(&ConstructorParams { from: from.addr, to: to.addr });
    let params = ExecParams { code_cid: code, constructor_params: ctor.unwrap() };
    let params = fvm_ipld_encoding::to_vec(&params).unwrap();
    let init = Address::new_id(INIT_ACTOR_ID);
    send(devnet, from, init, TokenAmount::from_whole(5), INIT_EXEC_METHOD, params).await
}

#[tokio::test]
async fn gas_used_follows_the_published_table() {
    let devnet = Devnet::new(DevnetConfig::default()).unwrap();
    let (alice, bob) = (account(1), account(2));
    funded(&devnet, &alice);
    let (signed, lookup) =
        send(&devnet, &alice, bob.addr, TokenAmount::from_whole(1), METHOD_SEND, Vec::new()).await;
    let len = signed.to_cbor().unwrap().len() as u64;
    let expected = gas::MESSAGE_COMPUTE_BASE
        + gas::STORAGE_PER_BYTE * (gas::MESSAGE_STORAGE_BASE_BYTES + len)
        + gas::SEND;
    assert_eq!(lookup.receipt.gas_used, expected);
    assert!(signed.message.gas_limit >= expected, "the estimate covers the gas used");
}

#[tokio::test]
async fn exec_of_another_actor_code_is_forbidden_and_changes_nothing() {
    let devnet = Devnet::new(DevnetConfig::default()).unwrap();
    let (alice, bob) = (account(1), account(2));
    funded(&devnet, &alice);
    let before = devnet.actor(&alice.addr).await.unwrap().unwrap().balance;
    let (signed, lookup) = exec(&devnet, &alice, code_cid("account"), &bob).await;
    assert_eq!(lookup.receipt.exit_code.value(), 18);
    let gas = TokenAmount::from_atto(200) * lookup.receipt.gas_used;
    assert_eq!(signed.message.gas_premium, TokenAmount::from_atto(100));
    assert_eq!(
        devnet.actor(&alice.addr).await.unwrap().unwrap().balance,
        before - gas,
        "only gas was spent"
    );
}

#[tokio::test]
async fn a_channel_state_is_served_as_real_blocks_with_an_amt_of_lanes() {
    let devnet = Devnet::new(DevnetConfig::default()).unwrap();
    let (alice, bob) = (account(1), account(2));
    funded(&devnet, &alice);
    let code = devnet.actor_code(ActorKind::PaymentChannel).await.unwrap();
    let (_, lookup) = exec(&devnet, &alice, code, &bob).await;
    let ret: ExecReturn = decode::decode(&lookup.receipt.return_data).unwrap();

    let state = devnet.actor_state(&ret.robust_address).unwrap();
    assert_eq!(state.info.kind, ActorKind::PaymentChannel);
    let block = devnet.read_obj(&state.head).unwrap();
    let paych: PaychState = decode::decode(&block).unwrap();
    assert_eq!(Some(&paych), state.paych.as_ref());
    assert_eq!(paych.to, devnet.lookup_id(&bob.addr).await.unwrap().unwrap());
    // The lane-state root is an empty AMT of bit width 3: [bit_width, height, count, node].
    let root = devnet.read_obj(&paych.lane_states).unwrap();
    assert_eq!(root[..4], [0x84, 0x03, 0x00, 0x00]);
}

#[tokio::test]
async fn tipsets_chain_to_their_parents_and_their_blocks_are_readable() {
    let devnet = Devnet::new(DevnetConfig::default()).unwrap();
    let genesis = devnet.head_tipset();
    assert_eq!((genesis.height, genesis.parent), (0, None));
    devnet.mine(3);
    let head = devnet.head_tipset();
    assert_eq!(head.height, 3);
    assert_eq!(head.parent, devnet.tipset(2).map(|t| t.block));
    assert!(devnet.read_obj(&head.block).is_some());
    assert!(devnet.tipset(4).is_none());
}

#[tokio::test]
async fn a_devnet_with_a_block_time_mines_by_itself() {
    let config =
        DevnetConfig { block_time: Some(Duration::from_millis(20)), ..DevnetConfig::default() };
    let devnet = Devnet::new(config).unwrap();
    devnet.start_mining();
    let alice = account(1);
    let cid = devnet.faucet(&alice.addr, TokenAmount::from_whole(1)).unwrap();
    // No mine() call: the timer includes the message.
    let lookup = devnet.wait(&cid, 1, Duration::from_secs(30)).await.unwrap();
    assert!(lookup.receipt.is_ok());
    assert!(devnet.head().await.unwrap() > lookup.epoch);
}

#[tokio::test]
async fn genesis_accounts_and_the_faucet_hold_their_balances() {
    let alice = account(1);
    let config = DevnetConfig {
        genesis: vec![(alice.addr, TokenAmount::from_whole(42))],
        ..DevnetConfig::default()
    };
    let devnet = Devnet::new(config).unwrap();
    assert_eq!(
        devnet.actor(&alice.addr).await.unwrap().unwrap().balance,
        TokenAmount::from_whole(42)
    );
    let faucet = devnet.actor(&devnet.faucet_address()).await.unwrap().unwrap();
    assert_eq!(faucet.kind, ActorKind::Account);
    assert_eq!(devnet.total_balance(), TokenAmount::from_whole(1_000_000_042));
    assert!(devnet.burnt().is_zero());
}

/// The devnet keeps each tipset's messages for `MESSAGE_HISTORY` epochs, also across a
/// restart; an older epoch answers a clear "pruned" (its tipset stays, its messages are gone
/// from the block store), and an epoch above the head is not found.
#[tokio::test]
async fn a_tipsets_messages_are_kept_for_the_history_then_pruned() {
    use paych_core::chain::devnet::MESSAGE_HISTORY;
    use paych_core::chain::ChainError;

    let repo = tempfile::tempdir().unwrap();
    let config = DevnetConfig { repo: Some(repo.path().join("devnet")), ..DevnetConfig::default() };
    let devnet = Devnet::new(config.clone()).unwrap();
    let (payer, payee) = (account(1), account(2));
    funded(&devnet, &payer);
    let (signed, lookup) =
        send(&devnet, &payer, payee.addr, TokenAmount::from_atto(7), METHOD_SEND, Vec::new()).await;
    let included = devnet.tipset_messages(lookup.epoch).await.unwrap();
    assert_eq!(included.len(), 1);
    assert_eq!((included[0].cid, &included[0].message), (lookup.message, &signed.message));
    assert_eq!(devnet.read_obj(&lookup.message).unwrap(), signed.to_cbor().unwrap());
    let head = devnet.head().await.unwrap();
    let above = devnet.tipset_messages(head + 1).await.unwrap_err();
    assert!(matches!(&above, ChainError::NotFound(m) if m.contains("above the head")), "{above}");
    drop(devnet);

    // After a restart, until the epoch leaves the history.
    let devnet = Devnet::new(config).unwrap();
    assert_eq!(devnet.tipset_messages(lookup.epoch).await.unwrap(), included);
    let history = i64::try_from(MESSAGE_HISTORY).unwrap();
    devnet.mine(u64::try_from(lookup.epoch + history - 1 - head).unwrap());
    assert_eq!(devnet.tipset_messages(lookup.epoch).await.unwrap(), included, "the oldest kept");
    devnet.mine(1);
    let pruned = devnet.tipset_messages(lookup.epoch).await.unwrap_err();
    assert!(matches!(&pruned, ChainError::NotFound(m) if m.contains("pruned")), "{pruned}");
    assert_eq!(devnet.read_obj(&lookup.message), None, "gone from the block store");
    assert!(devnet.tipset(lookup.epoch).is_some(), "the tipset stays");
    assert!(devnet.search(&lookup.message).await.unwrap().is_some(), "and the receipt");
}
