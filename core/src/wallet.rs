//! Keys and signing: the [`Wallet`] trait and [`KeyStore`], a directory in Lotus's
//! keystore format.
//!
//! A keystore holds one file per key, named by the unpadded base32 (upper-case standard
//! alphabet) of the key name — `wallet-<address>` for a wallet key, `default` for the
//! default key — with mode 0600 and contents `{"Type":"secp256k1","PrivateKey":"<base64>"}`.
//! A key file readable by anyone but its owner is refused. Lotus's `wallet export` form is
//! the hex of that JSON, and [`KeyInfo::from_lotus_hex`] reads it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fvm_shared::address::{Address, Network};
use fvm_shared::crypto::signature::Signature;
use serde::{Deserialize, Serialize};

use crate::crypto::{self, SecretKey};
use crate::types::{format_address, parse_address};

/// The key type Lotus writes for secp256k1 keys.
pub const SECP256K1_KEY_TYPE: &str = "secp256k1";
/// The key name prefix of wallet keys.
pub const WALLET_KEY_PREFIX: &str = "wallet-";
/// The key name under which the default key is kept.
pub const DEFAULT_KEY_NAME: &str = "default";
/// The largest key file the keystore reads.
pub const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why a wallet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The wallet holds no key for the address.
    #[error("no key for address {0} in the wallet")]
    UnknownAddress(String),
    /// The wallet has no default address.
    #[error("the wallet has no default address; create or import a key first")]
    NoDefault,
    /// A key file is readable or writable by others than its owner.
    #[error("key file {path} has permissions {mode:o}; it must be 0600 (run: chmod 600 {path})")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file or import could not be understood.
    #[error("malformed key {what}: {reason}")]
    Malformed {
        /// The file or input.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A key is of a type this wallet cannot use.
    #[error("unsupported key type {0:?}: only secp256k1 keys are supported")]
    UnsupportedKeyType(String),
    /// A key file's name does not match the key inside it.
    #[error("key file {path} is named for {named} but holds the key of {actual}")]
    NameMismatch {
        /// The file.
        path: PathBuf,
        /// The address in the file name.
        named: String,
        /// The address of the key.
        actual: String,
    },
    /// Reading or writing the keystore failed.
    #[error("keystore I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A cryptographic operation failed.
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

/// A source of keys and signatures.
pub trait Wallet: Send + Sync {
    /// Creates a new secp256k1 key and returns its address. The first key becomes the
    /// default.
    fn new_key(&self) -> Result<Address, WalletError>;
    /// The addresses of every key held.
    fn list(&self) -> Result<Vec<Address>, WalletError>;
    /// Whether the wallet holds the key of `addr`.
    fn has(&self, addr: &Address) -> bool;
    /// Signs `data` (blake2b-256 then secp256k1) with the key of `addr`.
    fn sign(&self, addr: &Address, data: &[u8]) -> Result<Signature, WalletError>;
    /// The default address, if one is set.
    fn default_address(&self) -> Result<Option<Address>, WalletError>;
}

/// A key in Lotus's `KeyInfo` JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key type (`secp256k1`).
    #[serde(rename = "Type")]
    pub key_type: String,
    /// The private key, base64 (standard, padded) in JSON.
    #[serde(rename = "PrivateKey", with = "base64_bytes")]
    pub private_key: Vec<u8>,
}

mod base64_bytes {
    use super::{Engine, STANDARD};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

impl KeyInfo {
    /// The `KeyInfo` of a secp256k1 private key.
    pub fn secp256k1(secret: &SecretKey) -> Self {
        KeyInfo {
            key_type: SECP256K1_KEY_TYPE.to_owned(),
            private_key: secret.secret_bytes().to_vec(),
        }
    }

    /// The private key, checked to be a secp256k1 key.
    pub fn secret_key(&self) -> Result<SecretKey, WalletError> {
        if self.key_type != SECP256K1_KEY_TYPE {
            return Err(WalletError::UnsupportedKeyType(self.key_type.clone()));
        }
        Ok(crypto::secret_key(&self.private_key)?)
    }

    /// The key's f1 address.
    pub fn address(&self) -> Result<Address, WalletError> {
        Ok(crypto::secp_address(&crypto::public_key(&self.secret_key()?)))
    }

