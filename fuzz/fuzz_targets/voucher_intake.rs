//! The payee's voucher intake: `PaymentChannelManager::voucher_add` fed with vouchers built
//! from fuzz bytes, on a real devnet with real payer and payee nodes.
//!
//! The world is built once per process: a devnet that mines only on demand (so the head
//! never moves while fuzzing), a payer and a payee with secp256k1 keys, and three channels
//! from the payer to the payee — `open` (1000 attoFIL), `small` (600 attoFIL) and `settling`
//! (500 attoFIL, settled by the payer) — plus one from the payee to the payer (`reverse`).
//!
//! Each input is a sequence of up to [`MAX_VOUCHERS`] vouchers, every field chosen by the
//! fuzzer: the channel named in the call and in the voucher (robust or ID address, another
//! channel, no channel at all), lane, nonce, amount (small, huge or negative), time locks and
//! `min_settle_height` around the head, secret hash, `extra`, merges, the minimum delta, and
//! the signature (the payer's key, the payee's, a stranger's, the payer's with a flipped byte,
//! raw bytes, none). A voucher may also be a re-send of an earlier one. Each input starts a
//! fresh payee manager on an empty store, so every input replays on its own.
//!
//! Checked: intake never panics; per on-chain channel, the deltas the payee accepts add up to
//! no more than the channel's balance, whichever addresses name it; a voucher the payee
//! already accepted is never credited again; and a refusal is the voucher's fault, never a
//! failure of the payee's own store, chain or wallet (which all work here).
//!
//! With `PAYCH_FUZZ_DEBUG` set, each call and its outcome is printed (to see what an input
//! does: `PAYCH_FUZZ_DEBUG=1 cargo +nightly fuzz run voucher_intake <input>`).
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use fvm_shared::bigint::{BigInt, Sign};
use libfuzzer_sys::fuzz_target;
use paych_core::chain::Chain;
use paych_core::crypto::{self, SecretKey};
use paych_core::manager::{AddOutcome, AddVoucherError, PaymentChannelManager};
use paych_core::store::sled::SledStore;
use paych_core::types::{
    Address, ChainEpoch, Merge, ModVerifyParams, Signature, SignatureType, SignedVoucher,
    TokenAmount,
};
use paych_core::wallet::Wallet;
use paych_fuzz::on_a_manual_net;
use paych_testkit::amounts::atto;
use paych_testkit::devnet::{test_config, Net, Node};

/// The most vouchers one input feeds.
const MAX_VOUCHERS: usize = 8;
/// The most merges one voucher carries.
const MAX_MERGES: usize = 4;

/// A channel of the world and what the chain holds in it.
struct Channel {
    robust: Address,
    id: Address,
    balance: TokenAmount,
}

/// Built once per process.
struct World {
    runtime: tokio::runtime::Runtime,
    /// Kept alive for the devnet and the nodes' directories.
    _net: Net,
    payer: Node,
    payee: Node,
    stranger: SecretKey,
    /// `open`, `small`, `settling` (payer to payee), then `reverse` (payee to payer).
    channels: Vec<Channel>,
    head: ChainEpoch,
}

static WORLD: OnceLock<World> = OnceLock::new();

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let (runtime, (net, payer, payee, channels)) = on_a_manual_net(|net| async move {
            let (payer, payee) = net.pair(10, 10).await;
            let mut robust = Vec::new();
            for (from, to, amount) in
                [(&payer, &payee, 1000), (&payer, &payee, 600), (&payer, &payee, 500)]
            {
                robust.push((from.open_channel(to.addr, atto(amount)).await, amount));
            }
            robust.push((payee.open_channel(payer.addr, atto(400)).await, 400));
            let settle = payer.m().settle(&robust[2].0).await.expect("settle");
            net.mine_until_landed(payer.m(), &settle).await;
            let mut channels = Vec::new();
            for (robust, amount) in robust {
                let id = net.devnet.lookup_id(&robust).await.expect("lookup").expect("an ID");
                channels.push(Channel { robust, id, balance: atto(amount) });
            }
            // Nothing runs in the background while fuzzing: the head stays where it is.
            payer.m().shutdown().await.expect("payer shutdown");
            payee.m().shutdown().await.expect("payee shutdown");
            (net, payer, payee, channels)
        });
        let head = runtime.block_on(net.devnet.head()).expect("head");
        World {
            runtime,
            _net: net,
            payer,
            payee,
            stranger: crypto::secret_key(&[9; 32]).expect("a key"),
            channels,
            head,
        }
    })
}

