//! The Filecoin networks paych runs on, as presets: one table ([`PRESETS`]) with, for each
//! network, the prefix its addresses are written with, the name its chain answers to
//! `StateNetworkName`, and the chain constants the manager relies on.
//!
//! This module owns those facts and the check that a chain is the network a node was
//! configured for ([`check_chain`]). It never reads configuration or the environment: the
//! daemon decides which network applies (`--network`, the config's `network`, or the
//! chain's own name) and asks here what that network means.
//!
//! Sources, as of the snapshots the values were read from:
//! - Lotus `build/buildconstants/params_shared_vals.go`: `MessageConfidence = 5`, the depth
//!   Lotus's payment-channel manager and `lotus paych` wait for (`paychmgr/simple.go`,
//!   `cli/paych.go` call `StateWaitMsg(…, buildconstants.MessageConfidence, …)`).
//! - Lotus `build/buildconstants/params_mainnet.go` and `params_calibnet.go`:
//!   `BlockDelaySecs = builtin2.EpochDurationSeconds` (30 s); mainnet writes `f` addresses
//!   (`SetAddressNetwork(address.Mainnet)`), calibnet `t` (`address.Testnet`); calibnet's
//!   network bundle and genesis name is `calibrationnet`.
//! - Lotus `chain/consensus/filcns/upgrades.go` `UpgradeLiftoff`: sets mainnet's state
//!   network name to `mainnet` (its genesis said `testnetnet`), which is what
//!   `StateNetworkName` reads (`node/impl/full/state.go`, `chain/stmgr/utils.go`).
//! - builtin-actors `actors/paych/src/types.rs`: `SETTLE_DELAY = EPOCHS_IN_HOUR * 12`, with
//!   `EPOCH_DURATION_SECONDS = 30` (`runtime/src/builtin/network.rs`): 1440 epochs on every
//!   network, the actor being the same code everywhere.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::chain::{Chain, ChainError};
use crate::types::{ChainEpoch, Network, SETTLE_DELAY};

/// The name paych's own devnet (embedded or `paych devnet`) answers to `StateNetworkName`.
pub const DEVNET_CHAIN_NAME: &str = "paych-devnet";

/// Lotus's `MessageConfidence`: epochs a message is buried under before it counts.
pub const LOTUS_MESSAGE_CONFIDENCE: u64 = 5;

/// Filecoin's epoch duration on mainnet and calibnet (`BlockDelaySecs`).
pub const FILECOIN_BLOCK_TIME: Duration = Duration::from_secs(30);

/// The epoch duration of paych's devnet when it mines on a timer.
pub const DEVNET_BLOCK_TIME: Duration = Duration::from_secs(1);

/// A network paych has a preset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FilNetwork {
    /// Filecoin mainnet.
    Mainnet,
    /// The calibration network, Filecoin's public test network.
    Calibnet,
    /// paych's own devnet: the embedded chain or `paych devnet`.
    Devnet,
}

/// What a network means to a node: how it writes addresses, how it knows the chain is that
/// network, and the chain constants the manager works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPreset {
    /// The network.
    pub network: FilNetwork,
    /// Its name in `--network` and the config's `network` key.
    pub name: &'static str,
    /// The prefix its addresses are written with: `f` (mainnet) or `t` (test networks).
    pub address_network: Network,
    /// What its chain answers to `StateNetworkName`.
    pub chain_name: &'static str,
    /// Time between epochs.
    pub block_time: Duration,
    /// Epochs a message must be buried under before it counts (the node's own messages, and
    /// the channel balance a payee credits vouchers against).
    pub confidence: u64,
    /// Epochs between `Settle` and the earliest `Collect` (the actor's `SETTLE_DELAY`).
    pub settle_delay: ChainEpoch,
}

