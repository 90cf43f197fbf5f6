//! One chain conformance suite, run three times: on the in-process `Devnet`; on
//! `LotusChain` talking JSON-RPC to the same devnet served by `paych devnet`'s server on
//! loopback; and on `LotusChain` over TLS (a test CA trusted through its CA file) to that
//! server answering only a Lotus gateway's methods (`paych devnet --gateway`), so that the
//! client finds actor kinds without `StateActorCodeCIDs`.
//!
//! Each step checks that the sum of all balances (the burnt-funds actor included, so burnt
//! gas counts) is unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::{prepare_message, ActorKind, Chain, ChainError, MessageLookup};
use paych_core::types::{
    decode, paych_method, Address, ConstructorParams, ExecParams, ExecReturn, Merge, Message,
    Network, SignedMessage, SignedVoucher, TokenAmount, UpdateChannelStateParams, INIT_ACTOR_ID,
    INIT_EXEC_METHOD, METHOD_SEND, SETTLE_DELAY,
};
use paych_core::wallet::{KeyStore, Wallet};
use paych_testkit::amounts::fil;

const WAIT: Duration = Duration::from_secs(10);

/// What a test message says: who sends what to whom (the nonce and gas are filled in).
struct Msg {
    from: Address,
    to: Address,
    value: TokenAmount,
    method: u64,
    params: Vec<u8>,
}

impl Msg {
    /// A plain transfer of `value`.
    fn transfer(from: Address, to: Address, value: TokenAmount) -> Self {
        Msg { from, to, value, method: METHOD_SEND, params: Vec::new() }
    }

    /// A call of `method` with no value and no parameters.
    fn call(from: Address, to: Address, method: u64) -> Self {
        Msg { from, to, value: TokenAmount::default(), method, params: Vec::new() }
    }
}

/// The chain under test, and a way to mine and fund on the devnet behind it.
struct Harness {
    chain: Arc<dyn Chain>,
    devnet: Devnet,
    wallet: KeyStore,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(devnet: Devnet, chain: Arc<dyn Chain>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wallet = KeyStore::open(dir.path().join("keystore"), Network::Testnet).unwrap();
        Harness { chain, devnet, wallet, _dir: dir }
    }

    /// Mines one epoch and returns the message's lookup.
    async fn land(&self, cid: Cid) -> MessageLookup {
        self.devnet.mine(1);
        self.chain.wait(&cid, 0, WAIT).await.unwrap()
    }

    /// `msg` from its sender with its next nonce and estimated gas, signed by the wallet.
    async fn sign(&self, msg: Msg) -> SignedMessage {
        let message = Message::new(msg.from, msg.to, 0, msg.value, msg.method, msg.params);
        let signed = prepare_message(self.chain.as_ref(), &self.wallet, message).await.unwrap();
        assert!(signed.message.gas_limit > 0 && signed.message.gas_fee_cap.is_positive());
        signed
    }

    /// Signs and pushes `msg`, then mines it: returns its lookup.
    async fn send(&self, msg: Msg) -> MessageLookup {
        let signed = self.sign(msg).await;
        let cid = self.chain.push(&signed).await.unwrap();
        assert_eq!(cid, signed.cid().unwrap());
        self.land(cid).await
    }

    async fn balance(&self, addr: &Address) -> TokenAmount {
        self.chain.actor(addr).await.unwrap().map(|a| a.balance).unwrap_or_default()
    }

    fn voucher(
        &self,
        signer: &Address,
        channel: Address,
        lane: u64,
        nonce: u64,
        amount: TokenAmount,
    ) -> SignedVoucher {
        let mut v = SignedVoucher::new(channel, lane, nonce, amount);
        self.sign_voucher(signer, &mut v);
        v
    }

    fn sign_voucher(&self, signer: &Address, v: &mut SignedVoucher) {
        v.signature = None;
        v.signature = Some(self.wallet.sign(signer, &v.signing_bytes().unwrap()).unwrap());
    }

    /// Funds `payer` from the faucet and creates a channel of `amount` to `payee` through
    /// the Init actor; answers its robust address.
    async fn create_channel(&self, payer: Address, payee: Address, amount: TokenAmount) -> Address {
        self.land(self.devnet.faucet(&payer, &amount + fil(90)).unwrap()).await;
        let code = self.chain.actor_code(ActorKind::PaymentChannel).await.unwrap();
        let ctor =
            fvm_ipld_encoding::to_vec(&ConstructorParams { from: payer, to: payee }).unwrap();
        let exec =
            fvm_ipld_encoding::to_vec(&ExecParams { code_cid: code, constructor_params: ctor })
                .unwrap();
        let init = Address::new_id(INIT_ACTOR_ID);
        let created = self
            .send(Msg {
                from: payer,
                to: init,
                value: amount,
                method: INIT_EXEC_METHOD,
                params: exec,
            })
            .await;
        decode::decode::<ExecReturn>(&created.receipt.return_data).unwrap().robust_address
    }

    async fn redeem(
        &self,
        caller: Address,
        channel: Address,
        voucher: &SignedVoucher,
    ) -> MessageLookup {
        let params = UpdateChannelStateParams { sv: voucher.clone(), secret: Vec::new() };
        let params = fvm_ipld_encoding::to_vec(&params).unwrap();
        let method = paych_method::UPDATE_CHANNEL_STATE;
        self.send(Msg { params, ..Msg::call(caller, channel, method) }).await
    }
}