/// Which address a voucher or a call names.
#[derive(Debug, Arbitrary)]
enum ChannelRef {
    Robust(u8),
    Id(u8),
    /// An actor address the chain does not know.
    Unknown,
    /// Any address bytes (only used where an address is carried, not where one is called).
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Lane {
    Small(u8),
    Any(u64),
}

#[derive(Debug, Arbitrary)]
enum Amount {
    Small(u16),
    Any(i128),
    /// A big-endian magnitude and a sign.
    Huge(bool, Vec<u8>),
}

/// An epoch: zero, near the head, or anything.
#[derive(Debug, Arbitrary)]
enum Epoch {
    Zero,
    Near(i16),
    Any(i64),
}

#[derive(Debug, Arbitrary)]
enum Signer {
    Payer,
    Payee,
    Stranger,
    /// The payer's signature with one byte flipped.
    PayerFlipped(u8),
    Raw(bool, Vec<u8>),
    None,
}

#[derive(Debug, Arbitrary)]
struct FuzzVoucher {
    /// The channel `voucher_add` is called for.
    call: ChannelRef,
    /// The voucher's `channel_addr`.
    addr: ChannelRef,
    lane: Lane,
    nonce: u8,
    big_nonce: Option<u64>,
    amount: Amount,
    time_lock_min: Epoch,
    time_lock_max: Epoch,
    min_settle_height: Epoch,
    secret_hash: Option<Vec<u8>>,
    extra: Option<(ChannelRef, u64, Vec<u8>)>,
    merges: Vec<(Lane, u8)>,
    signer: Signer,
    min_delta: u16,
}

#[derive(Debug, Arbitrary)]
enum Step {
    New(Box<FuzzVoucher>),
    /// Re-sends the n-th voucher sent so far, unchanged, to the same channel.
    Resend(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    steps: Vec<Step>,
}

impl World {
    /// The world channel an address names, if any.
    fn channel_of(&self, addr: &Address) -> Option<usize> {
        self.channels.iter().position(|c| &c.robust == addr || &c.id == addr)
    }

    fn address(&self, r: &ChannelRef) -> Address {
        let pick = |i: &u8| &self.channels[usize::from(*i) % self.channels.len()];
        match r {
            ChannelRef::Robust(i) => pick(i).robust,
            ChannelRef::Id(i) => pick(i).id,
            ChannelRef::Unknown => Address::new_actor(b"no such channel"),
            ChannelRef::Raw(bytes) => Address::from_bytes(bytes)
                .unwrap_or_else(|_| Address::new_id(u64::from(bytes.len() as u8))),
        }
    }

    fn epoch(&self, e: &Epoch) -> ChainEpoch {
        match e {
            Epoch::Zero => 0,
            Epoch::Near(d) => self.head.saturating_add(ChainEpoch::from(*d)),
            Epoch::Any(e) => *e,
        }
    }

    /// The signature of `node`'s key over the voucher; none when the voucher cannot be
    /// encoded (an amount longer than Filecoin allows), as no payer could sign it.
    fn sign(&self, node: &Node, voucher: &SignedVoucher) -> Option<Signature> {
        let bytes = voucher.signing_bytes().ok()?;
        Some(node.wallet.sign(&node.addr, &bytes).expect("the node's key signs"))
    }

