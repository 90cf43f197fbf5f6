//! The Lotus-format keystore on real temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use paych_core::crypto;
use paych_core::types::{format_address, parse_address, Network};
use paych_core::wallet::{key_file_name, KeyInfo, KeyStore, Wallet, WalletError};

/// The first key of the golden vectors, in Lotus's `wallet export` form.
const VECTOR_EXPORT_HEX: &str = "7b2254797065223a22736563703235366b31222c22507269766174654b6579223a2279514149443541385679504243704e6b4c772f36303943466444496949366d30353163314a574f434333493d227d";
const VECTOR_ADDRESS: &str = "t13rg3z37pipjm5lqjt4kpp7szxjydfsp6uibur2q";
const VECTOR_FILE_NAME: &str =
    "O5QWY3DFOQWXIMJTOJTTG6RTG5YGS4DKNU2WY4LKOQ2GW4DQG5ZXU6DKPFSGM43QGZ2WSYTVOIZHC";

#[test]
fn keys_survive_reopening_and_sign_verifiably() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore");
    let store = KeyStore::open(&path, Network::Testnet).unwrap();
    assert_eq!(store.default_address().unwrap(), None);
    let first = store.new_key().unwrap();
    let second = store.new_key().unwrap();
    assert_ne!(first, second);
    assert_eq!(store.default_address().unwrap(), Some(first));

    let signature = store.sign(&second, b"pay me").unwrap();
    crypto::verify(&signature, &second, b"pay me").unwrap();

    let reopened = KeyStore::open(&path, Network::Testnet).unwrap();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(reopened.list().unwrap(), expected);
    assert!(reopened.has(&first) && reopened.has(&second));
    assert_eq!(reopened.default_address().unwrap(), Some(first));
    assert_eq!(reopened.sign(&second, b"pay me").unwrap(), signature);
    assert_eq!(reopened.export(&first).unwrap(), store.export(&first).unwrap());
}

#[test]
fn key_files_are_private_and_named_as_lotus_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), Network::Testnet).unwrap();
    let addr = store.new_key().unwrap();
    let name = key_file_name(&format!("wallet-{}", format_address(&addr, Network::Testnet)));
    for file in [name, key_file_name("default")] {
        let mode = fs::metadata(dir.path().join(&file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), Network::Testnet).unwrap();
    let addr = store.new_key().unwrap();
    let file = dir
        .path()
        .join(key_file_name(&format!("wallet-{}", format_address(&addr, Network::Testnet))));
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    match KeyStore::open(dir.path(), Network::Testnet) {
        Err(WalletError::InsecurePermissions { path, mode }) => {
            assert_eq!(path, file);
            assert_eq!(mode, 0o644);
        }
        other => panic!("expected InsecurePermissions, got {:?}", other.err()),
    }
}

#[test]
fn a_lotus_export_is_imported_under_its_lotus_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), Network::Testnet).unwrap();
    let info = KeyInfo::from_lotus_hex(VECTOR_EXPORT_HEX).unwrap();
    let addr = store.import(&info).unwrap();
    assert_eq!(addr, parse_address(VECTOR_ADDRESS).unwrap().0);
    assert!(dir.path().join(VECTOR_FILE_NAME).exists());
    assert_eq!(
        fs::read_to_string(dir.path().join(VECTOR_FILE_NAME)).unwrap(),
        r#"{"Type":"secp256k1","PrivateKey":"yQAID5A8VyPBCpNkLw/609CFdDIiI6m051c1JWOCC3I="}"#
    );
    assert_eq!(store.export(&addr).unwrap().to_lotus_hex(), VECTOR_EXPORT_HEX);
    // Importing the same key again changes nothing.
    assert_eq!(store.import(&info).unwrap(), addr);
    assert_eq!(store.list().unwrap(), vec![addr]);
}

#[test]
fn bad_imports_get_typed_errors() {
    assert!(matches!(KeyInfo::from_lotus_hex("zz"), Err(WalletError::Malformed { .. })));
    let not_json = hex::encode("not json");
    assert!(matches!(KeyInfo::from_lotus_hex(&not_json), Err(WalletError::Malformed { .. })));
    let bls = hex::encode(r#"{"Type":"bls","PrivateKey":"AAAA"}"#);
    assert!(
        matches!(KeyInfo::from_lotus_hex(&bls), Err(WalletError::UnsupportedKeyType(t)) if t == "bls")
    );
    let zero_key = hex::encode(format!(
        r#"{{"Type":"secp256k1","PrivateKey":"{}"}}"#,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    ));
    assert!(matches!(KeyInfo::from_lotus_hex(&zero_key), Err(WalletError::Crypto(_))));
}

#[test]
fn a_key_file_named_for_another_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let info = KeyInfo::from_lotus_hex(VECTOR_EXPORT_HEX).unwrap();
    let wrong_name = key_file_name("wallet-t1mzu3mxnfmj6wd2rk27q2vku732f43uour7ybrta");
    let path = dir.path().join(wrong_name);
    fs::write(&path, info.to_json()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        KeyStore::open(dir.path(), Network::Testnet),
        Err(WalletError::NameMismatch { .. })
    ));
}

#[test]
fn a_corrupt_key_file_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(key_file_name(&format!("wallet-{VECTOR_ADDRESS}")));
    fs::write(&path, b"{\"Type\":").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    match KeyStore::open(dir.path(), Network::Testnet) {
        Err(WalletError::Malformed { what, .. }) => assert!(what.contains(VECTOR_FILE_NAME)),
        other => panic!("expected Malformed, got {:?}", other.err()),
    }
}

#[test]
fn signing_with_an_unknown_address_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), Network::Testnet).unwrap();
    let stranger = parse_address(VECTOR_ADDRESS).unwrap().0;
    assert!(
        matches!(store.sign(&stranger, b"x"), Err(WalletError::UnknownAddress(a)) if a == VECTOR_ADDRESS)
    );
    assert!(matches!(store.set_default(&stranger), Err(WalletError::UnknownAddress(_))));
}

#[test]
fn files_that_are_not_keys_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("README"), b"not a key").unwrap();
    let store = KeyStore::open(dir.path(), Network::Testnet).unwrap();
    assert!(store.list().unwrap().is_empty());
}
