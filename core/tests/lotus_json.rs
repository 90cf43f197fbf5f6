//! Lotus JSON shapes: every shape written exactly as Lotus writes it, read back from Lotus's
//! own forms, and bad values refused with typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use cid::Cid;
use paych_core::chain::{MessageLookup, Receipt};
use paych_core::jsonrpc::{error_code, RpcError, RpcRequest, RpcResponse};
use paych_core::lotus_json::{
    self as json, Actor, ActorState, BigInt, BlockHeader, InvocResult, JsonError, MsgLookup,
    TipSet, TipSetKey,
};
use paych_core::types::{
    cid_of, Address, ExitCode, Merge, Message, ModVerifyParams, Network, PaychState, Signature,
    SignatureType, SignedMessage, SignedVoucher, TokenAmount,
};
use serde_json::{json, Value};

/// The golden vector `simple_lane0_nonce1_1FIL` (lane 0, nonce 1, 1 FIL on t01001).
const VOUCHER: &str = "i0MA6QcAAED2AAFJAA3gtrOnZAAAAIBYQgE2VQw-i10-Wh8MhWzNgp0p72vHLI787C7Ne7C0uEbvyRvw1FLqSSOyowC3r5hlzQLOQHuvoZosfb7DuKKl_oCFAQ";
const VOUCHER_SIG: &str =
    "NlUMPotdPlofDIVszYKdKe9rxyyO/OwuzXuwtLhG78kb8NRS6kkjsqMAt6+YZc0CzkB7r6GaLH2+w7iipf6AhQE=";
/// The golden vector `timelocks_secret_hash_min_settle`.
const VOUCHER_TIMELOCKS: &str = "i0MA6QcKGU4gWCBfEGOFv-7YTWH4ixdDGm8Bkg5LKLaBPROAxaNZBvBlhvYAAUkADeC2s6dkAAAZAfSAWEIBgFcSI6WY79zSviOyzEwHmRNRy1pbzvPKei68XeNE5nUMAicVZ6O5UmwGwEr9bgEnUHmg6xJra4SfpjKeqs_anwE";
/// The golden vector `merge_three_lanes_into_lane3`.
const VOUCHER_MERGES: &str = "i0MA6QcAAED2AwlJAEVjkYJE9AAAAIOCAAKCAQWCAgFYQgHj7qDndKyq-gJQyMMBRLluz4DCkzO18txay-l9XZsxVEUYmxzM6cDS3tor_qcN2-oZZqzcDRqG40Xom3o7nuTqAA";
/// The golden vector `with_extra_mod_verify_params`.
const VOUCHER_EXTRA: &str = "i0MA6QcAAECDQgBjAkMBAgMAAUkADeC2s6dkAAAAgFhCAQObkleVbVnSrEHAdOl3BDJjNOSzMPLCz2TOCuEi0XXhDXE455lV8iald8Erw1JI0agsR90Do0FPXg0WmXwme04B";

/// The golden message vector.
const MESSAGE_CBOR: &str = "8a004300e9075501dc4dbcefef43d2ceae099f14f7fe59ba7032c9fe0549001bc16d674ec800001a000f424044000186a0430003e80040";
const MESSAGE_CID: &str = "bafy2bzacebsdk4dacce56gl5dvwhrdfcjzjgx3lkl2dprw2gb4h6my5ddabcg";
const MESSAGE_SIG: &str =
    "PzOIRwwGdeZV44sFCzEVjVewZaVgDAqK+V4db2+EmtpmJm6hJp8ET1JlY3kXTu8NjnMKgdCbJL7AxLs14iU1WAA=";
const KEY_T: &str = "t13rg3z37pipjm5lqjt4kpp7szxjydfsp6uibur2q";
const KEY_F: &str = "f13rg3z37pipjm5lqjt4kpp7szxjydfsp6uibur2q";

fn message() -> Message {
    Message::from_cbor(&hex::decode(MESSAGE_CBOR).unwrap()).unwrap()
}

fn cid(text: &str) -> Cid {
    Cid::try_from(text).unwrap()
}

/// Checks that `value` is written exactly as `expected` and read back from it.
fn assert_written_and_read<T>(value: &T, expected: &str)
where
    T: json::LotusJson + PartialEq + std::fmt::Debug,
{
    assert_eq!(text(value), expected);
    assert_eq!(&json::from_str::<T>(expected).unwrap(), value);
}

