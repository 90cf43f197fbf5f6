//! The repo's `config.toml`: [`RepoConfig`], its defaults, its text and its parser.
//!
//! Only a TOML subset is read: one `key = value` per line, the value a double-quoted string
//! (no escapes) or a whole number; `#` starts a comment line; a `[hub]` line starts the
//! hub's section ([`HubConfig`]), whose keys may also be written `hub.<key>` before it. A bad line is a
//! [`ConfigError`] naming the line and the key; nothing here reads or writes files.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

pub use libp2p::Multiaddr;
use paych_core::combine::ReconcilePolicy;
use paych_core::manager::TopUpPolicy;
use paych_core::network::FilNetwork;
use paych_core::redemption::IntakePolicy;
use paych_core::types::{format_address, Address, Network, TokenAmount};

use crate::host::HostConfig;
use crate::inbound::InboundConfig;
use crate::metrics::Metrics;
use crate::network::NetworkConfig;
use crate::pay::parse_peer;
use crate::retrieval::RetrievalLimits;
use crate::retrieval::RetrievalProvider;
use crate::route::{HubConfig, HubConfigError};

/// The most `max_inbound_connections_per_ip` may be: every inbound connection slot.
pub const MAX_INBOUND_CONNECTIONS_PER_IP: u32 =
    paych_protocol::behaviour::DEFAULT_MAX_ESTABLISHED_INCOMING;
/// The network of a command that names none (`paych devnet`, `paych testnet`, `paych
/// voucher decode`), and of a daemon on its embedded devnet.
pub const DEFAULT_NETWORK: FilNetwork = FilNetwork::Devnet;
/// The most epochs `landing_margin` and `max_settle_delay` may be (a year of 30 s epochs).
pub const MAX_EPOCH_SETTING: i64 = 1_051_200;
/// The environment variable naming a CA file for the Lotus API; it overrides
/// `lotus_ca_file`.
pub const LOTUS_CA_FILE_ENV: &str = "PAYCH_LOTUS_CA_FILE";

/// Why `config.toml`'s text was refused (the caller names the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A line that is neither blank, a comment, nor `key = value`.
    #[error("line {line}: expected key = value")]
    NotKeyValue {
        /// The line number, from 1.
        line: usize,
    },
    /// A string value without its closing quote.
    #[error("line {line}: {key}: unterminated string")]
    Unterminated {
        /// The line number, from 1.
        line: usize,
        /// The key.
        key: String,
    },
    /// A key this node does not know.
    #[error("line {line}: unknown key {key:?}")]
    UnknownKey {
        /// The line number, from 1.
        line: usize,
        /// The key.
        key: String,
    },
    /// A known key whose value is not what it takes.
    #[error("line {line}: {key} {reason}")]
    BadValue {
        /// The line number, from 1.
        line: usize,
        /// The key.
        key: String,
        /// What the value must be, and what was wrong with it.
        reason: String,
    },
    /// `top_up_low` above `top_up_high`.
    #[error("top_up_low is above top_up_high")]
    TopUpInverted,
    /// Only one of `top_up_low` and `top_up_high`.
    #[error("set both top_up_low and top_up_high, or neither")]
    TopUpHalfSet,
    /// A `[section]` this node does not know.
    #[error("line {line}: unknown section [{section}]")]
    UnknownSection {
        /// The line number, from 1.
        line: usize,
        /// The section's name.
        section: String,
    },
    /// The `[hub]` section, read whole, could not work.
    #[error(transparent)]
    Hub(#[from] HubConfigError),
}

