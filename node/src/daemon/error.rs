//! [`DaemonError`]: why a daemon could not start or stop cleanly, each variant naming the
//! file, address or part that failed.

use std::net::SocketAddr;
use std::path::PathBuf;

use paych_core::chain::lotus::LotusConfigError;
use paych_core::chain::ChainError;
use paych_core::manager::ChainMessageError;
use paych_core::network::NetworkCheckError;
use paych_core::store::StoreError;
use paych_core::wallet::WalletError;

use super::config::ConfigError;
use super::FULLNODE_API_INFO;
use crate::network::NetworkError;
use crate::retrieval::PublishError;
use crate::rpc::server::ServeError;

/// Why a daemon could not start, or could not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No repo was named and there is no home directory to put `~/.paych` in.
    #[error("neither PAYCH_PATH nor HOME is set: pass --repo")]
    NoRepo,
    /// A file or directory of the repo could not be created, read or written.
    #[error("cannot {action} {}", path.display())]
    File {
        /// `create`, `open`, `read`, `write` or `lock`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon holds the repo's lock.
    #[error(
        "the repo {} is in use by another paych daemon (it holds {})",
        repo.display(),
        lock.display()
    )]
    LockHeld {
        /// The repo.
        repo: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// `config.toml` could not be parsed.
    #[error("cannot use {}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// The line and key refused.
        #[source]
        source: ConfigError,
    },
    /// A key file of the repo holds something else.
    #[error("{}: not a {what}", path.display())]
    NotAKey {
        /// The key file.
        path: PathBuf,
        /// The kind of key expected.
        what: &'static str,
    },
    /// The keystore could not be opened or its keys read or made.
    #[error("cannot {action} the keystore's keys")]
    Keystore {
        /// `open`, `list` or `create`.
        action: &'static str,
        /// The wallet's error.
        #[source]
        source: WalletError,
    },
    /// The system's random number generator failed.
    #[error("cannot draw the API secret: {0}")]
    Random(getrandom::Error),
    /// The libp2p identity could not be encoded.
    #[error("cannot encode the libp2p key")]
    EncodeKey(#[source] libp2p::identity::DecodingError),
    /// `FULLNODE_API_INFO` does not name a usable Lotus node.
    #[error("cannot use {FULLNODE_API_INFO}")]
    ChainConfig(#[source] LotusConfigError),
    /// The chain is not the network configured, or names one paych has no preset for.
    #[error("cannot run on this chain")]
    WrongChain(#[source] NetworkCheckError),
    /// The embedded devnet could not start.
    #[error("cannot start the devnet")]
    Devnet(#[source] ChainError),
    /// The datastore could not be opened.
    #[error("cannot open the datastore")]
    Datastore(#[source] StoreError),
    /// The manager could not start (its chain unreachable, its store unreadable, …).
    #[error("cannot start the payment-channel manager")]
    Manager(#[source] ChainMessageError),
    /// The watchtower could not be set up.
    #[error("cannot start the watchtower: {0}")]
    Watchtower(String),
    /// The store could not be flushed on shutdown.
    #[error("cannot flush the store")]
    Flush(#[source] StoreError),
    /// The retrieval provider's blob store could not be opened.
    #[error("cannot open the blob store {}", path.display())]
    Blobs {
        /// The blob directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: PublishError,
    },
    /// The libp2p network could not be built or could not listen.
    #[error("cannot start the libp2p network")]
    Network(#[from] NetworkError),
    /// The API could not listen.
    #[error("cannot serve the API on {addr}")]
    Api {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: ServeError,
    },
}
