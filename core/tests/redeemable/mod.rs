//! An independent, brute-force measure of what a payee can be paid: the most `to_send` it
//! can reach on chain by submitting vouchers it holds, in the best order, in messages that
//! execute at `head + 1` or later and land before the channel settles.
//!
//! Nothing here shares code with the manager's voucher intake: every order of every subset
//! of the held vouchers is tried on copies of the channel's state with the actor's own rules
//! ([`paych_core::actor::update_channel_state`]) and an [`ActorEnv`] of this module's own,
//! which checks signatures with [`paych_core::crypto`] and makes each voucher's `extra` call
//! as the devnet's payment-channel actor makes it (the callee must exist on chain and the
//! method must be a plain send; any other method fails). Keep the held sets small: the
//! search is exponential (a failing voucher prunes its branch, and a seen state is never
//! searched twice).
//!
//! What counts, and why:
//! - the window: a message pushed now executes at `head + 1` at the earliest; it must land
//!   before `settling_at` when the channel is settling, and otherwise before the earliest
//!   `settling_at` a `Settle` the payer could send now would give (`head + 1 + SETTLE_DELAY`,
//!   or the state's `min_settle_height` if later). A plan's messages run in order at
//!   non-decreasing epochs inside that window; each voucher's time locks narrow its epochs,
//!   and the search gives each message the earliest epoch it can run at;
//! - the payee knows only the secrets of [`ChainView::secrets`] (none unless a test fills
//!   it in): a voucher with another secret hash never redeems for it;
//! - a voucher whose `min_settle_height` lies beyond that window would postpone the
//!   channel's settlement to a height the payer chose (without bound: the payee could never
//!   collect): it counts for nothing;
//! - the chain's balance is the channel's current balance.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use fvm_shared::address::Protocol;
use paych_core::actor::{
    self, AccountLookup, ActorEnv, ChannelState, ExtraCallFailure, Invocation,
};
use paych_core::chain::devnet::Devnet;
use paych_core::chain::Chain;
use paych_core::crypto;
use paych_core::types::{
    paych_method, ActorID, Address, ChainEpoch, ExitCode, Message, ModVerifyParams, SignedVoucher,
    TokenAmount, UpdateChannelStateParams, METHOD_SEND, SETTLE_DELAY,
};

/// What the oracle knows of the chain: the channel's state and balance at `head`, and the
/// facts about the chain its vouchers' checks ask for.
#[derive(Debug, Clone)]
pub struct ChainView {
    /// The head: messages pushed now execute at `head + 1` at the earliest.
    pub head: ChainEpoch,
    /// The channel's state on chain.
    pub state: ChannelState,
    /// The channel's balance.
    pub balance: TokenAmount,
    /// The channel's ID address (the actor's receiver).
    pub channel_id: Address,
    /// The payer's key address (its vouchers' signer).
    pub payer_key: Address,
    /// Non-ID addresses the vouchers name, and the IDs they resolve to.
    pub ids: BTreeMap<Address, ActorID>,
    /// Addresses (of `extra` callees) that name an existing actor.
    pub existing: BTreeSet<Address>,
    /// The secrets the payee knows, by their blake2b-256 hash: a conditional voucher on
    /// one of them redeems with it.
    pub secrets: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl ChainView {
    /// The first epoch after the window: a message must execute before it.
    pub fn end_of_window(&self, state: &ChannelState) -> ChainEpoch {
        if state.settling_at != 0 {
            state.settling_at
        } else {
            (self.head + 1 + SETTLE_DELAY).max(state.min_settle_height)
        }
    }
}

/// The best plan found: its messages in order, each with the epoch it executes at, and the
/// `to_send` it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The vouchers to submit, in order, each with its execution epoch.
    pub steps: Vec<(SignedVoucher, ChainEpoch)>,
    /// The channel's `to_send` after the plan.
    pub to_send: TokenAmount,
}

/// The most vouchers one search takes (the search is exponential in them).
pub const MAX_CANDIDATES: usize = 24;

/// Signature checks already made, by signed bytes and signature: each voucher's signature
/// is checked once per search.
type SignatureChecks = RefCell<HashMap<(Vec<u8>, Vec<u8>), bool>>;

/// The environment the actor runs in during the search.
struct OracleEnv<'a> {
    view: &'a ChainView,
    /// The payee redeeming on the channel at the search's epoch.
    call: Invocation,
    /// Signature checks already made, by signed bytes and signature.
    checked: &'a SignatureChecks,
}