    /// The JSON form, as stored in a key file.
    pub fn to_json(&self) -> String {
        // A struct of two strings always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the JSON form.
    pub fn from_json(what: &str, json: &[u8]) -> Result<Self, WalletError> {
        serde_json::from_slice(json)
            .map_err(|e| WalletError::Malformed { what: what.to_owned(), reason: e.to_string() })
    }

    /// Lotus's `wallet export` form: the hex of the JSON.
    pub fn to_lotus_hex(&self) -> String {
        hex::encode(self.to_json())
    }

    /// Reads Lotus's `wallet export` form (surrounding white space ignored).
    pub fn from_lotus_hex(text: &str) -> Result<Self, WalletError> {
        let json = hex::decode(text.trim()).map_err(|e| WalletError::Malformed {
            what: "import".to_owned(),
            reason: format!("not hex: {e}"),
        })?;
        let info = Self::from_json("import", &json)?;
        info.secret_key()?;
        Ok(info)
    }
}

/// The keystore file name of a key name: unpadded upper-case base32.
pub fn key_file_name(key_name: &str) -> String {
    data_encoding::BASE32_NOPAD.encode(key_name.as_bytes())
}

/// A Lotus-format keystore directory, with its keys cached in memory.
pub struct KeyStore {
    dir: PathBuf,
    network: Network,
    keys: RwLock<Keys>,
}

#[derive(Default)]
struct Keys {
    by_address: BTreeMap<Address, SecretKey>,
    default: Option<Address>,
}

impl KeyStore {
    /// Opens (creating it 0700 if needed) the keystore at `dir`, whose key names use
    /// `network`'s address prefix. Every key file is read and checked now: a file with
    /// loose permissions, bad contents or a name that does not match its key is an error.
    pub fn open(dir: impl Into<PathBuf>, network: Network) -> Result<Self, WalletError> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        let mut keys = Keys::default();
        let entries = fs::read_dir(&dir).map_err(|source| io(&dir, source))?;
        for entry in entries {
            let path = entry.map_err(|source| io(&dir, source))?.path();
            let Some(key_name) = decoded_key_name(&path) else { continue };
            if key_name == DEFAULT_KEY_NAME {
                let info = read_key_file(&path)?;
                keys.default = Some(info.address()?);
            } else if let Some(named) = key_name.strip_prefix(WALLET_KEY_PREFIX) {
                let info = read_key_file(&path)?;
                let secret = info.secret_key()?;
                let actual = crypto::secp_address(&crypto::public_key(&secret));
                match parse_address(named) {
                    Ok((addr, _)) if addr == actual => {}
                    _ => {
                        return Err(WalletError::NameMismatch {
                            path,
                            named: named.to_owned(),
                            actual: format_address(&actual, network),
                        })
                    }
                }
                keys.by_address.insert(actual, secret);
            }
        }
        if let Some(default) = keys.default {
            if !keys.by_address.contains_key(&default) {
                keys.default = None;
            }
        }
        Ok(KeyStore { dir, network, keys: RwLock::new(keys) })
    }

    /// The keystore's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a key (idempotent) and returns its address. The first key becomes the default.
    pub fn import(&self, info: &KeyInfo) -> Result<Address, WalletError> {
        let secret = info.secret_key()?;
        let addr = crypto::secp_address(&crypto::public_key(&secret));
        let mut keys = self.write_keys();
        let name = format!("{WALLET_KEY_PREFIX}{}", format_address(&addr, self.network));
        write_key_file(&self.dir.join(key_file_name(&name)), info)?;
        keys.by_address.insert(addr, secret);
        if keys.default.is_none() {
            write_key_file(&self.dir.join(key_file_name(DEFAULT_KEY_NAME)), info)?;
            keys.default = Some(addr);
        }
        Ok(addr)
    }

    /// The key of `addr` in `KeyInfo` form (use [`KeyInfo::to_lotus_hex`] for Lotus's
    /// export form).
    pub fn export(&self, addr: &Address) -> Result<KeyInfo, WalletError> {
        Ok(KeyInfo::secp256k1(&self.secret(addr)?))
    }

    /// Makes `addr` the default address.
    pub fn set_default(&self, addr: &Address) -> Result<(), WalletError> {
        let mut keys = self.write_keys();
        let secret = keys
            .by_address
            .get(addr)
            .ok_or_else(|| WalletError::UnknownAddress(format_address(addr, self.network)))?;
        write_key_file(
            &self.dir.join(key_file_name(DEFAULT_KEY_NAME)),
            &KeyInfo::secp256k1(secret),
        )?;
        keys.default = Some(*addr);
        Ok(())
    }

    fn secret(&self, addr: &Address) -> Result<SecretKey, WalletError> {
        self.read_keys()
            .by_address
            .get(addr)
            .copied()
            .ok_or_else(|| WalletError::UnknownAddress(format_address(addr, self.network)))
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_keys(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Wallet for KeyStore {
    fn new_key(&self) -> Result<Address, WalletError> {
        let secret = crypto::generate_secret_key()?;
        self.import(&KeyInfo::secp256k1(&secret))
    }

    fn list(&self) -> Result<Vec<Address>, WalletError> {
        Ok(self.read_keys().by_address.keys().copied().collect())
    }

    fn has(&self, addr: &Address) -> bool {
        self.read_keys().by_address.contains_key(addr)
    }

    fn sign(&self, addr: &Address, data: &[u8]) -> Result<Signature, WalletError> {
        Ok(crypto::sign(&self.secret(addr)?, data))
    }

    fn default_address(&self) -> Result<Option<Address>, WalletError> {
        Ok(self.read_keys().default)
    }
}

fn io(path: &Path, source: std::io::Error) -> WalletError {
    WalletError::Io { path: path.to_owned(), source }
}

fn decoded_key_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let bytes = data_encoding::BASE32_NOPAD.decode(name.as_bytes()).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), WalletError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| io(dir, source))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), WalletError> {
    fs::create_dir_all(dir).map_err(|source| io(dir, source))
}

fn read_key_file(path: &Path) -> Result<KeyInfo, WalletError> {
    let meta = fs::metadata(path).map_err(|source| io(path, source))?;
    check_permissions(path, &meta)?;
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(WalletError::Malformed {
            what: path.display().to_string(),
            reason: format!("{} bytes is too large for a key file", meta.len()),
        });
    }
    let bytes = fs::read(path).map_err(|source| io(path, source))?;
    KeyInfo::from_json(&path.display().to_string(), &bytes)
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), WalletError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(WalletError::InsecurePermissions { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<(), WalletError> {
    Ok(())
}

/// Writes a key file atomically (temporary file with mode 0600, fsync, rename).
fn write_key_file(path: &Path, info: &KeyInfo) -> Result<(), WalletError> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|source| io(&tmp, source))?;
    file.write_all(info.to_json().as_bytes()).map_err(|source| io(&tmp, source))?;
    file.sync_all().map_err(|source| io(&tmp, source))?;
    fs::rename(&tmp, path).map_err(|source| io(path, source))
}
