//! The repo directory's files other than `config.toml`: its lock, the API's JWT secret,
//! the libp2p identity, and how they are written (private, flushed to disk).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;
use paych_core::wallet::{key_file_name, KeyInfo};

use super::{DaemonError, JWT_KEY_NAME, JWT_KEY_TYPE, PAYCH_PATH};
use crate::rpc::auth;

/// The default repo: `$PAYCH_PATH`, else `~/.paych`.
pub fn default_repo() -> Result<PathBuf, DaemonError> {
    if let Some(path) = std::env::var_os(PAYCH_PATH).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(DaemonError::NoRepo)?;
    Ok(PathBuf::from(home).join(".paych"))
}

/// A `map_err` for an I/O error on `path`.
fn failed(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_owned();
    move |source| DaemonError::File { action, path, source }
}

/// Takes the repo's lock (`repo.lock`), held until the returned file is dropped.
pub(super) fn lock(repo: &Path) -> Result<File, DaemonError> {
    let path = repo.join("repo.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(failed("open", &path))?;
    // An advisory lock (flock), released by the kernel when the process exits however it
    // exits: a crashed daemon leaves no stale lock behind.
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == fs2::lock_contended_error().kind() => {
            Err(DaemonError::LockHeld { repo: repo.to_owned(), lock: path })
        }
        Err(e) => Err(failed("lock", &path)(e)),
    }
}

/// Reads the API's HS256 secret from the keystore, creating it on first use.
pub(super) fn jwt_secret(keystore: &Path) -> Result<Vec<u8>, DaemonError> {
    let path = keystore.join(key_file_name(JWT_KEY_NAME));
    if path.exists() {
        let bytes = fs::read(&path).map_err(failed("read", &path))?;
        let info = KeyInfo::from_json(JWT_KEY_NAME, &bytes)
            .map_err(|source| DaemonError::Keystore { action: "read", source })?;
        if info.key_type != JWT_KEY_TYPE || info.private_key.is_empty() {
            return Err(DaemonError::NotAKey { path, what: JWT_KEY_TYPE });
        }
        return Ok(info.private_key);
    }
    let secret = auth::new_secret().map_err(DaemonError::Random)?;
    let info = KeyInfo { key_type: JWT_KEY_TYPE.to_owned(), private_key: secret.clone() };
    write_file(&path, info.to_json().as_bytes(), 0o600)?;
    Ok(secret)
}

/// Reads the node's libp2p identity, creating an ed25519 one on first use.
pub(super) fn libp2p_key(path: &Path) -> Result<Keypair, DaemonError> {
    if path.exists() {
        let bytes = fs::read(path).map_err(failed("read", path))?;
        return Keypair::from_protobuf_encoding(&bytes)
            .map_err(|_| DaemonError::NotAKey { path: path.to_owned(), what: "libp2p key" });
    }
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair.to_protobuf_encoding().map_err(DaemonError::EncodeKey)?;
    write_file(path, &bytes, 0o600)?;
    Ok(keypair)
}

/// Writes `bytes` to `path` (replacing it) with `mode`, flushed to disk.
pub(super) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DaemonError> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let write = || -> std::io::Result<()> {
        let mut file = options.open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()
    };
    #[cfg(not(unix))]
    let _ = mode;
    write().map_err(failed("write", path))
}

/// Creates `dir` (and its parents) readable by its owner only, unless it exists.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), DaemonError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(failed("create", dir))
}