    fn voucher(&self, f: &FuzzVoucher) -> SignedVoucher {
        let lane = |l: &Lane| match l {
            Lane::Small(n) => u64::from(*n % 4),
            Lane::Any(n) => *n,
        };
        let amount = match &f.amount {
            Amount::Small(n) => atto(u64::from(*n)),
            Amount::Any(n) => TokenAmount::from_atto(*n),
            Amount::Huge(negative, magnitude) => {
                let sign = if *negative { Sign::Minus } else { Sign::Plus };
                TokenAmount::from_atto(BigInt::from_bytes_be(sign, magnitude))
            }
        };
        let mut voucher = SignedVoucher {
            channel_addr: self.address(&f.addr),
            time_lock_min: self.epoch(&f.time_lock_min),
            time_lock_max: self.epoch(&f.time_lock_max),
            secret_hash: f.secret_hash.clone().unwrap_or_default(),
            extra: f.extra.as_ref().map(|(actor, method, data)| ModVerifyParams {
                actor: self.address(actor),
                method: *method,
                data: data.clone(),
            }),
            lane: lane(&f.lane),
            nonce: f.big_nonce.unwrap_or(u64::from(f.nonce)),
            amount,
            min_settle_height: self.epoch(&f.min_settle_height),
            merges: f
                .merges
                .iter()
                .take(MAX_MERGES)
                .map(|(l, nonce)| Merge { lane: lane(l), nonce: u64::from(*nonce) })
                .collect(),
            signature: None,
        };
        voucher.signature = match &f.signer {
            Signer::Payer => self.sign(&self.payer, &voucher),
            Signer::Payee => self.sign(&self.payee, &voucher),
            Signer::Stranger => {
                voucher.signing_bytes().ok().map(|bytes| crypto::sign(&self.stranger, &bytes))
            }
            Signer::PayerFlipped(at) => self.sign(&self.payer, &voucher).map(|mut signature| {
                let i = usize::from(*at) % signature.bytes.len();
                signature.bytes[i] ^= 1;
                signature
            }),
            Signer::Raw(bls, bytes) => Some(Signature {
                sig_type: if *bls { SignatureType::BLS } else { SignatureType::Secp256k1 },
                bytes: bytes.clone(),
            }),
            Signer::None => None,
        };
        voucher
    }
}

fuzz_target!(|input: Input| {
    let w = world();
    w.runtime.block_on(async {
        let store = Arc::new(SledStore::temporary().expect("a temporary store"));
        let payee = PaymentChannelManager::new(
            Arc::new(w.payee.net.clone()),
            w.payee.wallet.clone(),
            store,
            test_config(),
        );
        let mut credited: Vec<TokenAmount> = vec![TokenAmount::default(); w.channels.len()];
        // Everything sent so far, and whether it was accepted.
        let mut sent: Vec<(Address, SignedVoucher, u16, bool)> = Vec::new();
        for step in input.steps.iter().take(MAX_VOUCHERS) {
            let (call, voucher, min_delta, resend_of) = match step {
                Step::New(f) => {
                    let call = match &f.call {
                        ChannelRef::Raw(_) => w.address(&ChannelRef::Unknown),
                        other => w.address(other),
                    };
                    (call, w.voucher(f), f.min_delta, None)
                }
                Step::Resend(n) if !sent.is_empty() => {
                    let i = usize::from(*n) % sent.len();
                    let (call, voucher, min_delta, _) = sent[i].clone();
                    (call, voucher, min_delta, Some(i))
                }
                Step::Resend(_) => continue,
            };
            let outcome = payee.voucher_add(&call, &voucher, atto(u64::from(min_delta))).await;
            if std::env::var_os("PAYCH_FUZZ_DEBUG").is_some() {
                eprintln!(
                    "voucher_add({call}, lane {} nonce {}): {outcome:?}",
                    voucher.lane, voucher.nonce
                );
            }
            let accepted = match outcome {
                Ok(AddOutcome::Accepted { delta }) => {
                    assert!(!delta.is_negative(), "a negative delta: {delta:?}");
                    let channel = w
                        .channel_of(&call)
                        .expect("a voucher is accepted only on a channel the chain knows");
                    credited[channel] += delta;
                    assert!(
                        credited[channel] <= w.channels[channel].balance,
                        "the payee credited {:?} on a channel holding {:?}\n{:#?}",
                        credited[channel],
                        w.channels[channel].balance,
                        input
                    );
                    if let Some(i) = resend_of {
                        assert!(!sent[i].3, "a re-sent voucher was credited again: {voucher:?}");
                    }
                    true
                }
                Err(e @ (AddVoucherError::Store(_) | AddVoucherError::Chain(_))) => panic!(
                    "a voucher made the payee's own store, chain or wallet fail: {e}\n{voucher:?}"
                ),
                Ok(AddOutcome::Covered { .. } | AddOutcome::AlreadyHeld) | Err(_) => false,
            };
            match resend_of {
                Some(i) => sent[i].3 |= accepted,
                None => sent.push((call, voucher, min_delta, accepted)),
            }
        }
        let _ = payee.shutdown().await;
    });
});
