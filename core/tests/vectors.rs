//! Golden vectors produced with the reference Filecoin libraries: every byte paych writes
//! must match them exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use fvm_shared::bigint::BigInt;
use paych_core::crypto;
use paych_core::types::*;
use paych_core::wallet::{key_file_name, KeyInfo};
use serde_json::Value;

/// The shared vectors when the checkout sits beside them; otherwise the copy kept in this
/// repository (the test `vector_copy_matches_shared_vectors` keeps the two identical).
fn vectors_path() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = manifest.join("../../shared/vectors/paych-vectors.json");
    if shared.exists() {
        shared
    } else {
        manifest.join("tests/vectors/paych-vectors.json")
    }
}

fn vectors() -> Value {
    serde_json::from_slice(&std::fs::read(vectors_path()).unwrap()).unwrap()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} is not a string"))
}

fn h(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(s(v, key)).unwrap()
}

fn atto(v: &Value, key: &str) -> TokenAmount {
    TokenAmount::from_atto(s(v, key).parse::<BigInt>().unwrap())
}

fn addr(text: &str) -> Address {
    parse_address(text).unwrap().0
}

/// Each reference key's vector, with its secret key.
fn reference_keys() -> Vec<(Value, crypto::SecretKey)> {
    let vectors = vectors();
    let keys = vectors["keys"].as_array().unwrap().iter();
    keys.map(|key| (key.clone(), crypto::secret_key(&h(key, "private_key_hex")).unwrap())).collect()
}

fn key_for(vectors: &Value, signer: &str) -> crypto::SecretKey {
    let key = vectors["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| s(k, "address_testnet") == signer)
        .unwrap();
    crypto::secret_key(&h(key, "private_key_hex")).unwrap()
}

fn voucher_from(v: &Value) -> SignedVoucher {
    let extra = match &v["extra"] {
        Value::Null => None,
        e => Some(ModVerifyParams {
            actor: addr(s(e, "actor")),
            method: e["method"].as_u64().unwrap(),
            data: h(e, "data_hex"),
        }),
    };
    SignedVoucher {
        channel_addr: addr(s(v, "channel_addr")),
        time_lock_min: v["time_lock_min"].as_i64().unwrap(),
        time_lock_max: v["time_lock_max"].as_i64().unwrap(),
        secret_hash: h(v, "secret_hash_hex"),
        extra,
        lane: v["lane"].as_u64().unwrap(),
        nonce: v["nonce"].as_u64().unwrap(),
        amount: atto(v, "amount_atto"),
        min_settle_height: v["min_settle_height"].as_i64().unwrap(),
        merges: v["merges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Merge {
                lane: m["lane"].as_u64().unwrap(),
                nonce: m["nonce"].as_u64().unwrap(),
            })
            .collect(),
        signature: None,
    }
}

#[test]
fn vector_copy_matches_shared_vectors() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = manifest.join("../../shared/vectors/paych-vectors.json");
    let copy = manifest.join("tests/vectors/paych-vectors.json");
    if shared.exists() {
        assert_eq!(
            std::fs::read(shared).unwrap(),
            std::fs::read(copy).unwrap(),
            "core/tests/vectors/paych-vectors.json is out of date: copy ../shared/vectors over it"
        );
    }
}

#[test]
fn keys_give_the_reference_public_keys_and_addresses() {
    for (key, secret) in &reference_keys() {
        let public = crypto::public_key(secret);
        assert_eq!(public.serialize_uncompressed().to_vec(), h(key, "public_key_uncompressed_hex"));
        let address = crypto::secp_address(&public);
        assert_eq!(address.to_bytes(), h(key, "address_bytes_hex"));
        assert_eq!(format_address(&address, Network::Mainnet), s(key, "address_mainnet"));
        assert_eq!(format_address(&address, Network::Testnet), s(key, "address_testnet"));
        assert_eq!(parse_address(s(key, "address_mainnet")).unwrap(), (address, Network::Mainnet));
        assert_eq!(parse_address(s(key, "address_testnet")).unwrap(), (address, Network::Testnet));
    }
}

#[test]
fn keys_have_the_lotus_keystore_names_and_export_form() {
    for (key, secret) in &reference_keys() {
        let info = KeyInfo::secp256k1(secret);
        assert_eq!(info.to_json(), s(key, "lotus_keyinfo_json"));
        assert_eq!(info.to_lotus_hex(), s(key, "lotus_export_hex"));
        assert_eq!(KeyInfo::from_lotus_hex(s(key, "lotus_export_hex")).unwrap(), info);
        assert_eq!(
            key_file_name(&format!("wallet-{}", s(key, "address_mainnet"))),
            s(key, "keystore_file_name_mainnet")
        );
        assert_eq!(
            key_file_name(&format!("wallet-{}", s(key, "address_testnet"))),
            s(key, "keystore_file_name_testnet")
        );
    }
}