impl<'a> OracleEnv<'a> {
    /// The payee's view of `view` at `epoch`.
    fn new(view: &'a ChainView, epoch: ChainEpoch, checked: &'a SignatureChecks) -> Self {
        let call = Invocation {
            epoch,
            balance: view.balance.clone(),
            caller: view.state.to,
            receiver: view.channel_id,
        };
        OracleEnv { view, call, checked }
    }
}

impl ActorEnv for OracleEnv<'_> {
    fn invocation(&self) -> &Invocation {
        &self.call
    }
    fn resolve_address(&self, addr: &Address) -> Option<ActorID> {
        actor::id_or_lookup(addr, |a| self.view.ids.get(a).copied())
    }
    fn resolve_account(&self, _addr: &Address) -> AccountLookup {
        AccountLookup::NotFound
    }
    fn verify_signature(
        &self,
        signature: &[u8],
        signer: &Address,
        data: &[u8],
    ) -> Result<(), String> {
        if *signer != self.view.state.from {
            return Err(format!("the payee's vouchers are signed by the payer, not {signer}"));
        }
        let key = (data.to_vec(), signature.to_vec());
        let mut checked = self.checked.borrow_mut();
        let ok = *checked.entry(key).or_insert_with(|| {
            crypto::verify_as_account(signature, &self.view.payer_key, data).is_ok()
        });
        if ok {
            Ok(())
        } else {
            Err("not the payer's signature".to_owned())
        }
    }
    fn call_extra(&self, extra: &ModVerifyParams) -> Result<(), ExtraCallFailure> {
        if !self.view.existing.contains(&extra.actor) {
            // A plain send to a key address with no actor creates its account, as the chain
            // does; any other callee without an actor is missing.
            let key = matches!(extra.actor.protocol(), Protocol::Secp256k1 | Protocol::BLS);
            if !(key && extra.method == METHOD_SEND) {
                return Err(ExtraCallFailure::CalleeMissing);
            }
        }
        if extra.method != METHOD_SEND {
            return Err(ExtraCallFailure::Exited(ExitCode::USR_UNHANDLED_MESSAGE));
        }
        Ok(())
    }
}

/// The most `to_send` the payee can reach with `held` (see the module's rules), and a plan
/// reaching it (the shortest such plan found first).
pub fn redeemable(view: &ChainView, held: &[SignedVoucher]) -> Plan {
    let window_end = view.end_of_window(&view.state);
    // Vouchers that can never redeem are left out of the search.
    let mut candidates: Vec<SignedVoucher> = Vec::new();
    for v in held {
        let usable = (v.secret_hash.is_empty() || view.secrets.contains_key(&v.secret_hash))
            && v.min_settle_height <= window_end
            && v.signature.is_some()
            && view.state.lanes.get(&v.lane).is_none_or(|l| l.nonce < v.nonce)
            && !candidates.contains(v);
        if usable {
            candidates.push(v.clone());
        }
    }
    assert!(
        candidates.len() <= MAX_CANDIDATES,
        "{} vouchers: keep held sets small",
        candidates.len()
    );
    let checked = RefCell::new(HashMap::new());
    let mut search = Search {
        view,
        candidates: &candidates,
        checked: &checked,
        seen: HashSet::new(),
        best: Plan { steps: Vec::new(), to_send: view.state.to_send.clone() },
    };
    let mut steps = Vec::new();
    search.explore(&view.state, view.head + 1, 0, &mut steps);
    search.best
}

struct Search<'a> {
    view: &'a ChainView,
    candidates: &'a [SignedVoucher],
    checked: &'a SignatureChecks,
    seen: HashSet<String>,
    best: Plan,
}