/// Every network's preset, in one table (sources in the module doc).
pub const PRESETS: [NetworkPreset; 3] = [
    NetworkPreset {
        network: FilNetwork::Mainnet,
        name: "mainnet",
        address_network: Network::Mainnet,
        chain_name: "mainnet",
        block_time: FILECOIN_BLOCK_TIME,
        confidence: LOTUS_MESSAGE_CONFIDENCE,
        settle_delay: SETTLE_DELAY,
    },
    NetworkPreset {
        network: FilNetwork::Calibnet,
        name: "calibnet",
        address_network: Network::Testnet,
        chain_name: "calibrationnet",
        block_time: FILECOIN_BLOCK_TIME,
        confidence: LOTUS_MESSAGE_CONFIDENCE,
        settle_delay: SETTLE_DELAY,
    },
    NetworkPreset {
        network: FilNetwork::Devnet,
        name: "devnet",
        address_network: Network::Testnet,
        chain_name: DEVNET_CHAIN_NAME,
        block_time: DEVNET_BLOCK_TIME,
        // The devnet never reorganises: a landed message is final.
        confidence: 0,
        settle_delay: SETTLE_DELAY,
    },
];

impl FilNetwork {
    /// Every network, in the table's order.
    pub const ALL: [FilNetwork; 3] =
        [FilNetwork::Mainnet, FilNetwork::Calibnet, FilNetwork::Devnet];

    /// The network's preset.
    pub fn preset(self) -> &'static NetworkPreset {
        // The table holds one row per variant, in declaration order.
        match self {
            FilNetwork::Mainnet => &PRESETS[0],
            FilNetwork::Calibnet => &PRESETS[1],
            FilNetwork::Devnet => &PRESETS[2],
        }
    }

    /// Its name in `--network` and the config (`mainnet`, `calibnet`, `devnet`).
    pub fn name(self) -> &'static str {
        self.preset().name
    }

    /// The prefix its addresses are written with.
    pub fn address_network(self) -> Network {
        self.preset().address_network
    }

    /// The network whose chain answers `chain_name` to `StateNetworkName`, if paych has a
    /// preset for it.
    pub fn from_chain_name(chain_name: &str) -> Option<FilNetwork> {
        PRESETS.iter().find(|p| p.chain_name == chain_name).map(|p| p.network)
    }
}

impl fmt::Display for FilNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Makes every [`crate::types::Address`] printed with `Display` in this process carry
/// `network`'s prefix: fvm_shared keeps that prefix in one process-wide setting (`f` unless
/// set). For a process that runs one node (the `paych` binary); a library prints addresses
/// with [`crate::types::format_address`] and the node's network instead.
pub fn set_process_address_network(network: FilNetwork) {
    fvm_shared::address::set_current_network(network.address_network());
}

/// A network name that is not `mainnet`, `calibnet` or `devnet`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?}: expected \"mainnet\", \"calibnet\" or \"devnet\"")]
pub struct UnknownNetwork(pub String);

impl FromStr for FilNetwork {
    type Err = UnknownNetwork;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PRESETS
            .iter()
            .find(|p| p.name == text)
            .map(|p| p.network)
            .ok_or_else(|| UnknownNetwork(text.to_owned()))
    }
}

/// Why a chain is not the network a node is configured for, or cannot tell which it is.
#[derive(Debug, thiserror::Error)]
pub enum NetworkCheckError {
    /// The chain names itself another network than the one configured.
    #[error(
        "the chain is {chain_name:?}{}, but this node is configured for {expected} (whose \
         chain is {expected_chain_name:?}): set --network or the config's network to the \
         chain's network, or point FULLNODE_API_INFO at a {expected} node",
        known_as(*chain_name_network)
    )]
    Mismatch {
        /// The network configured.
        expected: FilNetwork,
        /// The name that network's chain answers.
        expected_chain_name: &'static str,
        /// The name the chain answered.
        chain_name: String,
        /// The network of that name, if paych has a preset for it.
        chain_name_network: Option<FilNetwork>,
    },
    /// No network is configured and the chain's name is none paych has a preset for.
    #[error(
        "the chain is {0:?}, a network paych has no preset for: paych runs on mainnet \
         (\"mainnet\"), calibnet (\"calibrationnet\") or its own devnet ({DEVNET_CHAIN_NAME:?})"
    )]
    UnknownChain(String),
    /// The chain could not be asked its name.
    #[error("cannot ask the chain its network name (StateNetworkName)")]
    Unreachable(#[source] ChainError),
}