/// The repo's `config.toml` (see the module doc for the syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// `network` (`"mainnet"`, `"calibnet"` or `"devnet"`): the network the node runs on —
    /// its address prefix (`f` or `t`) in the API, the logs and this file, the name its
    /// chain must answer to `StateNetworkName`, and its chain constants
    /// ([`paych_core::network::PRESETS`]). Unset: the devnet on the embedded chain, the
    /// chain's own network against a Lotus node (refused if paych has no preset for it).
    pub network: Option<FilNetwork>,
    /// `listen`: the libp2p listen multiaddr.
    pub listen: Multiaddr,
    /// `announce`: the multiaddr handed to peers instead of the listen address (a relay's,
    /// or a public address in front of a NAT, as Lotus's `Libp2p.AnnounceAddresses`): the
    /// node's signed peer records carry it and identify shares only it. Unset: the listen
    /// addresses.
    pub announce: Option<Multiaddr>,
    /// `dial_from`: the local IP address outbound libp2p connections leave from (one the
    /// host has; any 127.0.0.0/8 address on Linux). Unset: the system's choice.
    pub dial_from: Option<IpAddr>,
    /// `api`: the JSON-RPC listen address.
    pub api: SocketAddr,
    /// `min_delta`: the least (attoFIL) an inbound voucher must add to its lane.
    pub min_delta: TokenAmount,
    /// `max_inbound_per_peer`: inbound voucher requests one peer may have in flight.
    pub max_inbound_per_peer: usize,
    /// `max_inbound_connections_per_ip`: inbound libp2p connections, pending and
    /// established, one remote address (IPv4, or IPv6 /64) may hold; from 1 to
    /// [`MAX_INBOUND_CONNECTIONS_PER_IP`].
    pub max_inbound_connections_per_ip: u32,
    /// `reconcile_min_discount`: the least discount (attoFIL) this node, as a payer, asks
    /// for folding vouchers into a combined one.
    pub reconcile_min_discount: TokenAmount,
    /// `reconcile_min_discount_per_voucher`: the least discount (attoFIL) per voucher folded.
    pub reconcile_min_discount_per_voucher: TokenAmount,
    /// `reconcile_max_vouchers`: the most vouchers one reconcile request may fold.
    pub reconcile_max_vouchers: usize,
    /// `max_reconcile_per_peer`: inbound reconcile requests one peer may have in flight.
    pub max_reconcile_per_peer: usize,
    /// `reconcile_fee_per_message`: what one redeeming message costs (attoFIL); as a payee,
    /// this node asks for the vouchers' sum less half the fees a reconciliation saves.
    pub reconcile_fee_per_message: TokenAmount,
    /// `retrieval_max_bytes_in_flight_per_peer`: bytes of retrieval responses (manifests and
    /// chunks) one peer may have in flight; beyond, `RateLimited`.
    pub retrieval_max_bytes_per_peer: usize,
    /// `retrieval_max_bytes_in_flight`: bytes of retrieval responses in flight over all
    /// peers; beyond, `RateLimited`.
    pub retrieval_max_bytes: usize,
    /// `retrieval_window_initial`: the credit window (bytes) a retrieval flow starts with:
    /// how far this node, as a provider, serves ahead of payment at first (never above the
    /// largest).
    pub retrieval_window_initial: u64,
    /// `retrieval_window_max`: the largest a flow's credit window grows (bytes), 1 to 2^30.
    pub retrieval_window_max: u64,
    /// `confidence`: epochs a message (an add-funds, say) must be buried under before it
    /// counts — for the node's own messages, and for the channel balance a payee credits
    /// vouchers against. Unset: the network's (5 on mainnet and calibnet, as Lotus's
    /// `MessageConfidence`; 0 on the devnet).
    pub confidence: Option<u64>,
    /// `accept_time_locks` (0 or 1): as a payee, take time-locked vouchers (counted for what
    /// they are sure to be worth, redeemed before their lock); refused by default, as Lotus.
    pub accept_time_locks: bool,
    /// `landing_margin`: epochs a payee leaves for its messages to land — a voucher counts
    /// only if it can still be redeemed that long after the next epoch, before `settling_at`.
    pub landing_margin: i64,
    /// `max_settle_delay`: the furthest beyond the head (epochs) a voucher's
    /// `min_settle_height` may lie. Unset: the network's settle delay (1440 epochs).
    pub max_settle_delay: Option<i64>,
    /// `peer.<address> = "<multiaddr>/p2p/<peer id>"`: where payee `<address>` listens.
    pub peers: BTreeMap<Address, Multiaddr>,
    /// `top_up_low` and `top_up_high` (attoFIL): when an outbound channel's available funds
    /// fall below the low water, funds are added in the background up to the high water.
    /// Off unless both are set.
    pub top_up: Option<TopUpPolicy>,
    /// `lotus_ca_file`: a PEM file of CA certificates the Lotus client trusts for an `https`
    /// API besides the system's roots (a private node's own CA). [`LOTUS_CA_FILE_ENV`]
    /// overrides it.
    pub lotus_ca_file: Option<PathBuf>,
    /// `[hub]`: routing payments as a hub (off by default; docs/hub.md).
    pub hub: HubConfig,
}