/// The addresses whose balances must always add up to the same total.
struct Ledger {
    addresses: Vec<Address>,
    total: TokenAmount,
}

impl Ledger {
    async fn new(h: &Harness, addresses: Vec<Address>) -> Self {
        let mut ledger = Ledger { addresses, total: TokenAmount::default() };
        ledger.total = ledger.sum(h).await;
        ledger
    }

    async fn sum(&self, h: &Harness) -> TokenAmount {
        let mut total = TokenAmount::default();
        for a in &self.addresses {
            total += h.balance(a).await;
        }
        total
    }

    async fn check(&self, h: &Harness, step: &str) {
        assert_eq!(self.sum(h).await, self.total, "balances plus burnt gas changed at: {step}");
    }
}

fn exit(lookup: &MessageLookup) -> u32 {
    lookup.receipt.exit_code.value()
}

async fn conformance(h: Harness) {
    let chain = h.chain.clone();
    assert_eq!(chain.network_name().await.unwrap(), "paych-devnet");
    let payer = h.wallet.new_key().unwrap();
    let payee = h.wallet.new_key().unwrap();
    let stranger = h.wallet.new_key().unwrap();
    let burnt = Address::new_id(99);
    let init = Address::new_id(INIT_ACTOR_ID);
    let faucet = h.devnet.faucet_address();

    // Funding from the faucet.
    let funded = [(payer, fil(100)), (payee, fil(10)), (stranger, fil(1))];
    let mut cids = Vec::new();
    for (addr, amount) in &funded {
        cids.push(h.devnet.faucet(addr, amount.clone()).unwrap());
    }
    h.devnet.mine(1);
    for (cid, (addr, amount)) in cids.iter().zip(&funded) {
        let lookup = chain.wait(cid, 0, WAIT).await.unwrap();
        assert!(lookup.receipt.is_ok());
        assert!(lookup.receipt.gas_used > 0);
        assert_eq!(&h.balance(addr).await, amount);
        let actor = chain.actor(addr).await.unwrap().unwrap();
        assert_eq!(actor.kind, ActorKind::Account);
        assert_eq!(
            chain.account_key(&chain.lookup_id(addr).await.unwrap().unwrap()).await.unwrap(),
            *addr
        );
    }
    let mut ledger = Ledger::new(&h, vec![faucet, payer, payee, stranger, burnt, init]).await;

    // Create a channel through the Init actor's Exec, with 10 FIL.
    let code = chain.actor_code(ActorKind::PaymentChannel).await.unwrap();
    let ctor = fvm_ipld_encoding::to_vec(&ConstructorParams { from: payer, to: payee }).unwrap();
    let exec = fvm_ipld_encoding::to_vec(&ExecParams { code_cid: code, constructor_params: ctor })
        .unwrap();
    let burnt_before = h.balance(&burnt).await;
    let created = h
        .send(Msg { from: payer, to: init, value: fil(10), method: INIT_EXEC_METHOD, params: exec })
        .await;
    assert_eq!(exit(&created), 0);
    assert!(h.balance(&burnt).await > burnt_before, "gas is burnt");
    let ret: ExecReturn = decode::decode(&created.receipt.return_data).unwrap();
    let (ch_id, ch) = (ret.id_address, ret.robust_address);
    assert_eq!(chain.lookup_id(&ch).await.unwrap(), Some(ch_id));
    let actor = chain.actor(&ch).await.unwrap().unwrap();
    assert_eq!((actor.kind, actor.code, actor.balance), (ActorKind::PaymentChannel, code, fil(10)));
    let state = chain.channel(&ch).await.unwrap();
    assert_eq!(state.state.from, chain.lookup_id(&payer).await.unwrap().unwrap());
    assert_eq!(state.state.to, chain.lookup_id(&payee).await.unwrap().unwrap());
    assert!(
        state.state.to_send.is_zero()
            && state.state.lanes.is_empty()
            && state.state.settling_at == 0
    );
    ledger.addresses.push(ch);
    ledger.check(&h, "create").await;

    // Add funds with a plain send.
    let added = h.send(Msg::transfer(payer, ch, fil(5))).await;
    assert_eq!(exit(&added), 0);
    assert_eq!(h.balance(&ch).await, fil(15));
    ledger.check(&h, "add funds").await;

    // Balances at earlier epochs: the state after each tipset, on either address.
    let head = chain.head().await.unwrap();
    assert_eq!(head, added.epoch);
    for addr in [ch, ch_id] {
        assert_eq!(chain.balance_at(&addr, created.epoch - 1).await.unwrap(), None, "not yet");
        assert_eq!(chain.balance_at(&addr, created.epoch).await.unwrap(), Some(fil(10)));
        assert_eq!(chain.balance_at(&addr, added.epoch - 1).await.unwrap(), Some(fil(10)));
        assert_eq!(chain.balance_at(&addr, added.epoch).await.unwrap(), Some(fil(15)));
        assert_eq!(chain.balance_at(&addr, head + 1000).await.unwrap(), Some(fil(15)), "the head");
        assert_eq!(chain.balance_at(&addr, -5).await.unwrap(), None, "genesis");
    }
    assert_eq!(chain.balance_at(&payer, 0).await.unwrap(), None, "funded at epoch 1");
    assert_eq!(chain.balance_at(&payer, 1).await.unwrap(), Some(fil(100)));
    // The channel as a payee counts it: funds added within the depth are not confirmed, and
    // a channel created within the depth has nothing confirmed.
    let at = |depth| chain.channel_at_depth(&ch, depth);
    let confirmed =
        |c: paych_core::chain::ChannelAtDepth| (c.head, c.confirmed_at, c.confirmed_balance);
    let now = at(0).await.unwrap();
    assert_eq!(now.channel, chain.channel(&ch).await.unwrap());
    assert_eq!(confirmed(now), (head, head, fil(15)));
    assert_eq!(confirmed(at(1).await.unwrap()), (head, head - 1, fil(10)), "add-funds not counted");
    let before_creation = u64::try_from(head - created.epoch + 1).unwrap();
    assert_eq!(
        confirmed(at(before_creation).await.unwrap()),
        (head, created.epoch - 1, TokenAmount::default()),
        "created within the depth"
    );
    assert_eq!(confirmed(at(u64::MAX).await.unwrap()), (head, 0, TokenAmount::default()));
    // Once the add-funds message is deep enough, it counts; earlier states do not change.
    h.devnet.mine(3);
    let head = chain.head().await.unwrap();
    assert_eq!(confirmed(at(3).await.unwrap()), (head, head - 3, fil(15)));
    assert_eq!(confirmed(at(4).await.unwrap()), (head, head - 4, fil(10)));
    assert_eq!(chain.balance_at(&ch, added.epoch - 1).await.unwrap(), Some(fil(10)));
    let unknown = Address::new_id(ch_id.id().unwrap() + 1000);
    assert_eq!(chain.balance_at(&unknown, head).await.unwrap(), None);
    assert!(matches!(chain.channel_at_depth(&unknown, 2).await, Err(ChainError::NotFound(_))));

    // A valid voucher.
    let v1 = h.voucher(&payer, ch, 0, 1, fil(1));
    let redeemed = h.redeem(payee, ch, &v1).await;
    assert_eq!(exit(&redeemed), 0);
    redemption_is_among_its_tipsets_messages(chain.as_ref(), &redeemed, ch, &v1).await;
    let state = chain.channel(&ch).await.unwrap();
    assert_eq!(state.lane(0).map(|l| (l.redeemed.clone(), l.nonce)), Some((fil(1), 1)));
    assert_eq!(state.state.to_send, fil(1));
    // The head and the channel read as one (as voucher validation reads them), and again from
    // what the backend kept.
    let head = chain.head().await.unwrap();
    assert_eq!(chain.channel_at_head(&ch).await.unwrap(), (head, state.clone()));
    assert_eq!(chain.channel_at_head(&ch).await.unwrap(), (head, state.clone()));
    // The lane states come from the AMT block behind the state (ChainReadObj on the LotusChain).

    // One voucher per rejection class, each refused with the actor's exit code.
    let stale = h.voucher(&payer, ch, 0, 1, fil(2));
    assert_eq!(exit(&h.redeem(payee, ch, &stale).await), 16, "stale nonce");
    let forged = h.voucher(&stranger, ch, 0, 2, fil(2));
    assert_eq!(exit(&h.redeem(payee, ch, &forged).await), 16, "signature not by from");
    let too_much = h.voucher(&payer, ch, 1, 1, fil(100));
    assert_eq!(exit(&h.redeem(payee, ch, &too_much).await), 16, "more than the balance");
    let by_stranger = h.voucher(&payer, ch, 1, 1, fil(1));
    assert_eq!(exit(&h.redeem(stranger, ch, &by_stranger).await), 18, "caller not a party");
    let mut locked = SignedVoucher::new(ch, 1, 1, fil(1));
    locked.time_lock_min = chain.head().await.unwrap() + 100;
    h.sign_voucher(&payer, &mut locked);
    assert_eq!(exit(&h.redeem(payee, ch, &locked).await), 16, "time lock");
    let mut other_channel = h.voucher(&payer, ch_id, 1, 1, fil(1));
    other_channel.channel_addr = Address::new_id(ch_id.id().unwrap() + 1000);
    h.sign_voucher(&payer, &mut other_channel);
    assert_eq!(exit(&h.redeem(payee, ch, &other_channel).await), 16, "another channel");
    assert_eq!(chain.channel(&ch).await.unwrap().state.to_send, fil(1), "refusals changed nothing");
    ledger.check(&h, "rejections").await;

    // Merges: lane 1 redeemed at 2 FIL, then folded into lane 0 by a combined voucher.
    assert_eq!(exit(&h.redeem(payee, ch, &h.voucher(&payer, ch, 1, 1, fil(2))).await), 0);
    let mut never = h.voucher(&payer, ch, 2, 1, fil(3));
    never.merges = vec![Merge { lane: 3, nonce: 1 }];
    h.sign_voucher(&payer, &mut never);
    assert_eq!(exit(&h.redeem(payee, ch, &never).await), 16, "merging a lane not on chain");
    let mut combined = h.voucher(&payer, ch, 0, 2, fil(4));
    combined.merges = vec![Merge { lane: 1, nonce: 2 }];
    h.sign_voucher(&payer, &mut combined);
    assert_eq!(exit(&h.redeem(payee, ch, &combined).await), 0);
    let state = chain.channel(&ch).await.unwrap();
    assert_eq!(state.state.to_send, fil(4), "4 − (1 + 2) added to 3");
    assert_eq!(state.lane(1).map(|l| (l.redeemed.clone(), l.nonce)), Some((fil(2), 2)));
    let after_merge = h.voucher(&payer, ch, 1, 2, fil(5));
    assert_eq!(exit(&h.redeem(payee, ch, &after_merge).await), 16, "merged lane is closed");
    ledger.check(&h, "merges").await;

    // Collect before settling is forbidden; settle starts the delay.
    let early = h.send(Msg::call(payee, ch, paych_method::COLLECT)).await;
    assert_eq!(exit(&early), 18);
    let settled = h.send(Msg::call(payee, ch, paych_method::SETTLE)).await;
    assert_eq!(exit(&settled), 0);
    let settling_at = chain.channel(&ch).await.unwrap().state.settling_at;
    assert_eq!(settling_at, settled.epoch + SETTLE_DELAY);
    let again = h.send(Msg::call(payer, ch, paych_method::SETTLE)).await;
    assert_eq!(exit(&again), 20);
    // Vouchers are still accepted before settling_at.
    assert_eq!(exit(&h.redeem(payee, ch, &h.voucher(&payer, ch, 0, 3, fil(5))).await), 0);
    ledger.check(&h, "settle").await;

    // At settling_at, no more vouchers (32); collect pays both sides exactly.
    let head = chain.head().await.unwrap();
    h.devnet.mine(u64::try_from(settling_at - head - 1).unwrap());
    let late = h.voucher(&payer, ch, 0, 4, fil(6));
    let late = h.redeem(payee, ch, &late).await;
    assert!(late.epoch >= settling_at);
    assert_eq!(exit(&late), 32);
    let (payer_before, payee_before) = (h.balance(&payer).await, h.balance(&payee).await);
    let collect = h.sign(Msg::call(payer, ch, paych_method::COLLECT)).await;
    let cid = chain.push(&collect).await.unwrap();
    let collected = h.land(cid).await;
    assert_eq!(exit(&collected), 0);
    let gas = state_gas_cost(&collect.message, collected.receipt.gas_used);
    assert_eq!(h.balance(&payee).await, payee_before + fil(5), "to_send to the payee");
    assert_eq!(h.balance(&payer).await, payer_before + fil(10) - gas, "the rest to the payer");
    assert_eq!(chain.actor(&ch).await.unwrap(), None, "the actor is deleted");
    assert!(matches!(chain.channel(&ch).await, Err(ChainError::NotFound(_))));
    assert!(matches!(chain.channel_at_head(&ch).await, Err(ChainError::NotFound(_))));
    assert!(matches!(chain.channel_at_depth(&ch, 5).await, Err(ChainError::NotFound(_))));
    assert_eq!(chain.balance_at(&ch, collected.epoch).await.unwrap(), None);
    assert_eq!(chain.balance_at(&ch, collected.epoch - 1).await.unwrap(), Some(fil(15)));
    ledger.check(&h, "collect").await;

    // Wait and search.
    assert_eq!(chain.search(&cid).await.unwrap().map(|l| l.epoch), Some(collected.epoch));
    assert_eq!(chain.search(&Cid::default()).await.unwrap(), None);
    let pending = h.sign(Msg::transfer(payer, payee, fil(1))).await;
    let pending_cid = chain.push(&pending).await.unwrap();
    assert_eq!(chain.search(&pending_cid).await.unwrap(), None);
    assert!(matches!(
        chain.wait(&pending_cid, 0, Duration::from_millis(200)).await,
        Err(ChainError::Timeout(_))
    ));
    // Pushing the same signed message again is harmless: it can land only once.
    assert_eq!(chain.push(&pending).await.unwrap(), pending_cid);
    let landed = h.land(pending_cid).await;
    let unconfirmed = chain.wait(&pending_cid, 2, Duration::from_millis(200)).await;
    assert!(matches!(unconfirmed, Err(ChainError::Timeout(_))), "confidence not reached");
    h.devnet.mine(2);
    assert_eq!(chain.wait(&pending_cid, 2, WAIT).await.unwrap(), landed);
    ledger.check(&h, "wait and search").await;

    // Bad messages are refused at push with a clear error and change nothing.
    let mut forged = h.sign(Msg::transfer(payer, payee, fil(1))).await;
    forged.signature = h.wallet.sign(&stranger, &forged.message.cid().unwrap().to_bytes()).unwrap();
    assert_rejected(chain.push(&forged).await, "signature");
    let mut gap = h.sign(Msg::transfer(payer, payee, fil(1))).await;
    gap.message.nonce += 5;
    gap.signature = h.wallet.sign(&payer, &gap.message.cid().unwrap().to_bytes()).unwrap();
    assert_rejected(chain.push(&gap).await, "nonce gap");
    let broke = h.sign(Msg::transfer(stranger, payee, fil(1_000))).await;
    assert_rejected(chain.push(&broke).await, "insufficient balance");
    ledger.check(&h, "bad messages").await;

    // Concurrent pushes: of many messages racing for one nonce, exactly one is accepted; and
    // messages pushed concurrently with nonces handed out in turn all land.
    let nonce = chain.next_nonce(&payer).await.unwrap();
    let mut racing = Vec::new();
    for i in 0..8u64 {
        let mut m = h.sign(Msg::transfer(payer, payee, TokenAmount::from_atto(i + 1))).await;
        m.message.nonce = nonce;
        m.signature = h.wallet.sign(&payer, &m.message.cid().unwrap().to_bytes()).unwrap();
        let chain = chain.clone();
        racing.push(tokio::spawn(async move { chain.push(&m).await }));
    }
    let mut accepted = 0;
    for task in racing {
        if task.await.unwrap().is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1);
    let nonce_lock = Arc::new(tokio::sync::Mutex::new(()));
    let h = Arc::new(h);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (h, lock) = (h.clone(), nonce_lock.clone());
        tasks.push(tokio::spawn(async move {
            let _turn = lock.lock().await;
            let m = h.sign(Msg::transfer(payer, payee, TokenAmount::from_atto(1))).await;
            h.chain.push(&m).await.unwrap()
        }));
    }
    let mut pushed = Vec::new();
    for task in tasks {
        pushed.push(task.await.unwrap());
    }
    h.devnet.mine(1);
    for cid in &pushed {
        assert!(h.chain.wait(cid, 0, WAIT).await.unwrap().receipt.is_ok());
    }
    assert_eq!(h.chain.next_nonce(&payer).await.unwrap(), nonce + 11);
    ledger.check(&h, "concurrent pushes").await;

    tipsets_list_their_messages_once(&h, &pushed).await;

    // Dry runs change nothing.
    let before = h.balance(&payee).await;
    let dry = Message { nonce: 0, ..h.sign(Msg::transfer(payer, payee, fil(1))).await.message };
    assert!(h.chain.call(&dry).await.unwrap().is_ok());
    assert_eq!(h.balance(&payee).await, before);
    let dry_redeem = Message { to: Address::new_id(12345), ..dry };
    assert!(!h.chain.call(&dry_redeem).await.unwrap().is_ok());
    ledger.check(&h, "dry runs").await;
}