#[test]
fn channel_addresses_round_trip() {
    let vectors = vectors();
    let channel = &vectors["channel"];
    let robust = addr(s(channel, "robust_address"));
    assert_eq!(robust.protocol(), Protocol::Actor);
    assert_eq!(robust.to_bytes(), h(channel, "robust_address_bytes_hex"));
    assert_eq!(format_address(&robust, Network::Testnet), s(channel, "robust_address"));
    let id = addr(s(channel, "id_address"));
    assert_eq!(id, Address::new_id(1001));
    assert_eq!(format_address(&id, Network::Testnet), s(channel, "id_address"));
}

#[test]
fn every_voucher_vector_is_reproduced_byte_for_byte() {
    let vectors = vectors();
    for case in vectors["vouchers"].as_array().unwrap() {
        let name = s(case, "name");
        let mut voucher = voucher_from(&case["voucher"]);
        let signing_bytes = voucher.signing_bytes().unwrap();
        assert_eq!(
            hex::encode(&signing_bytes),
            s(case, "signing_bytes_hex"),
            "{name}: signing bytes"
        );
        assert_eq!(
            hex::encode(crypto::blake2b_256(&signing_bytes)),
            s(case, "signing_digest_blake2b256_hex"),
            "{name}: digest"
        );

        let signer = addr(s(case, "signer"));
        let signature = crypto::sign(&key_for(&vectors, s(case, "signer")), &signing_bytes);
        assert_eq!(signature.sig_type, SignatureType::Secp256k1);
        assert_eq!(
            hex::encode(&signature.bytes),
            s(case, "signature_data_hex"),
            "{name}: signature"
        );
        crypto::verify(&signature, &signer, &signing_bytes).unwrap();
        voucher.signature = Some(signature);

        let cbor = voucher.to_cbor().unwrap();
        assert_eq!(hex::encode(&cbor), s(case, "signed_voucher_cbor_hex"), "{name}: CBOR");
        assert_eq!(
            voucher.to_base64url().unwrap(),
            s(case, "signed_voucher_base64url"),
            "{name}: text"
        );
        assert_eq!(SignedVoucher::from_cbor(&cbor).unwrap(), voucher, "{name}: decode");
        assert_eq!(
            SignedVoucher::from_base64url(s(case, "signed_voucher_base64url")).unwrap(),
            voucher,
            "{name}: decode text"
        );

        let params = UpdateChannelStateParams { sv: voucher.clone(), secret: Vec::new() };
        let params_cbor = fvm_ipld_encoding::to_vec(&params).unwrap();
        assert_eq!(
            hex::encode(&params_cbor),
            s(case, "update_channel_state_params_hex"),
            "{name}: UpdateChannelState params"
        );
        assert_eq!(decode::decode::<UpdateChannelStateParams>(&params_cbor).unwrap(), params);
    }
}

#[test]
fn lane_state_vector_is_reproduced() {
    let vectors = vectors();
    let lane = &vectors["lane_state"];
    let state =
        LaneState { redeemed: atto(lane, "redeemed_atto"), nonce: lane["nonce"].as_u64().unwrap() };
    let cbor = fvm_ipld_encoding::to_vec(&state).unwrap();
    assert_eq!(hex::encode(&cbor), s(lane, "cbor_hex"));
    assert_eq!(decode::decode::<LaneState>(&cbor).unwrap(), state);
}

#[test]
fn message_vector_is_reproduced_with_cid_and_signature() {
    let vectors = vectors();
    let m = &vectors["message"];
    let message = Message {
        version: m["version"].as_u64().unwrap(),
        to: addr(s(m, "to")),
        from: addr(s(m, "from")),
        nonce: m["nonce"].as_u64().unwrap(),
        value: atto(m, "value_atto"),
        gas_limit: m["gas_limit"].as_u64().unwrap(),
        gas_fee_cap: atto(m, "gas_fee_cap_atto"),
        gas_premium: atto(m, "gas_premium_atto"),
        method: m["method"].as_u64().unwrap(),
        params: h(m, "params_hex"),
    };
    let cbor = message.to_cbor().unwrap();
    assert_eq!(hex::encode(&cbor), s(m, "cbor_hex"));
    assert_eq!(Message::from_cbor(&cbor).unwrap(), message);
    let cid = message.cid().unwrap();
    assert_eq!(cid.to_string(), s(m, "cid"));

    let signed = crypto::sign_message(&key_for(&vectors, s(m, "from")), message.clone()).unwrap();
    assert_eq!(hex::encode(&signed.signature.bytes), s(m, "signature_over_cid_bytes_hex"));
    crypto::verify_message(&signed).unwrap();
    let signed_cbor = signed.to_cbor().unwrap();
    assert_eq!(SignedMessage::from_cbor(&signed_cbor).unwrap(), signed);
    // A secp256k1-signed message is known by the CID of the signed message's CBOR.
    assert_eq!(signed.cid().unwrap(), cid_of(&signed_cbor));
    assert_ne!(signed.cid().unwrap(), cid);
}