fn known_as(network: Option<FilNetwork>) -> String {
    network.map(|n| format!(" ({n})")).unwrap_or_default()
}

/// The network of `chain`: `expected` when the chain answers its name, the chain's own
/// network when nothing is expected and paych has a preset for its name; otherwise an
/// error naming both.
pub async fn check_chain(
    chain: &dyn Chain,
    expected: Option<FilNetwork>,
) -> Result<FilNetwork, NetworkCheckError> {
    let chain_name = chain.network_name().await.map_err(NetworkCheckError::Unreachable)?;
    check_chain_name(&chain_name, expected)
}

/// [`check_chain`] for a chain that answered `chain_name`.
pub fn check_chain_name(
    chain_name: &str,
    expected: Option<FilNetwork>,
) -> Result<FilNetwork, NetworkCheckError> {
    let chain_name_network = FilNetwork::from_chain_name(chain_name);
    match (expected, chain_name_network) {
        (Some(expected), found) if found == Some(expected) => Ok(expected),
        (Some(expected), _) => Err(NetworkCheckError::Mismatch {
            expected,
            expected_chain_name: expected.preset().chain_name,
            chain_name: chain_name.to_owned(),
            chain_name_network,
        }),
        (None, Some(found)) => Ok(found),
        (None, None) => Err(NetworkCheckError::UnknownChain(chain_name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn each_network_has_one_row_and_reads_back_from_its_names() {
        for network in FilNetwork::ALL {
            let preset = network.preset();
            assert_eq!(preset.network, network);
            assert_eq!(preset.name.parse::<FilNetwork>().unwrap(), network);
            assert_eq!(FilNetwork::from_chain_name(preset.chain_name), Some(network));
        }
        assert_eq!(FilNetwork::Mainnet.address_network(), Network::Mainnet);
        assert_eq!(FilNetwork::Calibnet.address_network(), Network::Testnet);
        assert_eq!(FilNetwork::Devnet.address_network(), Network::Testnet);
    }

    #[test]
    fn testnet_is_not_a_network_name_since_it_could_mean_calibnet_or_the_devnet() {
        let refused = "testnet".parse::<FilNetwork>().unwrap_err().to_string();
        assert!(refused.contains("\"mainnet\", \"calibnet\" or \"devnet\""), "{refused}");
        assert!("Mainnet".parse::<FilNetwork>().is_err());
        assert!("calibrationnet".parse::<FilNetwork>().is_err());
    }

    #[test]
    fn a_chain_of_another_network_is_refused_with_both_names() {
        let refused = check_chain_name("calibrationnet", Some(FilNetwork::Mainnet)).unwrap_err();
        let text = refused.to_string();
        assert!(text.contains("\"calibrationnet\" (calibnet)"), "{text}");
        assert!(text.contains("configured for mainnet (whose chain is \"mainnet\")"), "{text}");
        let unknown = check_chain_name("localnet-1", Some(FilNetwork::Devnet)).unwrap_err();
        assert!(unknown.to_string().contains("\"localnet-1\", but"), "{unknown}");
    }

    #[test]
    fn with_nothing_configured_the_chain_names_its_network_or_is_refused() {
        assert_eq!(check_chain_name("mainnet", None).unwrap(), FilNetwork::Mainnet);
        assert_eq!(check_chain_name("calibrationnet", None).unwrap(), FilNetwork::Calibnet);
        assert_eq!(check_chain_name(DEVNET_CHAIN_NAME, None).unwrap(), FilNetwork::Devnet);
        let refused = check_chain_name("testnetnet", None).unwrap_err();
        assert!(matches!(refused, NetworkCheckError::UnknownChain(ref n) if n == "testnetnet"));
        assert_eq!(
            check_chain_name("calibrationnet", Some(FilNetwork::Calibnet)).unwrap(),
            FilNetwork::Calibnet
        );
    }
}