/// The tipset that included `redeemed` lists it as it was sent: its parameters are public.
async fn redemption_is_among_its_tipsets_messages(
    chain: &dyn Chain,
    redeemed: &MessageLookup,
    ch: Address,
    voucher: &SignedVoucher,
) {
    let included = chain.tipset_messages(redeemed.epoch).await.unwrap();
    let [message] = included.as_slice() else { panic!("one message expected: {included:?}") };
    assert_eq!(message.cid, redeemed.message);
    let method = paych_method::UPDATE_CHANNEL_STATE;
    assert_eq!((message.message.to, message.message.method), (ch, method));
    let params: UpdateChannelStateParams = decode::decode(&message.message.params).unwrap();
    assert_eq!(&params.sv, voucher);
}

/// The tipset that included `pushed` (ten messages pushed in turn, and one racing winner
/// before them) lists each once; an empty tipset lists none; an epoch above the head or below
/// genesis is not found.
async fn tipsets_list_their_messages_once(h: &Harness, pushed: &[Cid]) {
    let epoch = h.chain.wait(&pushed[0], 0, WAIT).await.unwrap().epoch;
    let included: Vec<Cid> =
        h.chain.tipset_messages(epoch).await.unwrap().iter().map(|m| m.cid).collect();
    assert_eq!(included.len(), 11, "ten pushed in turn and the one racing winner");
    for cid in pushed {
        assert_eq!(included.iter().filter(|c| *c == cid).count(), 1, "{cid} once");
    }
    assert!(h.chain.tipset_messages(epoch - 1).await.unwrap().is_empty(), "mined empty");
    h.devnet.mine(1);
    let head = h.chain.head().await.unwrap();
    assert!(h.chain.tipset_messages(head).await.unwrap().is_empty());
    for beyond in [head + 1, -1] {
        assert!(
            matches!(h.chain.tipset_messages(beyond).await, Err(ChainError::NotFound(_))),
            "epoch {beyond}"
        );
    }
}