fn text<T: json::LotusJson>(value: &T) -> String {
    json::to_string(value, Network::Testnet).unwrap()
}

fn some_cid(n: u8) -> Cid {
    cid_of(&[0x81, n])
}

// --- messages --------------------------------------------------------------------------

#[test]
fn message_is_written_as_lotus_writes_it() {
    let expected = format!(
        r#"{{"Version":0,"To":"t01001","From":"{KEY_T}","Nonce":5,"Value":"2000000000000000000","GasLimit":1000000,"GasFeeCap":"100000","GasPremium":"1000","Method":0,"Params":null,"CID":{{"/":"{MESSAGE_CID}"}}}}"#
    );
    assert_written_and_read(&message(), &expected);
}

#[test]
fn message_is_read_from_mainnet_addresses_empty_params_and_without_cid() {
    let lotus = format!(
        r#"{{"Version":0,"To":"f01001","From":"{KEY_F}","Nonce":5,"Value":"2000000000000000000","GasLimit":1000000,"GasFeeCap":"100000","GasPremium":"1000","Method":0,"Params":""}}"#
    );
    assert_eq!(json::from_str::<Message>(&lotus).unwrap(), message());
    let mainnet = json::to_value(&message(), Network::Mainnet).unwrap();
    assert_eq!(mainnet["From"], json!(KEY_F));
}

#[test]
fn message_params_are_standard_base64() {
    let mut m = message();
    m.method = 2;
    m.params = vec![0x82, 0xfb, 0xff];
    let value = json::to_value(&m, Network::Testnet).unwrap();
    assert_eq!(value["Params"], json!("gvv/"));
    assert_eq!(value["CID"], json!({"/": m.cid().unwrap().to_string()}));
    assert_eq!(json::from_value::<Message>(value).unwrap(), m);
}

#[test]
fn signed_message_carries_message_signature_and_cid() {
    let signed = SignedMessage {
        message: message(),
        signature: Signature {
            sig_type: SignatureType::Secp256k1,
            bytes: base64_decode(MESSAGE_SIG),
        },
    };
    let value = json::to_value(&signed, Network::Testnet).unwrap();
    let expected = json!({
        "Message": json::to_value(&message(), Network::Testnet).unwrap(),
        "Signature": {"Type": 1, "Data": MESSAGE_SIG},
        "CID": {"/": signed.cid().unwrap().to_string()},
    });
    assert_eq!(value, expected);
    assert!(signed.cid().unwrap().to_string().starts_with("bafy2bza"));
    assert_eq!(json::from_value::<SignedMessage>(value).unwrap(), signed);
}

/// A block holding one BLS and one secp256k1 message, as `ChainGetBlockMessages` answers.
fn block_messages() -> (Message, SignedMessage, Value) {
    let bls = Message { nonce: 9, ..message() };
    let signed = SignedMessage {
        message: message(),
        signature: Signature {
            sig_type: SignatureType::Secp256k1,
            bytes: base64_decode(MESSAGE_SIG),
        },
    };
    let shape = json::BlockMessagesJson::new(
        std::slice::from_ref(&bls),
        std::slice::from_ref(&signed),
        Network::Testnet,
    );
    (bls, signed, serde_json::to_value(shape.unwrap()).unwrap())
}

#[test]
fn block_messages_list_bls_then_signed_messages_with_their_cids() {
    let (bls, signed, value) = block_messages();
    let expected = json!({
        "BlsMessages": [json::to_value(&bls, Network::Testnet).unwrap()],
        "SecpkMessages": [json::to_value(&signed, Network::Testnet).unwrap()],
        "Cids": [
            {"/": bls.cid().unwrap().to_string()},
            {"/": signed.cid().unwrap().to_string()},
        ],
    });
    assert_eq!(value, expected);
    let shape: json::BlockMessagesJson = serde_json::from_value(value).unwrap();
    let messages = shape.messages().unwrap();
    let read: Vec<(Cid, Message)> = messages.into_iter().map(|m| (m.cid, m.message)).collect();
    assert_eq!(read, vec![(bls.cid().unwrap(), bls), (signed.cid().unwrap(), signed.message)]);
}

