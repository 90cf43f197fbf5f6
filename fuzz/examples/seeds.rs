//! Writes the seed corpus of every fuzz target under `fuzz/corpus/<target>/`: real
//! encodings of each format, from the golden vectors (`core/tests/vectors/`) and from values
//! built with the project's own types and keys. Run it again after a format changes:
//!
//! ```sh
//! cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds
//! ```
//!
//! File names say what each seed is; the output is deterministic (fixed keys, no clock).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cid::Cid;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use paych_core::chain::Receipt;
use paych_core::combine::ReconcileStatus;
use paych_core::crypto::{self, SecretKey};
use paych_core::invoice::{payment_hash, Hub, Invoice};
use paych_core::jsonrpc::{RpcError, RpcResponse};
use paych_core::lotus_json::{
    self as json, Actor, ActorState, BigInt, BlockHeader, InvocResult, MsgLookup, TipSet,
};
use paych_core::types::{
    cid_of, Address, ConstructorParams, ExecParams, ExecReturn, ExitCode, Merge, Message,
    ModVerifyParams, Network, PaychState, SignedVoucher, TokenAmount,
};
use paych_node::rpc::auth::{self, Permission};
use paych_protocol::{
    Announce, Manifest, ReconcileRequest, ReconcileResponse, RetrievalRequest, RetrievalResponse,
    RetrievalStatus, RouteReplacement, RouteRequest, RouteResponse, RouteStatus, SignedPeerRecord,
    VoucherRequest, VoucherResponse, VoucherStatus,
};
use serde_json::{json, Value};
// Linked for the coverage callbacks the fuzz build instruments every crate with, so that the
// seeds build with the fuzz targets' flags and reuse their build.
use libfuzzer_sys as _;

const VECTORS: &str = include_str!("../../core/tests/vectors/paych-vectors.json");
const API_SECRET: [u8; auth::SECRET_LEN] = [42; auth::SECRET_LEN];

struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn put(&self, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(name), bytes).expect("seed written");
    }

    /// A seed whose first byte picks the type.
    fn put_kind(&self, target: &str, name: &str, kind: u8, bytes: impl AsRef<[u8]>) {
        let mut seed = vec![kind];
        seed.extend_from_slice(bytes.as_ref());
        self.put(target, name, seed);
    }
}

fn key(n: u8) -> SecretKey {
    crypto::secret_key(&[n; 32]).expect("a key")
}