impl Default for RepoConfig {
    fn default() -> Self {
        let network = NetworkConfig::default();
        let reconcile = ReconcilePolicy::default();
        let retrieval = RetrievalLimits::default();
        let intake = IntakePolicy::default();
        RepoConfig {
            network: None,
            listen: "/ip4/0.0.0.0/tcp/24001".parse().unwrap_or_else(|_| Multiaddr::empty()),
            announce: None,
            dial_from: None,
            api: SocketAddr::from(([127, 0, 0, 1], 3456)),
            min_delta: TokenAmount::default(),
            max_inbound_per_peer: network.max_inbound_per_peer,
            max_inbound_connections_per_ip: paych_protocol::Config::default().max_inbound_per_ip,
            reconcile_min_discount: reconcile.min_discount,
            reconcile_min_discount_per_voucher: reconcile.min_discount_per_voucher,
            reconcile_max_vouchers: reconcile.max_vouchers,
            max_reconcile_per_peer: network.max_reconcile_per_peer,
            reconcile_fee_per_message: TokenAmount::default(),
            retrieval_max_bytes_per_peer: retrieval.max_bytes_per_peer,
            retrieval_max_bytes: retrieval.max_bytes,
            retrieval_window_initial: retrieval.window_initial,
            retrieval_window_max: retrieval.window_max,
            confidence: None,
            accept_time_locks: intake.accept_time_locks,
            landing_margin: intake.landing_margin,
            max_settle_delay: None,
            peers: BTreeMap::new(),
            top_up: None,
            lotus_ca_file: None,
            hub: HubConfig::default(),
        }
    }
}

impl RepoConfig {
    /// The file's text.
    pub fn to_text(&self) -> String {
        format!(
            "# paych daemon configuration (a TOML subset: `key = \"string\"` or `key = number`)\n\
             # The network: \"mainnet\" (f… addresses), \"calibnet\" or \"devnet\" (t…). The\n\
             # chain must answer its name to StateNetworkName (mainnet, calibrationnet,\n\
             # paych-devnet). Unset: the devnet on the embedded chain, the chain's own network\n\
             # against a Lotus node (see docs/networks.md).\n{}\
             # The libp2p listen multiaddr.\n\
             listen = \"{}\"\n\
             # The multiaddr handed to peers instead of the listen address (a relay's, or a\n\
             # public one in front of a NAT); the local IP address outbound connections leave\n\
             # from. Unset: the listen addresses; the system's choice.\n{}{}\
             # The JSON-RPC API's listen address (keep it on loopback).\n\
             api = \"{}\"\n\
             # The least an inbound voucher must add to its lane, in attoFIL.\n\
             min_delta = \"{}\"\n\
             # Inbound voucher requests one peer may have in flight.\n\
             max_inbound_per_peer = {}\n\
             # Inbound libp2p connections one IP address (an IPv6 /64) may hold at once, from 1\n\
             # to {}. Keep it small: peer ids cost nothing, so this is what stops one host\n\
             # from taking every connection slot.\n\
             max_inbound_connections_per_ip = {}\n\
             # Auto top-up of outbound channels (attoFIL): below top_up_low, add funds up to\n\
             # top_up_high. Off unless both are set.\n{}\
             # As a payer: the least discount (attoFIL) asked for a reconciliation, in all\n\
             # and per voucher folded, and the most vouchers one request may fold.\n\
             reconcile_min_discount = \"{}\"\n\
             reconcile_min_discount_per_voucher = \"{}\"\n\
             reconcile_max_vouchers = {}\n\
             # Inbound reconcile requests one peer may have in flight.\n\
             max_reconcile_per_peer = {}\n\
             # As a payee: the fee (attoFIL) of one redeeming message, half of whose saving\n\
             # a reconcile request gives the payer.\n\
             reconcile_fee_per_message = \"{}\"\n\
             # As a retrieval provider: the bytes of responses (manifests and chunks) in\n\
             # flight, per peer and in all; beyond, requests are answered RateLimited.\n\
             retrieval_max_bytes_in_flight_per_peer = {}\n\
             retrieval_max_bytes_in_flight = {}\n\
             # As a retrieval provider: the credit window (bytes) a flow starts with, and the\n\
             # largest it grows to as the client pays; unpaid, a client holds at most that.\n\
             retrieval_window_initial = {}\n\
             retrieval_window_max = {}\n\
             # Epochs a message must be buried under before it counts (the node's own, and\n\
             # the channel balance a payee credits against). Unset: the network's, {} on\n\
             # mainnet and calibnet (Lotus's MessageConfidence), 0 on the devnet.\n{}\
             # As a payee: take time-locked vouchers (1) or refuse them as Lotus does (0); the\n\
             # epochs left for a message to land before settling_at or a voucher's lock; the\n\
             # furthest beyond the head a voucher's min_settle_height may lie (unset: the\n\
             # network's settle delay, {} epochs).\n\
             accept_time_locks = {}\n\
             landing_margin = {}\n{}\
             # Payees' libp2p addresses, for PaychPay: peer.<address> = \"<multiaddr>/p2p/<id>\"\n{}\
             # A PEM file of CA certificates trusted for an https Lotus API, besides the\n\
             # system's roots (${LOTUS_CA_FILE_ENV} overrides it).\n{}{}",
            self.network.map(|n| format!("network = \"{n}\"\n")).unwrap_or_default(),
            self.listen,
            self.announce.as_ref().map(|a| format!("announce = \"{a}\"\n")).unwrap_or_default(),
            self.dial_from.map(|ip| format!("dial_from = \"{ip}\"\n")).unwrap_or_default(),
            self.api,
            self.min_delta.atto(),
            self.max_inbound_per_peer,
            MAX_INBOUND_CONNECTIONS_PER_IP,
            self.max_inbound_connections_per_ip,
            self.top_up_text(),
            self.reconcile_min_discount.atto(),
            self.reconcile_min_discount_per_voucher.atto(),
            self.reconcile_max_vouchers,
            self.max_reconcile_per_peer,
            self.reconcile_fee_per_message.atto(),
            self.retrieval_max_bytes_per_peer,
            self.retrieval_max_bytes,
            self.retrieval_window_initial,
            self.retrieval_window_max,
            FilNetwork::Mainnet.preset().confidence,
            self.confidence.map(|depth| format!("confidence = {depth}\n")).unwrap_or_default(),
            FilNetwork::Mainnet.preset().settle_delay,
            u8::from(self.accept_time_locks),
            self.landing_margin,
            self.max_settle_delay
                .map(|delay| format!("max_settle_delay = {delay}\n"))
                .unwrap_or_default(),
            self.peers_text(),
            self.lotus_ca_file
                .as_ref()
                .map(|path| format!("lotus_ca_file = \"{}\"\n", path.display()))
                .unwrap_or_default(),
            self.hub.to_text(),
        )
    }