#[test]
fn block_messages_are_read_whatever_the_signature_type_and_with_null_lists() {
    let (_, signed, mut value) = block_messages();
    // A delegated (type 3) signature of an f4 sender: read, not interpreted.
    value["SecpkMessages"][0]["Signature"] = json!({"Type": 3, "Data": "AAAA"});
    value["BlsMessages"] = Value::Null;
    value["Cids"] = json!([{"/": signed.cid().unwrap().to_string()}]);
    let shape: json::BlockMessagesJson = serde_json::from_value(value).unwrap();
    let messages = shape.messages().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].message, signed.message);
    let empty = json!({"BlsMessages": null, "SecpkMessages": null, "Cids": null});
    let shape: json::BlockMessagesJson = serde_json::from_value(empty).unwrap();
    assert!(shape.messages().unwrap().is_empty());
}

#[test]
fn block_messages_with_cids_that_do_not_match_are_typed_errors() {
    let (bls, _, value) = block_messages();
    let read = |value: Value| {
        serde_json::from_value::<json::BlockMessagesJson>(value).unwrap().messages().unwrap_err()
    };
    let mut short = value.clone();
    short["Cids"].as_array_mut().unwrap().pop();
    assert!(matches!(read(short), JsonError::InvalidValue { field: "BlockMessages.Cids", .. }));
    let mut swapped = value.clone();
    swapped["Cids"].as_array_mut().unwrap().reverse();
    let err = read(swapped);
    assert!(matches!(err, JsonError::InvalidValue { field: "BlockMessages.Cids", .. }), "{err}");
    let mut bad = value.clone();
    bad["Cids"][1] = json!({"/": "not a cid"});
    assert!(matches!(read(bad), JsonError::InvalidCid { .. }));
    let one = json::to_value(&bls, Network::Testnet).unwrap();
    let too_many = json!({
        "BlsMessages": vec![one; json::MAX_BLOCK_MESSAGES + 1],
        "Cids": vec![json!({"/": bls.cid().unwrap().to_string()}); json::MAX_BLOCK_MESSAGES + 1],
    });
    assert!(matches!(read(too_many), JsonError::InvalidValue { field: "BlockMessages", .. }));
}

// --- vouchers --------------------------------------------------------------------------

#[test]
fn golden_voucher_is_written_as_lotus_writes_it() {
    let voucher = SignedVoucher::from_base64url(VOUCHER).unwrap();
    let expected = format!(
        r#"{{"ChannelAddr":"t01001","TimeLockMin":0,"TimeLockMax":0,"SecretHash":null,"Extra":null,"Lane":0,"Nonce":1,"Amount":"1000000000000000000","MinSettleHeight":0,"Merges":null,"Signature":{{"Type":1,"Data":"{VOUCHER_SIG}"}}}}"#
    );
    assert_eq!(text(&voucher), expected);
    let back = json::from_str::<SignedVoucher>(&expected).unwrap();
    assert_eq!(back.to_base64url().unwrap(), VOUCHER);
}

#[test]
fn voucher_is_read_with_empty_lists_and_bytes_as_lotus_may_send_them() {
    let lotus = format!(
        r#"{{"ChannelAddr":"f01001","TimeLockMin":0,"TimeLockMax":0,"SecretHash":"","Extra":null,"Lane":0,"Nonce":1,"Amount":"1000000000000000000","MinSettleHeight":0,"Merges":[],"Signature":{{"Type":1,"Data":"{VOUCHER_SIG}"}},"Unknown":true}}"#
    );
    let voucher = json::from_str::<SignedVoucher>(&lotus).unwrap();
    assert_eq!(voucher.to_base64url().unwrap(), VOUCHER);
}

#[test]
fn unsigned_voucher_has_a_null_signature() {
    let voucher = SignedVoucher::new(Address::new_id(1001), 2, 3, TokenAmount::from_atto(42));
    let value = json::to_value(&voucher, Network::Testnet).unwrap();
    assert_eq!(value["Signature"], Value::Null);
    assert_eq!(value["Amount"], json!("42"));
    assert_eq!(json::from_value::<SignedVoucher>(value).unwrap(), voucher);
}