impl Search<'_> {
    fn explore(
        &mut self,
        state: &ChannelState,
        earliest: ChainEpoch,
        used: u64,
        steps: &mut Vec<(SignedVoucher, ChainEpoch)>,
    ) {
        let key = format!("{used}|{earliest}|{state:?}");
        if !self.seen.insert(key) {
            return;
        }
        if state.to_send > self.best.to_send {
            self.best = Plan { steps: steps.clone(), to_send: state.to_send.clone() };
        }
        for (i, v) in self.candidates.iter().enumerate() {
            if used & (1 << i) != 0 {
                continue;
            }
            let epoch = earliest.max(v.time_lock_min);
            if v.time_lock_max != 0 && epoch > v.time_lock_max {
                continue;
            }
            if epoch >= self.view.end_of_window(state) {
                continue;
            }
            let env = OracleEnv::new(self.view, epoch, self.checked);
            let mut next = state.clone();
            let secret = self.view.secrets.get(&v.secret_hash).cloned().unwrap_or_default();
            let params = UpdateChannelStateParams { sv: v.clone(), secret };
            if actor::update_channel_state(&mut next, &env, &params).is_err() {
                // A failed message changes nothing: the branch is the same as leaving it out.
                continue;
            }
            steps.push((v.clone(), epoch));
            self.explore(&next, epoch, used | (1 << i), steps);
            steps.pop();
        }
    }
}

/// Reads what the oracle needs from the devnet for `channel`, for vouchers `held`.
pub async fn view_of(devnet: &Devnet, channel: &Address, held: &[SignedVoucher]) -> ChainView {
    let (head, on_chain) = devnet.channel_at_head(channel).await.expect("the channel on chain");
    let channel_id = devnet.lookup_id(channel).await.unwrap().expect("the channel's ID");
    let payer_key = devnet.account_key(&on_chain.state.from).await.unwrap();
    let mut ids = BTreeMap::new();
    let mut existing = BTreeSet::new();
    for v in held {
        if v.channel_addr.id().is_err() {
            if let Some(id) = devnet.lookup_id(&v.channel_addr).await.unwrap() {
                ids.insert(v.channel_addr, id.id().unwrap());
            }
        }
        if let Some(extra) = &v.extra {
            if devnet.actor(&extra.actor).await.unwrap().is_some() {
                existing.insert(extra.actor);
            }
        }
    }
    ChainView {
        head,
        state: on_chain.state,
        balance: on_chain.balance,
        channel_id,
        payer_key,
        ids,
        existing,
        secrets: BTreeMap::new(),
    }
}

/// The `UpdateChannelState` message a payee (`payee_key`) sends to redeem `voucher`.
pub fn submit_message(payee_key: Address, channel: Address, voucher: &SignedVoucher) -> Message {
    submit_message_with(payee_key, channel, voucher, Vec::new())
}

/// The `UpdateChannelState` message a payee sends to redeem `voucher` with `secret`.
pub fn submit_message_with(
    payee_key: Address,
    channel: Address,
    voucher: &SignedVoucher,
    secret: Vec<u8>,
) -> Message {
    let params = UpdateChannelStateParams { sv: voucher.clone(), secret };
    Message::new(
        payee_key,
        channel,
        0,
        TokenAmount::default(),
        paych_method::UPDATE_CHANNEL_STATE,
        fvm_ipld_encoding::to_vec(&params).unwrap(),
    )
}

/// Carries out `plan` on the devnet as the payee `payee_key` (signing with `wallet`): the
/// messages of each planned epoch are pushed together and mined in that epoch, in order.
/// Answers each message's exit code.
pub async fn carry_out(
    devnet: &Devnet,
    wallet: &dyn paych_core::wallet::Wallet,
    payee_key: Address,
    channel: Address,
    plan: &Plan,
) -> Vec<ExitCode> {
    carry_out_with(devnet, wallet, payee_key, channel, plan, &BTreeMap::new()).await
}