    fn top_up_text(&self) -> String {
        self.top_up
            .as_ref()
            .map(|p| {
                format!(
                    "top_up_low = \"{}\"\ntop_up_high = \"{}\"\n",
                    p.low_water.atto(),
                    p.high_water.atto()
                )
            })
            .unwrap_or_default()
    }

    fn peers_text(&self) -> String {
        self.peers
            .iter()
            .map(|(a, m)| format!("peer.{} = \"{m}\"\n", format_address(a, self.address_network())))
            .collect()
    }

    /// Parses the file's text; unset keys keep their defaults, unknown keys are errors.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config = RepoConfig::default();
        let mut water = TopUpWater::default();
        let mut section: Option<&str> = None;
        for (n, line) in text.lines().enumerate() {
            if let Some(name) = section_header(line) {
                if name != "hub" {
                    return Err(ConfigError::UnknownSection { line: n + 1, section: name.into() });
                }
                section = Some(name);
                continue;
            }
            let Some((key, value)) = key_value(n + 1, line)? else { continue };
            let key = match section {
                Some(section) => format!("{section}.{key}"),
                None => key.to_owned(),
            };
            let key = key.as_str();
            config.set(key, value, &mut water).map_err(|refusal| match refusal {
                Refusal::UnknownKey => ConfigError::UnknownKey { line: n + 1, key: key.into() },
                Refusal::Bad(reason) => {
                    ConfigError::BadValue { line: n + 1, key: key.into(), reason }
                }
            })?;
        }
        config.top_up = water.policy()?;
        config.hub.validate()?;
        Ok(config)
    }

    /// Sets `key` to `value`; a top-up water mark goes to `water` until both are read.
    fn set(&mut self, key: &str, value: &str, water: &mut TopUpWater) -> Result<(), Refusal> {
        match key {
            "network" => self.network = Some(network_of(value)?),
            "listen" => self.listen = parsed(value, "is not a multiaddr")?,
            "announce" => self.announce = Some(announce_addr(value)?),
            "dial_from" => self.dial_from = Some(parsed(value, "is not an IP address")?),
            "api" => self.api = parsed(value, "is not an address (IP:PORT)")?,
            "min_delta" => self.min_delta = atto(value)?,
            "reconcile_min_discount" => self.reconcile_min_discount = atto(value)?,
            "reconcile_min_discount_per_voucher" => {
                self.reconcile_min_discount_per_voucher = atto(value)?
            }
            "reconcile_fee_per_message" => self.reconcile_fee_per_message = atto(value)?,
            "reconcile_max_vouchers" => self.reconcile_max_vouchers = number(value)?,
            "max_reconcile_per_peer" => self.max_reconcile_per_peer = number(value)?,
            "top_up_low" => water.low = Some(atto(value)?),
            "top_up_high" => water.high = Some(atto(value)?),
            "retrieval_max_bytes_in_flight_per_peer" => {
                self.retrieval_max_bytes_per_peer = number(value)?
            }
            "retrieval_max_bytes_in_flight" => self.retrieval_max_bytes = number(value)?,
            "retrieval_window_initial" => self.retrieval_window_initial = window(value)?,
            "retrieval_window_max" => self.retrieval_window_max = window(value)?,
            "max_inbound_per_peer" => self.max_inbound_per_peer = number(value)?,
            "max_inbound_connections_per_ip" => {
                self.max_inbound_connections_per_ip = connections_per_ip(value)?
            }
            "confidence" => self.confidence = Some(number(value)?),
            "accept_time_locks" => self.accept_time_locks = flag(value)?,
            "landing_margin" => self.landing_margin = epochs(value)?,
            "max_settle_delay" => self.max_settle_delay = Some(epochs(value)?),
            "lotus_ca_file" if value.is_empty() => {
                return Err(Refusal::Bad("must name a file".to_owned()))
            }
            "lotus_ca_file" => self.lotus_ca_file = Some(PathBuf::from(value)),
            other if other.starts_with("hub.") => {
                let key = other.trim_start_matches("hub.");
                self.hub.set(key, value).ok_or(Refusal::UnknownKey)?.map_err(Refusal::Bad)?;
            }
            other => {
                let addr = other.strip_prefix("peer.").ok_or(Refusal::UnknownKey)?;
                let (addr, maddr) = parse_peer(&format!("{addr}={value}")).map_err(|e| {
                    Refusal::Bad(format!("is not \"<multiaddr>/p2p/<peer id>\": {e}"))
                })?;
                self.peers.insert(addr, maddr);
            }
        }
        Ok(())
    }

    /// The bounds of this node's work as a retrieval provider.
    pub fn retrieval_limits(&self) -> RetrievalLimits {
        RetrievalLimits {
            max_bytes_per_peer: self.retrieval_max_bytes_per_peer,
            max_bytes: self.retrieval_max_bytes,
            window_initial: self.retrieval_window_initial,
            window_max: self.retrieval_window_max,
            ..RetrievalLimits::default()
        }
    }

    /// The reconcile policy this node applies as a payer.
    pub fn reconcile_policy(&self) -> ReconcilePolicy {
        ReconcilePolicy {
            min_discount: self.reconcile_min_discount.clone(),
            min_discount_per_voucher: self.reconcile_min_discount_per_voucher.clone(),
            max_vouchers: self.reconcile_max_vouchers,
        }
    }

    /// This node's networking: the transport's limits and how inbound requests are
    /// answered, serving `retrieval` and counting in `metrics`.
    pub fn host_config(
        &self,
        retrieval: Arc<RetrievalProvider>,
        metrics: Arc<Metrics>,
    ) -> HostConfig {
        let network = NetworkConfig {
            protocol: paych_protocol::Config {
                max_inbound_per_ip: self.max_inbound_connections_per_ip,
                announce: self.announce.iter().cloned().collect(),
                dial_from: self.dial_from,
                ..paych_protocol::Config::default()
            },
            max_inbound_per_peer: self.max_inbound_per_peer,
            max_reconcile_per_peer: self.max_reconcile_per_peer,
            metrics: metrics.clone(),
            ..NetworkConfig::default()
        };
        let inbound = InboundConfig {
            min_delta: self.min_delta.clone(),
            reconcile_policy: self.reconcile_policy(),
            retrieval,
            metrics,
            route: Default::default(),
        };
        HostConfig { network, inbound }
    }

    /// The payee's intake policy on `network`.
    pub fn intake_policy(&self, network: FilNetwork) -> IntakePolicy {
        IntakePolicy {
            accept_time_locks: self.accept_time_locks,
            landing_margin: self.landing_margin,
            max_settle_delay: self.max_settle_delay.unwrap_or(network.preset().settle_delay),
        }
    }

    /// The prefix this file writes addresses with: its network's, else `t` (a network
    /// chosen from the chain later reads both).
    fn address_network(&self) -> Network {
        self.network.unwrap_or(DEFAULT_NETWORK).address_network()
    }
}