#[test]
fn voucher_time_locks_secret_hash_merges_and_extra_round_trip() {
    let timelocks = SignedVoucher::from_base64url(VOUCHER_TIMELOCKS).unwrap();
    let value = json::to_value(&timelocks, Network::Testnet).unwrap();
    assert_eq!(value["TimeLockMin"], json!(10));
    assert_eq!(value["TimeLockMax"], json!(20000));
    assert_eq!(value["MinSettleHeight"], json!(500));
    assert_eq!(value["SecretHash"], json!("XxBjhb/u2E1h+IsXQxpvAZIOSyi2gT0TgMWjWQbwZYY="));
    let back = json::from_value::<SignedVoucher>(value).unwrap();
    assert_eq!(back.to_base64url().unwrap(), VOUCHER_TIMELOCKS);

    let merges = SignedVoucher::from_base64url(VOUCHER_MERGES).unwrap();
    let value = json::to_value(&merges, Network::Testnet).unwrap();
    assert_eq!(
        value["Merges"],
        json!([{"Lane": 0, "Nonce": 2}, {"Lane": 1, "Nonce": 5}, {"Lane": 2, "Nonce": 1}])
    );
    assert_eq!((value["Lane"].clone(), value["Nonce"].clone()), (json!(3), json!(9)));
    let back = json::from_value::<SignedVoucher>(value).unwrap();
    assert_eq!(back.merges[1], Merge { lane: 1, nonce: 5 });
    assert_eq!(back.to_base64url().unwrap(), VOUCHER_MERGES);

    let extra = SignedVoucher::from_base64url(VOUCHER_EXTRA).unwrap();
    let value = json::to_value(&extra, Network::Testnet).unwrap();
    assert_eq!(value["Extra"], json!({"Actor": "t099", "Method": 2, "Data": "AQID"}));
    let back = json::from_value::<SignedVoucher>(value).unwrap();
    assert_eq!(
        back.extra,
        Some(ModVerifyParams { actor: Address::new_id(99), method: 2, data: vec![1, 2, 3] })
    );
    assert_eq!(back.to_base64url().unwrap(), VOUCHER_EXTRA);
}

#[test]
fn amounts_beyond_u128_are_decimal_strings() {
    let big: BigInt = "340282366920938463463374607431768211456000".parse().unwrap();
    let v = SignedVoucher::new(Address::new_id(1001), 0, 1, TokenAmount::from_atto(big));
    let value = json::to_value(&v, Network::Testnet).unwrap();
    assert_eq!(value["Amount"], json!("340282366920938463463374607431768211456000"));
    assert_eq!(json::from_value::<SignedVoucher>(value).unwrap(), v);
}

// --- state, actors, tipsets -------------------------------------------------------------

#[test]
fn payment_channel_state_is_written_as_state_read_state_shows_it() {
    let state = PaychState {
        from: Address::new_id(100),
        to: Address::new_id(101),
        to_send: TokenAmount::from_atto(5),
        settling_at: 2000,
        min_settle_height: 10,
        lane_states: some_cid(1),
    };
    let expected = format!(
        r#"{{"From":"t0100","To":"t0101","ToSend":"5","SettlingAt":2000,"MinSettleHeight":10,"LaneStates":{{"/":"{}"}}}}"#,
        some_cid(1)
    );
    assert_written_and_read(&state, &expected);
}