/// What a message paid for `gas_used`, as the devnet prices it (base fee 100 attoFIL).
fn state_gas_cost(message: &Message, gas_used: u64) -> TokenAmount {
    let wanted = TokenAmount::from_atto(100) + &message.gas_premium;
    let price = if message.gas_fee_cap < wanted { message.gas_fee_cap.clone() } else { wanted };
    price * gas_used
}

fn assert_rejected(result: Result<Cid, ChainError>, needle: &str) {
    match result {
        Err(ChainError::Rejected { message, .. }) => {
            assert!(message.contains(needle), "{message:?} should mention {needle:?}")
        }
        other => panic!("expected a rejection mentioning {needle:?}, got {other:?}"),
    }
}

fn devnet() -> Devnet {
    Devnet::new(DevnetConfig::default()).unwrap()
}

/// `devnet` served over the Lotus JSON-RPC subset on a loopback port.
async fn serve(devnet: &Devnet) -> paych_node::rpc::devnet::RpcServer {
    paych_node::rpc::devnet::serve(devnet.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// [`serve`], and a `LotusChain` client of that server.
async fn serve_lotus(
    devnet: &Devnet,
) -> (paych_node::rpc::devnet::RpcServer, paych_core::chain::lotus::LotusChain) {
    let server = serve(devnet).await;
    let chain = paych_core::chain::lotus::LotusChain::from_api_info(&server.api_info()).unwrap();
    (server, chain)
}

#[tokio::test]
async fn devnet_in_process_conforms() {
    let devnet = devnet();
    conformance(Harness::new(devnet.clone(), Arc::new(devnet))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lotus_client_over_http_to_paych_devnet_conforms() {
    let devnet = devnet();
    let (server, chain) = serve_lotus(&devnet).await;
    conformance(Harness::new(devnet, Arc::new(chain))).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lotus_client_over_tls_to_a_gateway_devnet_conforms() {
    let devnet = devnet();
    let gateway = paych_testkit::tls::GatewayOverTls::start(&devnet).await;
    let chain = Arc::new(gateway.client());
    assert!(!chain.is_gateway(), "gateway mode is found, not configured, here");
    conformance(Harness::new(devnet, chain.clone())).await;
    assert!(chain.is_gateway(), "the gateway's \"method not found\" switched the client");
    assert_eq!(gateway.proxy.failed_handshakes(), 0);
    gateway.server.shutdown().await;
}

#[tokio::test]
async fn a_devnet_restarts_where_it_stopped() {
    let repo = tempfile::tempdir().unwrap();
    let config = DevnetConfig { repo: Some(repo.path().join("devnet")), ..DevnetConfig::default() };
    let devnet = Devnet::new(config.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wallet = KeyStore::open(dir.path(), Network::Testnet).unwrap();
    let payer = wallet.new_key().unwrap();
    let funded = devnet.faucet(&payer, fil(3)).unwrap();
    devnet.mine(1);
    let pending = devnet.faucet(&payer, fil(4)).unwrap();
    let head = devnet.head_tipset();
    let total = devnet.total_balance();
    let faucet = devnet.faucet_address();
    drop(devnet);

    let devnet = Devnet::new(config).unwrap();
    assert_eq!(devnet.head_tipset(), head);
    assert_eq!(devnet.total_balance(), total);
    assert_eq!(devnet.faucet_address(), faucet);
    assert_eq!(devnet.actor(&payer).await.unwrap().unwrap().balance, fil(3));
    assert!(devnet.search(&funded).await.unwrap().unwrap().receipt.is_ok());
    // The message pending at the stop is still in the pool and lands.
    devnet.mine(1);
    assert!(devnet.wait(&pending, 0, WAIT).await.unwrap().receipt.is_ok());
    assert_eq!(devnet.actor(&payer).await.unwrap().unwrap().balance, fil(7));
    // Earlier states are read back from the blocks written before the stop.
    assert_eq!(devnet.balance_at(&payer, head.height).await.unwrap(), Some(fil(3)));
    assert_eq!(devnet.balance_at(&payer, head.height - 1).await.unwrap(), None);
}

/// A fresh Lotus client asked for the same channel many times at once, before it has learned
/// the network's actor code CIDs: every answer says it is a payment channel (none is misread
/// as another kind of actor while another call is still fetching the codes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_lotus_client_reads_a_channel_concurrently() {
    let devnet = devnet();
    let server = serve(&devnet).await;
    let api_info = server.api_info();
    let h = Harness::new(devnet.clone(), Arc::new(devnet.clone()));
    let payer = h.wallet.new_key().unwrap();
    let payee = h.wallet.new_key().unwrap();
    let ch = h.create_channel(payer, payee, fil(10)).await;

    for _ in 0..5 {
        let chain = paych_core::chain::lotus::LotusChain::from_api_info(&api_info).unwrap();
        let reads = (0..8).map(|_| chain.channel(&ch));
        for read in futures::future::join_all(reads).await {
            assert_eq!(read.unwrap().balance, fil(10));
        }
    }
    server.shutdown().await;
}

/// A Lotus client resolves a robust address to its ID, and an account's ID to its key, once:
/// the answers are kept (they do not change), so they still come with the node gone. A
/// robust address not found yet is asked again, and a key address is its own account key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lotus_client_keeps_address_resolutions() {
    let devnet = devnet();
    let (server, chain) = serve_lotus(&devnet).await;
    let h = Harness::new(devnet.clone(), Arc::new(devnet.clone()));
    let payer = h.wallet.new_key().unwrap();
    let later = h.wallet.new_key().unwrap();
    h.land(devnet.faucet(&payer, fil(1)).unwrap()).await;

    let id = chain.lookup_id(&payer).await.unwrap().unwrap();
    assert_eq!(chain.account_key(&id).await.unwrap(), payer);
    assert_eq!(chain.lookup_id(&later).await.unwrap(), None);
    h.land(devnet.faucet(&later, fil(1)).unwrap()).await;
    let later_id = chain.lookup_id(&later).await.unwrap().unwrap();
    assert_ne!(later_id, id);

    server.shutdown().await;
    assert!(matches!(chain.head().await, Err(ChainError::Transport(_))));
    assert_eq!(chain.lookup_id(&payer).await.unwrap(), Some(id));
    assert_eq!(chain.lookup_id(&later).await.unwrap(), Some(later_id));
    assert_eq!(chain.account_key(&id).await.unwrap(), payer);
    assert_eq!(chain.account_key(&payer).await.unwrap(), payer);
}

/// A Lotus client keeps a channel's lanes by the root of their AMT: reading a channel whose
/// lanes did not change fetches no block again, and a redemption (a new root) is read anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lotus_client_reads_unchanged_lanes_once() {
    let Proxied { devnet, server, proxy, chain, h, payer, payee, ch } =
        Proxied::with_channel(b"Filecoin.ChainReadObj").await;

    let first = chain.channel(&ch).await.unwrap();
    let fetched = proxy.count();
    assert!(fetched >= 1, "the lanes' root block was not read");
    let again = chain.channel(&ch).await.unwrap();
    assert_eq!(again.state.lanes, first.state.lanes);
    assert_eq!(proxy.count(), fetched, "unchanged lanes were fetched again");

    h.land(devnet.faucet(&payee, fil(1)).unwrap()).await;
    let voucher = h.voucher(&payer, ch, 3, 1, fil(2));
    assert_eq!(exit(&h.redeem(payee, ch, &voucher).await), 0);
    let after = chain.channel(&ch).await.unwrap();
    assert!(proxy.count() > fetched, "the new lanes were not read");
    assert_eq!(after.lane(3).map(|l| (l.redeemed.clone(), l.nonce)), Some((fil(2), 1)));
    assert_eq!(after, devnet.channel(&ch).await.unwrap());
    server.shutdown().await;
}

/// A Lotus client reaching the devnet's server through a [`CountingProxy`], and a channel
/// of 10 FIL from `payer` to `payee` created on that devnet.
struct Proxied {
    devnet: Devnet,
    server: paych_node::rpc::devnet::RpcServer,
    proxy: CountingProxy,
    chain: paych_core::chain::lotus::LotusChain,
    h: Harness,
    payer: Address,
    payee: Address,
    ch: Address,
}

impl Proxied {
    /// Counts the client's requests whose bytes contain `needle`.
    async fn with_channel(needle: &'static [u8]) -> Self {
        let devnet = devnet();
        let server = serve(&devnet).await;
        let proxy = CountingProxy::start(server.local_addr(), needle).await;
        let api_info = paych_node::rpc::devnet::api_info(proxy.addr);
        let chain = paych_core::chain::lotus::LotusChain::from_api_info(&api_info).unwrap();
        let h = Harness::new(devnet.clone(), Arc::new(devnet.clone()));
        let payer = h.wallet.new_key().unwrap();
        let payee = h.wallet.new_key().unwrap();
        let ch = h.create_channel(payer, payee, fil(10)).await;
        Proxied { devnet, server, proxy, chain, h, payer, payee, ch }
    }
}

/// A TCP proxy on loopback in front of a server, counting how often the client's bytes
/// contain `needle` (a JSON-RPC method name).
struct CountingProxy {
    addr: std::net::SocketAddr,
    seen: Arc<std::sync::atomic::AtomicUsize>,
    /// While set, a connection whose request contains the needle is closed instead of
    /// forwarded: the client sees the node fail.
    refusing: Arc<std::sync::atomic::AtomicBool>,
}

impl CountingProxy {
    async fn start(server: std::net::SocketAddr, needle: &'static [u8]) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let counter = seen.clone();
        let refuse = refusing.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(server).await else { return };
                let counter = counter.clone();
                let refuse = refuse.clone();
                tokio::spawn(async move {
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = upstream.into_split();
                    let up = async {
                        // The last bytes of each read are kept, so a needle split between two
                        // reads is still counted once.
                        let mut window = Vec::new();
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = from_client.read(&mut buf).await?;
                            if n == 0 {
                                return to_server.shutdown().await;
                            }
                            window.extend_from_slice(&buf[..n]);
                            let found =
                                window.windows(needle.len()).filter(|w| *w == needle).count();
                            counter.fetch_add(found, std::sync::atomic::Ordering::SeqCst);
                            if found > 0 && refuse.load(std::sync::atomic::Ordering::SeqCst) {
                                return Err(std::io::Error::other("refused by the proxy"));
                            }
                            let keep = window.len().min(needle.len() - 1);
                            window.drain(..window.len() - keep);
                            to_server.write_all(&buf[..n]).await?;
                        }
                    };
                    let down = tokio::io::copy(&mut from_server, &mut to_client);
                    tokio::pin!(up, down);
                    tokio::select! {
                        sent = &mut up => {
                            // A refused request closes the client's connection at once.
                            if sent.is_ok() {
                                let _ = down.await;
                            }
                        }
                        _ = &mut down => {
                            let _ = up.await;
                        }
                    }
                });
            }
        });
        CountingProxy { addr, seen, refusing }
    }

    /// Closes (or again forwards) the connections whose request contains the needle.
    fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, std::sync::atomic::Ordering::SeqCst);
    }

    fn count(&self) -> usize {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A Lotus client reads the head and a channel at that very tipset, and keeps the channel for
/// the rest of that head: a payee validating several vouchers within one epoch asks the node
/// for the channel's state once, and again once a new block is the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lotus_client_reads_a_channel_once_per_head() {
    let Proxied { devnet, server, proxy, chain, h, payer, ch, .. } =
        Proxied::with_channel(b"Filecoin.StateReadState").await;

    let (epoch, first) = chain.channel_at_head(&ch).await.unwrap();
    assert_eq!(
        (epoch, &first),
        (devnet.head().await.unwrap(), &devnet.channel(&ch).await.unwrap())
    );
    let reads = proxy.count();
    for _ in 0..5 {
        assert_eq!(chain.channel_at_head(&ch).await.unwrap(), (epoch, first.clone()));
    }
    assert_eq!(proxy.count(), reads, "the channel was read again at the same head");

    assert_eq!(exit(&h.send(Msg::transfer(payer, ch, fil(5))).await), 0);
    let (later, funded) = chain.channel_at_head(&ch).await.unwrap();
    assert!(later > epoch);
    assert_eq!(funded.balance, fil(15));
    assert_eq!(proxy.count(), reads + 1);
    server.shutdown().await;
}