/// [`carry_out`], each conditional voucher submitted with its secret from `secrets`.
pub async fn carry_out_with(
    devnet: &Devnet,
    wallet: &dyn paych_core::wallet::Wallet,
    payee_key: Address,
    channel: Address,
    plan: &Plan,
    secrets: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> Vec<ExitCode> {
    let mut codes = Vec::new();
    let mut steps = plan.steps.iter().peekable();
    while let Some((_, epoch)) = steps.peek() {
        let epoch = *epoch;
        let head = devnet.head().await.unwrap();
        assert!(head < epoch, "the plan's epoch {epoch} has passed (head {head})");
        if head + 1 < epoch {
            devnet.mine((epoch - head - 1) as u64);
        }
        let mut cids = Vec::new();
        while let Some((voucher, _)) = steps.next_if(|(_, e)| *e == epoch) {
            let secret = secrets.get(&voucher.secret_hash).cloned().unwrap_or_default();
            let message = submit_message_with(payee_key, channel, voucher, secret);
            let signed = paych_core::chain::prepare_message(devnet, wallet, message).await.unwrap();
            cids.push(devnet.push(&signed).await.unwrap());
        }
        devnet.mine(1);
        for cid in cids {
            let lookup = devnet.search(&cid).await.unwrap().expect("a mined message's receipt");
            assert_eq!(lookup.epoch, epoch);
            codes.push(lookup.receipt.exit_code);
        }
    }
    codes
}

/// A payer and a payee (their managers on sled stores, settlers idle) with a channel between
/// them on a devnet that mines only when told.
pub struct World {
    pub net: paych_testkit::devnet::Net,
    pub payer: paych_testkit::devnet::Node,
    pub payee: paych_testkit::devnet::Node,
    /// The channel's robust address.
    pub ch: Address,
    /// The channel's ID address.
    pub id: Address,
}

/// A manager configuration whose settler never runs on its own: tests run it.
pub fn idle_settler() -> paych_core::manager::ManagerConfig {
    paych_core::manager::ManagerConfig {
        settler_interval: std::time::Duration::from_secs(24 * 3600),
        ..paych_testkit::devnet::test_config()
    }
}

impl World {
    /// A channel holding `balance` attoFIL; the payee holds 10 FIL for gas.
    pub async fn new(balance: u64) -> Self {
        Self::with_payee_funds(balance, 10).await
    }

    /// A channel holding `balance` attoFIL; the payee holds `payee_fil` FIL.
    pub async fn with_payee_funds(balance: u64, payee_fil: u64) -> Self {
        Self::with_payee(balance, payee_fil, idle_settler()).await
    }

    /// A channel holding `balance` attoFIL to a payee holding `payee_fil` FIL and running
    /// with `config`.
    pub async fn with_payee(
        balance: u64,
        payee_fil: u64,
        config: paych_core::manager::ManagerConfig,
    ) -> Self {
        let net = paych_testkit::devnet::Net::manual();
        let payer = net.node_with(10, idle_settler()).await;
        let payee = net.node_with(payee_fil, config).await;
        let ch = payer.open_channel(payee.addr, TokenAmount::from_atto(balance)).await;
        let id = net.devnet.lookup_id(&ch).await.unwrap().unwrap();
        World { net, payer, payee, ch, id }
    }

    /// An unsigned voucher on this channel (named by its robust address).
    pub fn voucher(&self, lane: u64, nonce: u64, amount: u64) -> SignedVoucher {
        SignedVoucher::new(self.ch, lane, nonce, TokenAmount::from_atto(amount))
    }

    /// `voucher` signed by the payer.
    pub fn signed(&self, voucher: SignedVoucher) -> SignedVoucher {
        self.payer.sign(voucher)
    }

    /// The payee adds `voucher` (asking no minimum delta).
    pub async fn add(
        &self,
        voucher: &SignedVoucher,
    ) -> Result<paych_core::manager::AddOutcome, paych_core::manager::AddVoucherError> {
        self.payee.m().voucher_add(&self.ch, voucher, TokenAmount::default()).await
    }

    /// The head epoch.
    pub async fn head(&self) -> ChainEpoch {
        self.net.devnet.head().await.unwrap()
    }

    /// Every voucher the payee holds on the channel, under either of its addresses.
    pub fn held(&self) -> Vec<SignedVoucher> {
        held_by(self.payee.m(), &[self.ch, self.id])
    }

    /// What the payee can be paid with what it holds.
    pub async fn redeemable(&self) -> Plan {
        let held = self.held();
        redeemable(&view_of(&self.net.devnet, &self.ch, &held).await, &held)
    }

    /// Mines `n` epochs once every message both managers recorded is in the pool, then waits
    /// until both have recorded every message that executed.
    pub async fn mine(&self, n: u64) {
        for node in [&self.payer, &self.payee] {
            pushed(node.m()).await;
        }
        self.net.mine(n);
        for node in [&self.payer, &self.payee] {
            settle_landed(&self.net.devnet, node.m()).await;
        }
    }

    /// The payer settles the channel and the settle lands; answers `settling_at`.
    pub async fn payer_settles(&self) -> ChainEpoch {
        self.payer.m().settle(&self.ch).await.unwrap();
        self.mine(1).await;
        let state = self.net.devnet.channel(&self.ch).await.unwrap().state;
        assert_ne!(state.settling_at, 0, "the settle landed");
        state.settling_at
    }

    /// `epochs` pass (a time lock runs out), the payer settles and the payee's settler looks
    /// three times.
    pub async fn lock_runs_out_and_payer_settles(&self, epochs: u64) {
        self.mine(epochs).await;
        self.payer_settles().await;
        self.settler_passes(3).await;
    }

    /// The payee's settler looks `passes` times, an epoch mined after each look.
    pub async fn settler_passes(&self, passes: usize) {
        for _ in 0..passes {
            self.payee.m().settler_pass().await.unwrap();
            self.mine(1).await;
        }
    }

    /// The channel's `to_send` on chain.
    pub async fn to_send(&self) -> TokenAmount {
        self.net.devnet.channel(&self.ch).await.unwrap().state.to_send
    }
}

/// Every voucher `manager` holds on the channel, under any of `addresses` (deduplicated).
pub fn held_by(
    manager: &paych_core::manager::PaymentChannelManager,
    addresses: &[Address],
) -> Vec<SignedVoucher> {
    let mut held: Vec<SignedVoucher> = Vec::new();
    for addr in addresses {
        if let Ok(vouchers) = manager.voucher_list(addr) {
            for v in vouchers {
                if !held.contains(&v) {
                    held.push(v);
                }
            }
        }
    }
    held
}

/// Waits until every message `manager` recorded has reached the message pool — one its
/// background settler sends (it runs once at each start) too. On a real chain the next block
/// comes epochs later; here it is mined at once, and a message pushed after it would land an
/// epoch late, or after its voucher's lock.
pub async fn pushed(manager: &paych_core::manager::PaymentChannelManager) {
    use paych_core::store::MessageState;
    let store = manager.store().clone();
    paych_testkit::deadline::eventually("recorded messages to be pushed", || {
        let store = store.clone();
        async move {
            let messages = store.messages().unwrap();
            !messages.iter().any(|m| m.state == MessageState::Recorded)
        }
    })
    .await;
}

/// Waits until `manager` has recorded every one of its messages the devnet executed.
pub async fn settle_landed(devnet: &Devnet, manager: &paych_core::manager::PaymentChannelManager) {
    use paych_core::store::MessageState;
    for message in manager.store().messages().unwrap() {
        let in_flight = matches!(message.state, MessageState::Recorded | MessageState::Pushed);
        if in_flight && devnet.search(&message.cid).await.unwrap().is_some() {
            paych_testkit::deadline::within(
                "a landed message to be recorded",
                manager.wait_message(&message.cid),
            )
            .await
            .unwrap();
        }
    }
}

/// What an answer to `voucher_add` credits: an accepted voucher's delta; nothing else.
pub fn credit(
    outcome: &Result<paych_core::manager::AddOutcome, paych_core::manager::AddVoucherError>,
) -> TokenAmount {
    match outcome {
        Ok(paych_core::manager::AddOutcome::Accepted { delta }) => delta.clone(),
        _ => TokenAmount::default(),
    }
}

/// One line per voucher, for failure messages: its lane, nonce, amount and every condition
/// it carries (the signature left out).
pub fn describe(vouchers: &[SignedVoucher]) -> String {
    let mut out = String::new();
    for v in vouchers {
        out.push_str(&format!(
            "  {} lane {} nonce {} amount {}",
            v.channel_addr,
            v.lane,
            v.nonce,
            v.amount.atto()
        ));
        if !v.merges.is_empty() {
            let merges: Vec<(u64, u64)> = v.merges.iter().map(|m| (m.lane, m.nonce)).collect();
            out.push_str(&format!(" merges {merges:?}"));
        }
        if v.time_lock_min != 0 {
            out.push_str(&format!(" time_lock_min {}", v.time_lock_min));
        }
        if v.time_lock_max != 0 {
            out.push_str(&format!(" time_lock_max {}", v.time_lock_max));
        }
        if v.min_settle_height != 0 {
            out.push_str(&format!(" min_settle_height {}", v.min_settle_height));
        }
        if !v.secret_hash.is_empty() {
            out.push_str(" secret_hash");
        }
        if let Some(extra) = &v.extra {
            out.push_str(&format!(" extra {}.{}", extra.actor, extra.method));
        }
        out.push('\n');
    }
    out
}

/// A plan, one line per message with its epoch.
pub fn describe_plan(plan: &Plan) -> String {
    let mut out = format!("to_send {}\n", plan.to_send.atto());
    for (v, epoch) in &plan.steps {
        out.push_str(&format!("  at {epoch}:{}", describe(std::slice::from_ref(v))));
    }
    out
}