fn address_of(secret: &SecretKey) -> Address {
    crypto::secp_address(&crypto::public_key(secret))
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn vector_vouchers(vectors: &Value) -> Vec<(String, SignedVoucher)> {
    vectors["vouchers"]
        .as_array()
        .expect("vouchers")
        .iter()
        .map(|v| {
            let name = v["name"].as_str().expect("name").to_owned();
            let cbor = hex(v["signed_voucher_cbor_hex"].as_str().expect("cbor"));
            (name, SignedVoucher::from_cbor(&cbor).expect("a vector decodes"))
        })
        .collect()
}

fn peer_record(secret: &SecretKey) -> SignedPeerRecord {
    let peer = PeerId::from(Keypair::ed25519_from_bytes([5; 32]).expect("ed25519").public());
    let addrs: Vec<Multiaddr> = vec![
        "/ip4/127.0.0.1/tcp/4001".parse().expect("multiaddr"),
        "/ip6/::1/udp/4001/quic-v1".parse().expect("multiaddr"),
    ];
    SignedPeerRecord::new(secret, &peer, &addrs, 7).expect("a peer record")
}

/// Invoices in both forms (mode byte 0: CBOR, 1: text): no hubs, four hubs, unsigned.
fn invoice_seeds(corpus: &Corpus, payee: &SecretKey) {
    let hub = |n: u8| Hub {
        address: Address::new_id(1000 + u64::from(n)),
        multiaddr: format!(
            "/ip4/127.0.0.{n}/tcp/4001/p2p/{}",
            PeerId::from(Keypair::ed25519_from_bytes([n; 32]).expect("a key").public())
        ),
    };
    let mut invoice = Invoice {
        id: [7; 16],
        amount: TokenAmount::from_atto(1_000_000u64),
        payment_hash: payment_hash(&[9; 32]),
        payee: address_of(payee),
        hubs: Vec::new(),
        expiry: 1_800_000_000,
        payee_margin: 160,
        signature: None,
    };
    corpus.put_kind("invoice", "unsigned_cbor", 0, invoice.to_cbor().expect("cbor"));
    invoice.sign(payee).expect("signed");
    corpus.put_kind("invoice", "no_hubs_cbor", 0, invoice.to_cbor().expect("cbor"));
    corpus.put_kind("invoice", "no_hubs_text", 1, invoice.to_text().expect("text"));
    invoice.hubs = (1..=4).map(hub).collect();
    invoice.sign(payee).expect("signed");
    corpus.put_kind("invoice", "four_hubs_cbor", 0, invoice.to_cbor().expect("cbor"));
    corpus.put_kind("invoice", "four_hubs_text", 1, invoice.to_text().expect("text"));
}

/// The watchtower's reading of `UpdateChannelState` parameters: the vectors' (flags 0 to 3:
/// robust or ID address, every hash wanted or few), and a conditional voucher's redemption
/// with its 32-byte secret.
fn watch_seeds(corpus: &Corpus, vectors: &Value) {
    for (i, v) in vectors["vouchers"].as_array().expect("vouchers").iter().enumerate() {
        let params = hex(v["update_channel_state_params_hex"].as_str().expect("params"));
        let flags = u8::try_from(i % 4).expect("small");
        corpus.put_kind("watch_secrets", &format!("update_channel_state_{i}"), flags, params);
    }
    let secret = [7u8; 32];
    let mut sv = SignedVoucher::new(
        Address::new_actor(b"watched channel"),
        3,
        9,
        TokenAmount::from_atto(10),
    );
    sv.secret_hash = crypto::blake2b_256(&secret).to_vec();
    let params = paych_core::types::UpdateChannelStateParams { sv, secret: secret.to_vec() };
    let params = fvm_ipld_encoding::to_vec(&params).expect("cbor");
    corpus.put_kind("watch_secrets", "conditional_redemption", 0, params);
}

/// `/paych/route/1.0.0` messages (mode byte 0: a request, 1: a response): an offer of a
/// conditional voucher with its signed invoice, its replacement, a policy request; a
/// fulfilled offer, a policy, a 300-byte pre-image, and a refusal of each status.
fn route_seeds(corpus: &Corpus, payer: &SecretKey, payee: &SecretKey, channel: Address) {
    let secret = [9u8; 32];
    let hash = payment_hash(&secret);
    let mut invoice = Invoice {
        id: [3; 16],
        amount: TokenAmount::from_atto(1_000_000u64),
        payment_hash: hash,
        payee: address_of(payee),
        hubs: Vec::new(),
        expiry: 1_800_000_000,
        payee_margin: 160,
        signature: None,
    };
    invoice.sign(payee).expect("signed");
    let sign = |mut voucher: SignedVoucher| {
        voucher.signature = Some(crypto::sign(payer, &voucher.signing_bytes().expect("bytes")));
        voucher
    };
    let mut conditional = SignedVoucher::new(channel, 2, 5, TokenAmount::from_atto(1_001_000u64));
    conditional.secret_hash = hash.to_vec();
    conditional.time_lock_max = 2_000;
    let offer = RouteRequest::Offer {
        invoice: invoice.to_cbor().expect("invoice"),
        voucher: sign(conditional),
    };
    let replacement = sign(SignedVoucher::new(channel, 2, 6, TokenAmount::from_atto(1_001_000u64)));
    let replace =
        RouteRequest::Replace { payment_hash: hash.to_vec(), voucher: replacement.clone() };
    let other = sign(SignedVoucher::new(channel, 3, 2, TokenAmount::from_atto(2_002_000u64)));
    let replace_many = RouteRequest::ReplaceMany {
        replacements: vec![
            RouteReplacement { payment_hash: hash.to_vec(), voucher: replacement },
            RouteReplacement { payment_hash: vec![0x44; 32], voucher: other },
        ],
    };
    for (name, request) in [
        ("offer", offer),
        ("replace", replace),
        ("policy", RouteRequest::Policy),
        ("replace_many", replace_many),
    ] {
        corpus.put_kind("route", name, 0, request.to_cbor().expect("route request"));
    }
    let answers = [
        ("fulfilled", RouteResponse::fulfilled(secret.to_vec())),
        ("replaced", RouteResponse::ok()),
        ("policy", RouteResponse::policy(vec![0x82; 120])),
        ("long_pre_image", RouteResponse::fulfilled(vec![9; 300])),
    ];
    for (name, response) in answers {
        corpus.put_kind("route", name, 1, response.to_cbor().expect("route response"));
    }
    for status in RouteStatus::ALL.into_iter().filter(|s| !s.is_ok()) {
        let refusal = RouteResponse::refused(status, status.name());
        let name = format!("refused_{}", status.label());
        corpus.put_kind("route", &name, 1, refusal.to_cbor().expect("route response"));
    }
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let corpus = Corpus { root };
    let vectors: Value = serde_json::from_str(VECTORS).expect("vectors");
    let vouchers = vector_vouchers(&vectors);
    let payer = key(1);
    let payee = key(2);
    let (payer_addr, payee_addr) = (address_of(&payer), address_of(&payee));
    let channel = Address::new_id(1001);

    // Vouchers: CBOR and text, straight from the vectors.
    for v in vectors["vouchers"].as_array().expect("vouchers") {
        let name = v["name"].as_str().expect("name");
        corpus.put("voucher_cbor", name, hex(v["signed_voucher_cbor_hex"].as_str().expect("hex")));
        corpus.put("voucher_text", name, v["signed_voucher_base64url"].as_str().expect("text"));
    }

    invoice_seeds(&corpus, &payee);
    route_seeds(&corpus, &payer, &payee, channel);

    // The actor's other CBOR types.
    let message_cbor = hex(vectors["message"]["cbor_hex"].as_str().expect("message"));
    let message = Message::from_cbor(&message_cbor).expect("the vector message decodes");
    let signed = crypto::sign_message(&payer, message.clone()).expect("signed");
    let lanes = cid_of(b"lane states");
    let state = PaychState {
        from: Address::new_id(100),
        to: Address::new_id(101),
        to_send: TokenAmount::from_atto(42),
        settling_at: 2880,
        min_settle_height: 0,
        lane_states: lanes,
    };
    let enc = |v: &dyn erased::Cbor| v.cbor();
    corpus.put_kind("chain_cbor", "message", 0, &message_cbor);
    corpus.put_kind("chain_cbor", "signed_message", 1, signed.to_cbor().expect("cbor"));
    corpus.put_kind("chain_cbor", "paych_state", 2, enc(&state));
    corpus.put_kind(
        "chain_cbor",
        "lane_state",
        3,
        hex(vectors["lane_state"]["cbor_hex"].as_str().expect("lane")),
    );
    for (i, v) in vectors["vouchers"].as_array().expect("vouchers").iter().enumerate() {
        let params = hex(v["update_channel_state_params_hex"].as_str().expect("params"));
        corpus.put_kind("chain_cbor", &format!("update_channel_state_{i}"), 4, params);
    }
    watch_seeds(&corpus, &vectors);
    let constructor = ConstructorParams { from: payer_addr, to: payee_addr };
    corpus.put_kind("chain_cbor", "constructor_params", 5, enc(&constructor));
    let exec = ExecParams { code_cid: lanes, constructor_params: enc(&constructor) };
    corpus.put_kind("chain_cbor", "exec_params", 6, enc(&exec));
    let exec_return =
        ExecReturn { id_address: channel, robust_address: Address::new_actor(b"channel") };
    corpus.put_kind("chain_cbor", "exec_return", 7, enc(&exec_return));

    // /paych/voucher/1.0.0.
    for (name, v) in &vouchers {
        corpus.put(
            "voucher_request",
            name,
            VoucherRequest::new(v.clone()).to_cbor().expect("request"),
        );
    }
    let mut first = VoucherRequest::new(vouchers[0].1.clone());
    first.flow = Some(b"retrieval-1".to_vec());
    first.announce = Some(Box::new(Announce {
        channel,
        from: payer_addr,
        to: payee_addr,
        peer_record: peer_record(&payer),
    }));
    corpus.put("voucher_request", "with_flow_and_announce", first.to_cbor().expect("request"));
    let amount = TokenAmount::from_atto;
    let responses = [
        ("accepted", VoucherResponse::accepted(amount(5), amount(25))),
        ("covered", VoucherResponse::covered(amount(25))),
        (
            "refused",
            VoucherResponse::new(
                VoucherStatus::StaleNonce,
                amount(0),
                amount(25),
                Some("stale nonce".into()),
            ),
        ),
    ];
    for (name, r) in responses {
        corpus.put("voucher_response", name, r.to_cbor().expect("response"));
    }

    // /paych/reconcile/2.0.0.
    let lanes_vouchers: Vec<SignedVoucher> = (0..3u64)
        .map(|lane| {
            let mut v = SignedVoucher::new(channel, lane, 2, amount(100 * (lane + 1)));
            v.signature = Some(crypto::sign(&payer, &v.signing_bytes().expect("bytes")));
            v
        })
        .collect();
    let request = ReconcileRequest {
        vouchers: lanes_vouchers,
        req_val: amount(600),
        payee_record: peer_record(&payee),
    };
    corpus.put("reconcile_request", "three_lanes", request.to_cbor().expect("request"));
    let mut combined = SignedVoucher::new(channel, 0, 3, amount(600));
    combined.merges = vec![Merge { lane: 1, nonce: 3 }, Merge { lane: 2, nonce: 3 }];
    combined.signature = Some(crypto::sign(&payer, &combined.signing_bytes().expect("bytes")));
    corpus.put(
        "reconcile_response",
        "success",
        ReconcileResponse::success(combined.clone()).to_cbor().expect("response"),
    );
    corpus.put(
        "reconcile_response",
        "refused",
        ReconcileResponse::refused(ReconcileStatus::LaneNotOnChain, "lane 2 is not on chain")
            .to_cbor()
            .expect("response"),
    );

    // /paych/retrieval/2.0.0.
    let blob: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    let manifest = Manifest::of(&blob, 1000, amount(7), payee_addr).expect("manifest");
    let root: [u8; 32] = manifest.root.clone().try_into().expect("32 bytes");
    corpus.put(
        "retrieval_request",
        "manifest",
        RetrievalRequest::manifest(root).to_cbor().expect("request"),
    );
    corpus.put(
        "retrieval_request",
        "chunk",
        RetrievalRequest::chunk(root, 1, channel, b"flow".to_vec()).to_cbor().expect("request"),
    );
    let retrieval_responses = [
        ("manifest", RetrievalResponse::manifest(manifest.clone())),
        ("chunk", RetrievalResponse::chunk(blob[..1000].to_vec())),
        ("refused", RetrievalResponse::refused(RetrievalStatus::PaymentRequired, "pay first")),
    ];
    for (name, r) in retrieval_responses {
        corpus.put("retrieval_response", name, r.to_cbor().expect("response"));
    }

    // Signed peer records and announces.
    let record = peer_record(&payer);
    corpus.put_kind("peer_record", "signed_peer_record", 0, record.to_cbor().expect("record"));
    let announce = Announce { channel, from: payer_addr, to: payee_addr, peer_record: record };
    corpus.put_kind("peer_record", "announce", 1, announce.to_cbor().expect("announce"));

    // Lotus JSON.
    let net = Network::Testnet;
    let text = |v: &dyn erased::Json| v.json(net);
    for (name, v) in &vouchers {
        corpus.put_kind("lotus_json", &format!("voucher_{name}"), 0, text(v));
    }
    corpus.put_kind("lotus_json", "message", 1, text(&message));
    // A value one bit longer than a Filecoin big integer can carry: refused when read.
    let mut too_long = json::to_value(&message, net).expect("message");
    too_long["Value"] = json!((BigInt::from(1u8) << 1016usize).to_string());
    corpus.put_kind("lotus_json", "message_value_over_128_bytes", 1, too_long.to_string());
    corpus.put_kind("lotus_json", "signed_message", 2, text(&signed));
    corpus.put_kind("lotus_json", "paych_state", 3, text(&state));
    let actor = Actor { code: lanes, head: lanes, nonce: 3, balance: amount(1000) };
    corpus.put_kind("lotus_json", "actor", 4, text(&actor));
    let state_json = json::to_value(&state, net).expect("state");
    let actor_state = ActorState { balance: amount(1000), code: lanes, state: state_json };
    corpus.put_kind("lotus_json", "actor_state", 5, text(&actor_state));
    let block = BlockHeader {
        miner: Address::new_id(1000),
        parents: vec![lanes],
        parent_weight: BigInt::from(12345),
        height: 42,
        parent_state_root: lanes,
        parent_message_receipts: lanes,
        messages: lanes,
        timestamp: 1_700_000_000,
        parent_base_fee: amount(100),
    };
    let tipset = TipSet { cids: vec![lanes], blocks: vec![block], height: 42 };
    corpus.put_kind("lotus_json", "tipset", 6, text(&tipset));
    let receipt = Receipt {
        exit_code: ExitCode::new(0),
        return_data: vec![0x82, 0x01, 0x02],
        gas_used: 1234,
    };
    corpus.put_kind("lotus_json", "receipt", 7, text(&receipt));
    let lookup =
        MsgLookup { message: lanes, receipt: receipt.clone(), tipset: vec![lanes], height: 42 };
    corpus.put_kind("lotus_json", "msg_lookup", 8, text(&lookup));
    let invoc = InvocResult {
        msg: Some(message.clone()),
        receipt: Some(receipt),
        error: String::new(),
        duration: Duration::from_micros(150),
    };
    corpus.put_kind("lotus_json", "invoc_result", 9, text(&invoc));
    let codes: BTreeMap<String, Cid> = [("paymentchannel".to_owned(), lanes)].into();
    corpus.put_kind("lotus_json", "actor_code_cids", 10, text(&codes));
    corpus.put_kind("lotus_json", "cid", 11, text(&lanes));
    corpus.put_kind("lotus_json", "address", 12, text(&payer_addr));
    corpus.put_kind("lotus_json", "amount", 13, text(&amount(1_000_000_000_000_000_000)));
    if let Some(signature) = &vouchers[0].1.signature {
        corpus.put_kind("lotus_json", "signature", 14, text(signature));
    }
    let extra = ModVerifyParams { actor: Address::new_id(1002), method: 2, data: vec![1, 2, 3] };
    corpus.put_kind("lotus_json", "extra", 15, text(&extra));
    let ok = RpcResponse { id: json!(1), outcome: Ok(json!({"Height": 42})) };
    let err = RpcResponse { id: json!(2), outcome: Err(RpcError::new(-32000, "refused")) };
    for (name, r) in [("rpc_result", ok), ("rpc_error", err)] {
        corpus.put_kind("lotus_json", name, 16, serde_json::to_string(&r).expect("response"));
    }

    // API tokens: issued tokens (mode 0), and header ‖ 0xff ‖ claims to be signed (mode 1).
    for level in Permission::ALL {
        corpus.put_kind(
            "api_token",
            &format!("issued_{level}"),
            0,
            auth::issue(&API_SECRET, &level.up_to()),
        );
        let mut parts = br#"{"alg":"HS256","typ":"JWT"}"#.to_vec();
        parts.push(0xff);
        parts.extend_from_slice(format!(r#"{{"Allow":["{level}"]}}"#).as_bytes());
        corpus.put_kind("api_token", &format!("claims_{level}"), 1, parts);
    }
    let forged = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"Allow":["admin"]}"#)
    );
    corpus.put_kind("api_token", "alg_none", 0, forged);

    // API requests (first byte: 0 none, 1 read, 2 write, 3 a bad token).
    let ch = json::to_value(&channel, net).expect("address");
    let from = json::to_value(&payer_addr, net).expect("address");
    let to = json::to_value(&payee_addr, net).expect("address");
    let voucher = json::to_value(&vouchers[3].1, net).expect("voucher");
    let calls: Vec<(&str, Value)> = vec![
        ("PaychStatus", json!([ch])),
        ("PaychList", json!([])),
        ("PaychLookup", json!([from, to])),
        ("PaychVoucherCheckValid", json!([ch, voucher])),
        ("PaychVoucherCheckSpendable", json!([ch, voucher, null, null])),
        ("PaychVoucherAdd", json!([ch, voucher, null, "0"])),
        ("PaychVoucherList", json!([ch])),
        ("PaychVoucherBestSpendable", json!([ch])),
        ("PaychReleaseFunds", json!([ch, "10"])),
        ("PaychGetWaitReady", json!([{"/": lanes.to_string()}])),
        ("PaychReconcile", json!([ch])),
        ("PaychRetrievalPublish", json!([{"Data": "AAEC", "ChunkSize": 2, "PricePerChunk": "1"}])),
        (
            "NetConnect",
            json!([{"ID": PeerId::from(Keypair::ed25519_from_bytes([5; 32]).expect("key").public()).to_string(), "Addrs": ["/ip4/127.0.0.1/tcp/1"]}]),
        ),
        ("WalletHas", json!([from])),
        ("WalletBalance", json!([from])),
        ("WalletList", json!([])),
        ("PaychCreate", json!([from, to, "100"])),
    ];
    for (i, (method, params)) in calls.iter().enumerate() {
        let body = json!({"jsonrpc": "2.0", "id": i, "method": format!("Filecoin.{method}"), "params": params});
        corpus.put_kind("api_request", method, 2, body.to_string());
    }
    corpus.put_kind(
        "api_request",
        "notification",
        1,
        r#"{"jsonrpc":"2.0","method":"Filecoin.PaychList"}"#,
    );
    corpus.put_kind(
        "api_request",
        "batch",
        0,
        r#"[{"jsonrpc":"2.0","id":1,"method":"Filecoin.PaychList"}]"#,
    );
    corpus.put_kind(
        "api_request",
        "bad_token",
        3,
        r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.PaychList"}"#,
    );

    // The voucher intake takes structured input (`arbitrary`): a few byte patterns to start.
    for (name, bytes) in [
        ("zeros", vec![0u8; 64]),
        ("ones", vec![1u8; 128]),
        ("ramp", (0..=255u8).collect::<Vec<_>>()),
    ] {
        corpus.put("voucher_intake", name, bytes);
    }
    println!("seed corpus written to {}", corpus.root.display());
}

/// Encoders as trait objects, so that one closure writes every type.
mod erased {
    use paych_core::lotus_json::{self as json, LotusJson};
    use paych_core::types::Network;

    pub trait Cbor {
        fn cbor(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Cbor for T {
        fn cbor(&self) -> Vec<u8> {
            fvm_ipld_encoding::to_vec(self).expect("encodes")
        }
    }

    pub trait Json {
        fn json(&self, network: Network) -> String;
    }

    impl<T: LotusJson> Json for T {
        fn json(&self, network: Network) -> String {
            json::to_string(self, network).expect("writes")
        }
    }
}