/// A Lotus client reads a channel's confirmed balance once per head: a payee validating
/// several vouchers within one epoch looks the deeper tipset up once, and again once a new
/// block is the head — when funds added since count as soon as they are deep enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lotus_client_reads_a_confirmed_balance_once_per_head() {
    let Proxied { devnet, server, proxy, chain, h, payer, ch, .. } =
        Proxied::with_channel(b"Filecoin.ChainGetTipSetByHeight").await;
    let added = h.send(Msg::transfer(payer, ch, fil(5))).await;
    assert_eq!(exit(&added), 0);

    let first = chain.channel_at_depth(&ch, 1).await.unwrap();
    assert_eq!(first, devnet.channel_at_depth(&ch, 1).await.unwrap());
    assert_eq!(
        (first.channel.balance.clone(), first.confirmed_balance.clone()),
        (fil(15), fil(10))
    );
    let lookups = proxy.count();
    assert_eq!(lookups, 1);
    for _ in 0..5 {
        assert_eq!(chain.channel_at_depth(&ch, 1).await.unwrap(), first);
    }
    assert_eq!(proxy.count(), lookups, "the deeper tipset was looked up again at the same head");

    devnet.mine(1);
    let deeper = chain.channel_at_depth(&ch, 1).await.unwrap();
    assert_eq!((deeper.head, deeper.confirmed_balance.clone()), (first.head + 1, fil(15)));
    assert_eq!(proxy.count(), lookups + 1);
    server.shutdown().await;
}