/// Why one value was refused, before the line and key are known.
enum Refusal {
    UnknownKey,
    Bad(String),
}

/// The top-up water marks read so far.
#[derive(Default)]
struct TopUpWater {
    low: Option<TokenAmount>,
    high: Option<TokenAmount>,
}

impl TopUpWater {
    fn policy(self) -> Result<Option<TopUpPolicy>, ConfigError> {
        match (self.low, self.high) {
            (None, None) => Ok(None),
            (Some(low_water), Some(high_water)) if low_water <= high_water => {
                Ok(Some(TopUpPolicy { low_water, high_water }))
            }
            (Some(_), Some(_)) => Err(ConfigError::TopUpInverted),
            _ => Err(ConfigError::TopUpHalfSet),
        }
    }
}

/// The name of a `[section]` line, if `text` is one.
fn section_header(text: &str) -> Option<&str> {
    text.trim().strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

/// Line `line`'s key and value (unquoted), or `None` for a blank or comment line.
fn key_value(line: usize, text: &str) -> Result<Option<(&str, &str)>, ConfigError> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let (key, value) = text.split_once('=').ok_or(ConfigError::NotKeyValue { line })?;
    let (key, value) = (key.trim(), value.trim());
    let value = match value.strip_prefix('"') {
        Some(rest) => rest
            .strip_suffix('"')
            .ok_or_else(|| ConfigError::Unterminated { line, key: key.into() })?,
        None => value,
    };
    Ok(Some((key, value)))
}