#[test]
fn actor_and_actor_state_shapes() {
    let actor = Actor {
        code: some_cid(1),
        head: some_cid(2),
        nonce: 7,
        balance: TokenAmount::from_whole(3),
    };
    let expected = format!(
        r#"{{"Code":{{"/":"{}"}},"Head":{{"/":"{}"}},"Nonce":7,"Balance":"3000000000000000000"}}"#,
        some_cid(1),
        some_cid(2)
    );
    assert_written_and_read(&actor, &expected);
    // Newer Lotus adds DelegatedAddress; it is read and ignored.
    let newer = expected.replacen('{', r#"{"DelegatedAddress":null,"#, 1);
    assert_eq!(json::from_str::<Actor>(&newer).unwrap(), actor);

    let state = ActorState {
        balance: TokenAmount::from_atto(9),
        code: some_cid(1),
        state: json!({"Address": KEY_T}),
    };
    let expected = format!(
        r#"{{"Balance":"9","Code":{{"/":"{}"}},"State":{{"Address":"{KEY_T}"}}}}"#,
        some_cid(1)
    );
    assert_written_and_read(&state, &expected);
}

#[test]
fn tipset_has_cids_blocks_and_height_with_every_block_field() {
    let tipset = TipSet {
        cids: vec![some_cid(9)],
        blocks: vec![BlockHeader {
            miner: Address::new_id(1000),
            parents: vec![some_cid(8)],
            parent_weight: BigInt::from(41),
            height: 42,
            parent_state_root: some_cid(3),
            parent_message_receipts: some_cid(4),
            messages: some_cid(5),
            timestamp: 1_700_000_000,
            parent_base_fee: TokenAmount::from_atto(100),
        }],
        height: 42,
    };
    let c = |n| json!({"/": some_cid(n).to_string()});
    let expected = json!({
        "Cids": [c(9)],
        "Blocks": [{
            "Miner": "t01000",
            "Ticket": null,
            "ElectionProof": null,
            "BeaconEntries": null,
            "WinPoStProof": null,
            "Parents": [c(8)],
            "ParentWeight": "41",
            "Height": 42,
            "ParentStateRoot": c(3),
            "ParentMessageReceipts": c(4),
            "Messages": c(5),
            "BLSAggregate": null,
            "Timestamp": 1_700_000_000u64,
            "BlockSig": null,
            "ForkSignaling": 0,
            "ParentBaseFee": "100",
        }],
        "Height": 42,
    });
    let value = json::to_value(&tipset, Network::Testnet).unwrap();
    assert_eq!(value, expected);
    // Field order as Lotus writes it.
    let written = text(&tipset);
    let order =
        ["\"Miner\"", "\"Ticket\"", "\"Parents\"", "\"Height\"", "\"Messages\"", "\"Timestamp\""];
    let positions: Vec<usize> = order.iter().map(|k| written.find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{written}");
    assert_eq!(json::from_value::<TipSet>(value).unwrap(), tipset);
}

#[test]
fn tipset_key_is_an_array_of_cids_and_null_or_empty_is_the_head() {
    let key = TipSetKey(vec![some_cid(1), some_cid(2)]);
    let expected = json!([{"/": some_cid(1).to_string()}, {"/": some_cid(2).to_string()}]);
    assert_eq!(json::to_value(&key, Network::Testnet).unwrap(), expected);
    assert_eq!(json::from_value::<TipSetKey>(expected).unwrap(), key);
    assert_eq!(text(&TipSetKey::head()), "[]");
    for head in [json!(null), json!([])] {
        let read = json::from_value::<TipSetKey>(head).unwrap();
        assert!(read.is_head() && read == TipSetKey::head());
    }
    // The parameters of `ChainGetTipSetByHeight` as Lotus documents them: a height, a key.
    let params = json!([10101, [{"/": MESSAGE_CID}, {"/": some_cid(7).to_string()}]]);
    let key = json::from_value::<TipSetKey>(params[1].clone()).unwrap();
    assert_eq!(key.0, vec![cid(MESSAGE_CID), some_cid(7)]);
}

#[test]
fn bad_tipset_keys_are_typed_errors() {
    let too_long = Value::Array(
        (0..=json::MAX_TIPSET_KEY_CIDS).map(|_| json!({"/": some_cid(1).to_string()})).collect(),
    );
    assert!(matches!(
        json::from_value::<TipSetKey>(too_long),
        Err(JsonError::InvalidValue { field: "TipSetKey", .. })
    ));
    assert!(matches!(
        json::from_value::<TipSetKey>(json!([{"/": "bafy-not-a-cid"}])),
        Err(JsonError::InvalidCid { field: "TipSetKey", .. })
    ));
    for shape in [json!("head"), json!({"/": MESSAGE_CID}), json!([1, 2])] {
        assert!(matches!(json::from_value::<TipSetKey>(shape), Err(JsonError::Shape(_))));
    }
}

#[test]
fn tipset_from_lotus_with_tickets_and_proofs_is_read() {
    let c = |n| json!({"/": some_cid(n).to_string()});
    let lotus = json!({
        "Cids": [c(9)],
        "Blocks": [{
            "Miner": "f01234",
            "Ticket": {"VRFProof": "AAEC"},
            "ElectionProof": {"WinCount": 1, "VRFProof": "AAEC"},
            "BeaconEntries": [{"Round": 1, "Data": "AAEC"}],
            "WinPoStProof": [{"PoStProof": 3, "ProofBytes": "AAEC"}],
            "Parents": [c(8)],
            "ParentWeight": "123456789012345678901234567890",
            "Height": 4_000_000,
            "ParentStateRoot": c(3),
            "ParentMessageReceipts": c(4),
            "Messages": c(5),
            "BLSAggregate": {"Type": 2, "Data": "wAAA"},
            "Timestamp": 1_700_000_000u64,
            "BlockSig": {"Type": 2, "Data": "wAAA"},
            "ForkSignaling": 0,
            "ParentBaseFee": "100",
        }],
        "Height": 4_000_000,
    });
    let tipset = json::from_value::<TipSet>(lotus).unwrap();
    assert_eq!(tipset.height, 4_000_000);
    assert_eq!(tipset.blocks[0].miner, Address::new_id(1234));
}

// --- receipts, lookups, calls -----------------------------------------------------------

#[test]
fn msg_lookup_is_written_as_state_wait_msg_answers() {
    let lookup = MsgLookup {
        message: cid(MESSAGE_CID),
        receipt: Receipt {
            exit_code: ExitCode::new(0),
            return_data: vec![0x82, 0x01],
            gas_used: 123,
        },
        tipset: vec![some_cid(7)],
        height: 12,
    };
    let expected = format!(
        r#"{{"Message":{{"/":"{MESSAGE_CID}"}},"Receipt":{{"ExitCode":0,"Return":"ggE=","GasUsed":123,"EventsRoot":null}},"ReturnDec":null,"TipSet":[{{"/":"{}"}}],"Height":12}}"#,
        some_cid(7)
    );
    assert_eq!(text(&lookup), expected);
    let back = json::from_str::<MsgLookup>(&expected).unwrap();
    assert_eq!(back, lookup);
    let chain: MessageLookup = back.into();
    assert_eq!(chain.epoch, 12);

    let failed = MsgLookup {
        receipt: Receipt { exit_code: ExitCode::new(16), return_data: vec![], gas_used: 5 },
        ..lookup
    };
    let value = json::to_value(&failed, Network::Testnet).unwrap();
    assert_eq!(
        value["Receipt"],
        json!({"ExitCode": 16, "Return": null, "GasUsed": 5, "EventsRoot": null})
    );
}

#[test]
fn invoc_result_fills_gas_cost_and_trace_from_the_message() {
    let mut m = message();
    m.params = vec![0x80];
    let result = InvocResult {
        msg: Some(m.clone()),
        receipt: Some(Receipt { exit_code: ExitCode::new(16), return_data: vec![], gas_used: 0 }),
        error: "message execution failed (exit=[16])".to_owned(),
        duration: Duration::from_micros(1500),
    };
    let value = json::to_value(&result, Network::Testnet).unwrap();
    let m_cid = json!({"/": m.cid().unwrap().to_string()});
    assert_eq!(value["MsgCid"], m_cid);
    assert_eq!(value["Msg"], json::to_value(&m, Network::Testnet).unwrap());
    assert_eq!(
        value["MsgRct"],
        json!({"ExitCode": 16, "Return": null, "GasUsed": 0, "EventsRoot": null})
    );
    assert_eq!(value["GasCost"]["Message"], m_cid);
    assert_eq!(value["GasCost"]["TotalCost"], json!("0"));
    assert_eq!(value["ExecutionTrace"]["Msg"]["Params"], json!("gA=="));
    assert_eq!(value["ExecutionTrace"]["Msg"]["ParamsCodec"], json!(0x51));
    assert_eq!(value["ExecutionTrace"]["MsgRct"]["ExitCode"], json!(16));
    assert_eq!(value["Error"], json!("message execution failed (exit=[16])"));
    assert_eq!(value["Duration"], json!(1_500_000));
    assert_eq!(json::from_value::<InvocResult>(value).unwrap(), result);
}

#[test]
fn code_cids_and_cids() {
    let codes = BTreeMap::from([("account".to_owned(), some_cid(1))]);
    let value = json::to_value(&codes, Network::Testnet).unwrap();
    assert_eq!(value, json!({"account": {"/": some_cid(1).to_string()}}));
    assert_eq!(json::from_value::<BTreeMap<String, Cid>>(value).unwrap(), codes);
    assert_eq!(text(&cid(MESSAGE_CID)), format!(r#"{{"/":"{MESSAGE_CID}"}}"#));
}

// --- the JSON-RPC envelope --------------------------------------------------------------

#[test]
fn json_rpc_envelope() {
    let request = RpcRequest::new(1, "Filecoin.ChainHead", vec![]);
    assert_eq!(
        serde_json::to_string(&request).unwrap(),
        r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.ChainHead","params":[]}"#
    );
    let null_result = RpcResponse { id: json!(3), outcome: Ok(Value::Null) };
    assert_eq!(
        serde_json::to_string(&null_result).unwrap(),
        r#"{"jsonrpc":"2.0","id":3,"result":null}"#
    );
    let error = RpcResponse {
        id: Value::Null,
        outcome: Err(RpcError::new(error_code::METHOD_NOT_FOUND, "method 'x' not found")),
    };
    let written = serde_json::to_string(&error).unwrap();
    assert_eq!(
        written,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"method 'x' not found"}}"#
    );
    assert_eq!(serde_json::from_str::<RpcResponse>(&written).unwrap(), error);
    let read: RpcResponse =
        serde_json::from_str(r#"{"jsonrpc":"2.0","id":3,"result":null}"#).unwrap();
    assert_eq!(read, null_result);
    let with_data: RpcResponse = serde_json::from_str(
        r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32000,"message":"m","data":{"ExitCode":16}}}"#,
    )
    .unwrap();
    assert_eq!(with_data.outcome.unwrap_err().data, Some(json!({"ExitCode": 16})));
}

// --- bad values -------------------------------------------------------------------------

fn message_json_with(field: &str, value: Value) -> Value {
    let mut m = json::to_value(&message(), Network::Testnet).unwrap();
    m[field] = value;
    m
}

#[test]
fn invalid_addresses_are_typed_errors_naming_the_field() {
    for bad in ["x01001", "t1aaaa", "", "t0", "f1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"] {
        let err = json::from_value::<Message>(message_json_with("To", json!(bad))).unwrap_err();
        assert!(
            matches!(err, JsonError::InvalidAddress { field: "Message.To", .. }),
            "{bad:?}: {err}"
        );
    }
    let long = "t1".to_owned() + &"a".repeat(10_000);
    let err = json::from_value::<Message>(message_json_with("From", json!(long))).unwrap_err();
    assert!(
        matches!(err, JsonError::InvalidAddress { field: "Message.From", ref text, .. } if text.len() <= 80)
    );
}

#[test]
fn amounts_longer_than_filecoin_carries_are_refused_when_read() {
    // The largest magnitude a Filecoin big integer carries is 127 bytes (128 with the sign).
    let largest = (BigInt::from(1u8) << 1016usize) - 1u8;
    let read = json::from_value::<Message>(message_json_with("Value", json!(largest.to_string())))
        .unwrap();
    // What is read can be written again, as CBOR (its CID) and as Lotus JSON.
    read.cid().unwrap();
    json::to_value(&read, Network::Testnet).unwrap();

    let too_long = BigInt::from(1u8) << 1016usize;
    for text in [too_long.to_string(), format!("-{too_long}"), "9".repeat(json::MAX_BIGINT_DIGITS)]
    {
        let err = json::from_value::<Message>(message_json_with("Value", json!(text))).unwrap_err();
        assert!(
            matches!(err, JsonError::InvalidValue { field: "Message.Value", .. }),
            "{text}: {err}"
        );
    }
    let mut voucher = json::to_value(
        &SignedVoucher::new(Address::new_id(1001), 0, 1, TokenAmount::from_atto(1)),
        Network::Testnet,
    )
    .unwrap();
    voucher["Amount"] = json!(too_long.to_string());
    assert!(matches!(
        json::from_value::<SignedVoucher>(voucher),
        Err(JsonError::InvalidValue { field: "SignedVoucher.Amount", .. })
    ));
}

#[test]
fn non_decimal_amounts_are_typed_errors() {
    for bad in ["1e18", "0x10", "", " 1", "1.5", "+1", "1_000", "--1", "-", "١٢"] {
        let err = json::from_value::<Message>(message_json_with("Value", json!(bad))).unwrap_err();
        assert!(
            matches!(err, JsonError::InvalidInteger { field: "Message.Value", .. }),
            "{bad:?}: {err}"
        );
    }
    let huge = "9".repeat(json::MAX_BIGINT_DIGITS + 1);
    assert!(matches!(
        json::from_value::<Message>(message_json_with("GasFeeCap", json!(huge))),
        Err(JsonError::InvalidInteger { field: "Message.GasFeeCap", .. })
    ));
    // A number where Lotus writes a string is the wrong shape.
    assert!(matches!(
        json::from_value::<Message>(message_json_with("Value", json!(5))),
        Err(JsonError::Shape(_))
    ));
    assert_eq!(
        json::from_value::<TokenAmount>(json!("-5")).unwrap(),
        TokenAmount::from_atto(-5),
        "Lotus big integers may be negative"
    );
}

#[test]
fn bad_base64_is_a_typed_error() {
    for bad in ["gvv", "gv v/", "gvv_", "****"] {
        let err = json::from_value::<Message>(message_json_with("Params", json!(bad))).unwrap_err();
        assert!(
            matches!(err, JsonError::InvalidBase64 { field: "Message.Params", .. }),
            "{bad:?}: {err}"
        );
    }
    let mut v =
        json::to_value(&SignedVoucher::from_base64url(VOUCHER).unwrap(), Network::Testnet).unwrap();
    v["SecretHash"] = json!("not base64!");
    assert!(matches!(
        json::from_value::<SignedVoucher>(v),
        Err(JsonError::InvalidBase64 { field: "SignedVoucher.SecretHash", .. })
    ));
}

#[test]
fn bad_cids_are_typed_errors() {
    for bad in ["", "bafy", "not a cid", "Qm123"] {
        let err = json::from_value::<Cid>(json!({"/": bad})).unwrap_err();
        assert!(matches!(err, JsonError::InvalidCid { .. }), "{bad:?}: {err}");
    }
    let long = "b".repeat(json::MAX_CID_TEXT + 1);
    assert!(matches!(
        json::from_value::<Cid>(json!({"/": long})),
        Err(JsonError::InvalidCid { .. })
    ));
    assert!(matches!(json::from_value::<Cid>(json!("bafy…")), Err(JsonError::Shape(_))));
    let state = json!({"From": "t0100", "To": "t0101", "ToSend": "0", "SettlingAt": 0,
        "MinSettleHeight": 0, "LaneStates": {"/": "garbage"}});
    assert!(matches!(
        json::from_value::<PaychState>(state),
        Err(JsonError::InvalidCid { field: "State.LaneStates", .. })
    ));
}

#[test]
fn other_bad_values_are_typed_errors() {
    let mut v =
        json::to_value(&SignedVoucher::from_base64url(VOUCHER).unwrap(), Network::Testnet).unwrap();
    v["Signature"]["Type"] = json!(7);
    assert!(matches!(
        json::from_value::<SignedVoucher>(v),
        Err(JsonError::UnknownSignatureType { sig_type: 7, .. })
    ));
    assert!(matches!(
        json::from_value::<Message>(message_json_with("Version", json!(1))),
        Err(JsonError::InvalidValue { field: "Message.Version", .. })
    ));
    let mut m = json::to_value(&message(), Network::Testnet).unwrap();
    m.as_object_mut().unwrap().remove("Nonce");
    assert!(matches!(json::from_value::<Message>(m), Err(JsonError::Shape(_))));
    assert!(matches!(json::from_str::<Message>("{not json"), Err(JsonError::Shape(_))));
    let receipt = json!({"ExitCode": -1, "Return": null, "GasUsed": 0});
    assert!(matches!(json::from_value::<Receipt>(receipt), Err(JsonError::InvalidValue { .. })));
}

fn base64_decode(text: &str) -> Vec<u8> {
    json::parse_bytes_field("test", Some(text)).unwrap()
}