/// A manager whose chain node fails for a while just as one of its messages lands — so that
/// the message's effects cannot be read yet — records it once the node answers again, without
/// a restart (its funds and lifecycle would otherwise stay pending until one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landed_message_whose_effects_cannot_be_read_yet_is_recorded_once_the_chain_answers() {
    use paych_core::manager::{ManagerConfig, MessageOutcome};
    use paych_core::store::Lifecycle;
    use paych_testkit::devnet::{fund, mining, start_manager};

    let devnet = mining(Duration::from_millis(50));
    let server = serve(&devnet).await;
    let proxy = CountingProxy::start(server.local_addr(), b"Filecoin.StateReadState").await;
    let api_info = paych_node::rpc::devnet::api_info(proxy.addr);
    let chain = Arc::new(paych_core::chain::lotus::LotusChain::from_api_info(&api_info).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let wallet = Arc::new(KeyStore::open(dir.path().join("keystore"), Network::Testnet).unwrap());
    let (payer, payee) = (wallet.new_key().unwrap(), wallet.new_key().unwrap());
    for key in [payer, payee] {
        fund(&devnet, false, &key, fil(10)).await;
    }
    let config = ManagerConfig {
        wait_timeout: Duration::from_secs(2),
        settler_interval: Duration::from_secs(3600),
        ..ManagerConfig::default()
    };
    let manager = start_manager(chain, wallet, dir.path(), config).await;
    let handle = manager.create(payer, payee, fil(1), TokenAmount::default()).await.unwrap();
    let ch = manager.get_wait_ready(&handle.wait_sentinel.unwrap()).await.unwrap();

    // The node stops answering state reads; the settle lands meanwhile, and the manager's
    // first try at recording it fails (a request and the client's three retries).
    proxy.refuse(true);
    let refused_before = proxy.count();
    let cid = manager.settle(&ch).await.unwrap();
    devnet.wait(&cid, 0, WAIT).await.unwrap();
    while proxy.count() < refused_before + 4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.refuse(false);

    let outcome = tokio::time::timeout(Duration::from_secs(60), manager.wait_message(&cid))
        .await
        .expect("the landed settle is recorded without a restart")
        .unwrap();
    assert!(matches!(outcome, MessageOutcome::Landed { exit_code: 0, .. }), "{outcome:?}");
    assert_eq!(manager.status(&ch).await.unwrap().lifecycle, Lifecycle::Settling);
    manager.shutdown().await.unwrap();
    server.shutdown().await;
}