fn parsed<T: FromStr>(value: &str, what: &str) -> Result<T, Refusal>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| Refusal::Bad(format!("{what} ({e})")))
}

fn number<T: FromStr>(value: &str) -> Result<T, Refusal>
where
    T::Err: std::fmt::Display,
{
    parsed(value, "is not a whole number in range")
}

/// A credit window in bytes: 1 to the protocol's largest.
fn window(value: &str) -> Result<u64, Refusal> {
    let bytes: u64 = number(value)?;
    if bytes == 0 || bytes > paych_protocol::retrieval::MAX_WINDOW_BYTES {
        return Err(Refusal::Bad(format!(
            "must be 1 to {} bytes",
            paych_protocol::retrieval::MAX_WINDOW_BYTES
        )));
    }
    Ok(bytes)
}

fn atto(value: &str) -> Result<TokenAmount, Refusal> {
    parsed::<u128>(value, "is not an attoFIL amount").map(TokenAmount::from_atto)
}

/// A network name; `testnet` (what this key took before networks were presets) is refused
/// with what to write instead, since it could mean calibnet or the devnet.
fn network_of(value: &str) -> Result<FilNetwork, Refusal> {
    match value {
        "testnet" => Err(Refusal::Bad(
            "\"testnet\" is no longer a network: write \"calibnet\" (the calibration network) \
             or \"devnet\" (paych's devnet)"
                .into(),
        )),
        _ => value
            .parse()
            .map_err(|e: paych_core::network::UnknownNetwork| Refusal::Bad(e.to_string())),
    }
}

/// A transport multiaddr (`/ip4/…/tcp/…`): the node's peer id is not part of it.
fn announce_addr(value: &str) -> Result<Multiaddr, Refusal> {
    let addr: Multiaddr = parsed(value, "is not a multiaddr")?;
    if addr.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_))) {
        return Err(Refusal::Bad("must not name a peer id (/p2p/…)".into()));
    }
    if addr.is_empty() {
        return Err(Refusal::Bad("must name an address".into()));
    }
    Ok(addr)
}

fn flag(value: &str) -> Result<bool, Refusal> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(Refusal::Bad("is 0 or 1".into())),
    }
}

fn epochs(value: &str) -> Result<i64, Refusal> {
    value
        .parse()
        .ok()
        .filter(|e| (0..=MAX_EPOCH_SETTING).contains(e))
        .ok_or_else(|| Refusal::Bad(format!("must be epochs from 0 to {MAX_EPOCH_SETTING}")))
}

fn connections_per_ip(value: &str) -> Result<u32, Refusal> {
    let max: u32 = number(value)?;
    if !(1..=MAX_INBOUND_CONNECTIONS_PER_IP).contains(&max) {
        return Err(Refusal::Bad(format!(
            "must be from 1 to {MAX_INBOUND_CONNECTIONS_PER_IP} (the inbound connections in all)"
        )));
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_per_ip_connection_cap_is_read_from_the_config_and_refused_out_of_range() {
        assert_eq!(
            RepoConfig::default().max_inbound_connections_per_ip,
            paych_protocol::ip_limits::DEFAULT_MAX_INBOUND_PER_IP
        );
        let config = RepoConfig::parse("max_inbound_connections_per_ip = 3").unwrap();
        assert_eq!(config.max_inbound_connections_per_ip, 3);
        let most = format!("max_inbound_connections_per_ip = {MAX_INBOUND_CONNECTIONS_PER_IP}");
        assert_eq!(
            RepoConfig::parse(&most).unwrap().max_inbound_connections_per_ip,
            MAX_INBOUND_CONNECTIONS_PER_IP
        );
        for bad in [0, MAX_INBOUND_CONNECTIONS_PER_IP + 1] {
            let error = RepoConfig::parse(&format!("max_inbound_connections_per_ip = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("max_inbound_connections_per_ip must be from 1"), "{error}");
        }
        assert!(RepoConfig::parse("max_inbound_connections_per_ip = \"x\"").is_err());
    }

    #[test]
    fn the_payees_intake_policy_and_confidence_are_read_from_the_config_and_checked() {
        let config = RepoConfig::parse(
            "confidence = 3\naccept_time_locks = 1\nlanding_margin = 40\nmax_settle_delay = 100",
        )
        .unwrap();
        assert_eq!(config.confidence, Some(3));
        assert!(config.accept_time_locks);
        assert_eq!((config.landing_margin, config.max_settle_delay), (40, Some(100)));
        let defaults = RepoConfig::default();
        assert_eq!(defaults.confidence, None);
        assert!(!defaults.accept_time_locks);
        for bad in [
            "confidence = -1",
            "accept_time_locks = 2",
            "accept_time_locks = yes",
            "landing_margin = -5",
            "max_settle_delay = 99999999999",
        ] {
            assert!(RepoConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_network_is_read_from_the_config_and_testnet_is_refused_with_what_to_write() {
        for network in FilNetwork::ALL {
            let config = RepoConfig::parse(&format!("network = \"{network}\"")).unwrap();
            assert_eq!(config.network, Some(network));
            assert_eq!(RepoConfig::parse(&config.to_text()).unwrap(), config);
        }
        let unset = RepoConfig::default();
        assert_eq!(unset.network, None);
        assert!(!unset.to_text().contains("\nnetwork ="), "{}", unset.to_text());
        assert_eq!(unset.intake_policy(FilNetwork::Calibnet).max_settle_delay, 1440);
        let refused = RepoConfig::parse("network = \"testnet\"").unwrap_err().to_string();
        assert!(refused.contains("write \"calibnet\""), "{refused}");
        assert!(refused.contains("or \"devnet\""), "{refused}");
    }

    #[test]
    fn the_hub_section_is_read_after_its_header_and_refused_when_it_could_not_work() {
        let config = RepoConfig::parse(
            "min_delta = \"5\"\n[hub]\nenabled = 1\nfee_base = \"10\"\nfee_ppm = 500\n\
             max_amount = \"1000\"\ncollateral_window = 30\ncollateral_max_top_up = \"99\"\n",
        )
        .unwrap();
        assert_eq!(config.min_delta, TokenAmount::from_atto(5u64));
        assert!(config.hub.enabled);
        assert_eq!(config.hub.fee_base, TokenAmount::from_atto(10u64));
        assert_eq!(config.hub.fee_ppm, 500);
        assert_eq!(config.hub.max_amount, TokenAmount::from_atto(1000u64));
        let collateral = config.hub.collateral.clone().unwrap();
        assert_eq!((collateral.window, collateral.max_top_up), (30, TokenAmount::from_atto(99u64)));
        assert_eq!(RepoConfig::parse(&config.to_text()).unwrap(), config);
        assert_eq!(RepoConfig::parse("hub.fee_ppm = 7").unwrap().hub.fee_ppm, 7);
        assert!(!RepoConfig::default().hub.enabled);
        for (bad, says) in [
            ("[hub]\nfee_ppm = 1000001", "fee_ppm"),
            ("[hub]\nenabled = 1\nmax_amount = \"0\"", "max_amount"),
            ("[hub]\nmax_pending_count_per_payer = 0", "max_pending_count_per_payer"),
            ("[hub]\ncollateral_window = 5000", "collateral_window"),
            ("[hub]\ncollateral_min_top_up = \"9\"\ncollateral_max_top_up = \"1\"", "min_top_up"),
            ("[hub]\nenabled = yes", "enabled"),
            ("[hub]\nnope = 1", "hub.nope"),
            ("[hubs]\nenabled = 1", "unknown section [hubs]"),
        ] {
            let error = RepoConfig::parse(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn config_round_trips() {
        let config = RepoConfig {
            network: Some(FilNetwork::Mainnet),
            listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            announce: Some("/ip4/127.0.0.9/tcp/4001".parse().unwrap()),
            dial_from: Some("127.0.0.3".parse().unwrap()),
            api: "127.0.0.1:0".parse().unwrap(),
            min_delta: TokenAmount::from_atto(42u64),
            max_inbound_per_peer: 3,
            max_inbound_connections_per_ip: 5,
            reconcile_min_discount: TokenAmount::from_atto(5u64),
            reconcile_min_discount_per_voucher: TokenAmount::from_atto(2u64),
            reconcile_max_vouchers: 9,
            max_reconcile_per_peer: 4,
            reconcile_fee_per_message: TokenAmount::from_atto(1000u64),
            retrieval_max_bytes_per_peer: 1 << 20,
            retrieval_max_bytes: 1 << 24,
            retrieval_window_initial: 1 << 16,
            retrieval_window_max: 1 << 22,
            confidence: Some(7),
            accept_time_locks: true,
            landing_margin: 30,
            max_settle_delay: Some(2880),
            peers: [(
                Address::new_id(7),
                "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWR3xpchtdRaf8WMXv8dVjaKWqZQ5kS53rcFpHcwrSXqdm"
                    .parse()
                    .unwrap(),
            )]
            .into(),
            top_up: Some(TopUpPolicy {
                low_water: TokenAmount::from_atto(10u64),
                high_water: TokenAmount::from_atto(100u64),
            }),
            lotus_ca_file: Some("/etc/paych/lotus-ca.pem".into()),
            hub: HubConfig {
                enabled: true,
                fee_base: TokenAmount::from_atto(3u64),
                fee_ppm: 250,
                max_pending_count_per_payee: 9,
                collateral: Some(crate::route::CollateralPolicy {
                    window: 60,
                    min_top_up: TokenAmount::from_atto(1u64),
                    max_top_up: TokenAmount::from_atto(1000u64),
                }),
                ..HubConfig::default()
            },
        };
        assert_eq!(RepoConfig::parse(&config.to_text()).unwrap(), config);
        assert_eq!(RepoConfig::parse("").unwrap(), RepoConfig::default());
        for bad in [
            "listen",
            "nope = 1",
            "lotus_ca_file = \"\"",
            "api = \"x\"",
            "min_delta = \"-1\"",
            "reconcile_min_discount = \"x\"",
            "reconcile_max_vouchers = -1",
            "listen = \"/ip4",
            "announce = \"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWR3xpchtdRaf8WMXv8dVjaKWqZQ5kS53rcFpHcwrSXqdm\"",
            "announce = \"\"",
            "announce = \"tcp\"",
            "dial_from = \"127.0.0\"",
            "peer.t07 = \"/ip4/127.0.0.1/tcp/1\"",
            "top_up_low = \"5\"",
            "top_up_low = \"50\"\ntop_up_high = \"5\"",
            "top_up_high = \"x\"",
            "max_inbound_connections_per_ip = 0",
            "retrieval_window_max = 0",
            "retrieval_window_initial = 1073741825",
            "max_inbound_connections_per_ip = -1",
            "max_inbound_connections_per_ip = 225",
            "max_inbound_connections_per_ip = \"many\"",
            "network = \"testnet\"",
            "network = \"calibrationnet\"",
            "peer.x = \"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWR3xpchtdRaf8WMXv8dVjaKWqZQ5kS53rcFpHcwrSXqdm\"",
        ] {
            assert!(RepoConfig::parse(bad).is_err(), "{bad:?}");
        }
    }
}
