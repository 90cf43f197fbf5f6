//! The `paych` binary: the daemon, the devnet, and the client commands of [`cli`].

mod bench;
mod cli;
mod testnet;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::network::{set_process_address_network, FilNetwork};
use paych_core::types::{
    format_address, format_fil, parse_address, parse_fil, Address, Network, SignatureType,
    SignedVoucher, TokenAmount,
};
use paych_node::daemon::DEFAULT_NETWORK;
use paych_node::parse_duration;

/// paych: a Filecoin payment-channel node.
#[derive(Parser)]
#[command(name = "paych", version, about)]
struct Cli {
    /// The network: mainnet (`f` addresses), calibnet or devnet (`t`); see
    /// docs/networks.md. For `paych daemon`, overrides the repo config's `network` (unset
    /// there too: the devnet on the embedded chain, the chain's own network against a Lotus
    /// node); the chain must answer the network's name. `paych devnet` and `paych testnet`
    /// run the devnet only.
    #[arg(long, global = true, value_enum)]
    network: Option<NetworkArg>,
    /// The repo of the daemon the client commands talk to (also accepted after the command).
    #[arg(long = "repo", id = "top_level_repo", value_name = "REPO")]
    repo: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `--network`'s values: the networks of [`paych_core::network::PRESETS`]. (`testnet`, the
/// flag's old value, is not one: it could mean calibnet or the devnet.)
#[derive(Clone, Copy, ValueEnum)]
enum NetworkArg {
    /// Filecoin mainnet.
    Mainnet,
    /// The calibration network.
    Calibnet,
    /// paych's devnet.
    Devnet,
}

impl From<NetworkArg> for FilNetwork {
    fn from(n: NetworkArg) -> Self {
        match n {
            NetworkArg::Mainnet => FilNetwork::Mainnet,
            NetworkArg::Calibnet => FilNetwork::Calibnet,
            NetworkArg::Devnet => FilNetwork::Devnet,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Work with vouchers.
    Voucher {
        #[command(subcommand)]
        command: VoucherCommand,
        #[command(flatten)]
        repo: cli::RepoArg,
    },
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Run a local devnet serving the Lotus JSON-RPC API (no authentication). Prints
    /// `FULLNODE_API_INFO=…` as its first line and runs until interrupted.
    Devnet(DevnetArgs),
    /// Run a testnet on this machine: a devnet, provider and client daemons, paid
    /// retrievals, reconciliation, settlement, and a report with its invariants checked.
    Testnet(testnet::TestnetArgs),
    /// Run the node: the JSON-RPC API, the paych wire protocols and the manager over a repo
    /// directory (see docs/operations.md). Runs until SIGINT or SIGTERM.
    Daemon(DaemonArgs),
    /// Measure payments between two in-process nodes on loopback beside the raw costs they
    /// are made of (request-response, sign, recover, store); see docs/benchmarks.md.
    Bench(bench::BenchArgs),
}

#[derive(clap::Args)]
struct DaemonArgs {
    /// The repo directory (default: $PAYCH_PATH, else ~/.paych).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// The libp2p listen multiaddr (default: the repo's config.toml).
    #[arg(long)]
    listen: Option<paych_node::daemon::Multiaddr>,
    /// The JSON-RPC listen address (default: the repo's config.toml).
    #[arg(long)]
    api: Option<SocketAddr>,
    /// Where a payee listens, for `Filecoin.PaychPay`: `ADDRESS=MULTIADDR/p2p/PEER_ID`;
    /// repeatable (added to the config's `peer.<address>` entries).
    #[arg(long = "peer", value_parser = paych_node::pay::parse_peer)]
    peers: Vec<(Address, paych_node::daemon::Multiaddr)>,
}

#[derive(clap::Args)]
struct DevnetArgs {
    /// The address to serve JSON-RPC on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:1234")]
    listen: SocketAddr,
    /// Time between epochs (`1s`, `500ms`, `2m`); `0s` mines only on `Devnet.Mine`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    block_time: Duration,
    /// Directory to keep the chain in, so that it restarts where it stopped.
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Fund an account at genesis: `ADDRESS=FIL` (e.g. `t1…=100`); repeatable.
    #[arg(long = "fund", value_parser = parse_funding)]
    fund: Vec<(Address, TokenAmount)>,
    /// Answer only the methods a Lotus gateway serves (the others: "method not found").
    #[arg(long)]
    gateway: bool,
}

/// Parses `ADDRESS=FIL`.
fn parse_funding(text: &str) -> Result<(Address, TokenAmount), String> {
    let (addr, amount) =
        text.split_once('=').ok_or_else(|| format!("{text:?}: expected ADDRESS=FIL"))?;
    let (addr, _) = parse_address(addr.trim()).map_err(|e| e.to_string())?;
    let amount = parse_fil(amount).map_err(|e| e.to_string())?;
    Ok((addr, amount))
}

#[derive(Subcommand)]
enum VoucherCommand {
    /// Decode a voucher from its text form (base64url CBOR) and print its fields.
    Decode {
        /// The voucher, as `paych voucher create` or `lotus paych voucher create` prints it.
        voucher: String,
    },
    #[command(flatten)]
    Client(cli::VoucherClientCommand),
}

/// The allocator: mimalloc, whose per-thread heaps free memory another thread allocated
/// without taking a lock (glibc's arenas do: a quarter of the futex calls of
/// `paych bench --route` were waits on them). Built without transparent huge pages
/// (`no_thp`): with them, the arenas it asks the kernel to back with 2 MiB pages made a
/// daemon's peak memory 70 MiB instead of 25, for no measured speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain of causes on one line, without a backtrace: a user reads it.
            eprintln!("Error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `default` level, or as `RUST_LOG` says.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let chosen_network = cli.network.map(FilNetwork::from);
    let network = chosen_network.unwrap_or(DEFAULT_NETWORK);
    if matches!(cli.command, Command::Devnet(_) | Command::Testnet(_))
        && network != FilNetwork::Devnet
    {
        anyhow::bail!("--network {network}: `paych devnet` and `paych testnet` run paych's devnet (--network devnet)");
    }
    // One network per process: every address printed carries its prefix. A daemon with no
    // network named sets it once it knows its chain's.
    set_process_address_network(network);
    if let Some(repo) = cli.repo {
        if matches!(cli.command, Command::Devnet(_) | Command::Daemon(_) | Command::Bench(_)) {
            anyhow::bail!("--repo before the command applies to client commands: write `paych daemon --repo DIR` or `paych devnet --repo DIR`");
        }
        cli::set_top_level_repo(repo);
    }
    // Servers log to stderr (RUST_LOG overrides the level); the testnet keeps its own output
    // clean and its daemons log to their files; client commands print only their answers.
    match cli.command {
        Command::Devnet(_) | Command::Daemon(_) => init_logging("info"),
        Command::Testnet(_) | Command::Bench(_) => init_logging("warn"),
        _ => {}
    }
    match cli.command {
        Command::Voucher { command: VoucherCommand::Client(command), repo } => {
            client_runtime()?.block_on(cli::run_voucher(
                command,
                &repo,
                chosen_network.map(FilNetwork::address_network),
            ))?;
        }
        Command::Client(command) => client_runtime()?
            .block_on(cli::run(command, chosen_network.map(FilNetwork::address_network)))?,
        Command::Voucher { command: VoucherCommand::Decode { voucher }, .. } => {
            let voucher = SignedVoucher::from_base64url(&voucher).context(
                "cannot decode the voucher: expected the unpadded base64url text form \
                 that `paych voucher create` prints",
            )?;
            print!("{}", describe_voucher(&voucher, network.address_network()));
        }
        Command::Devnet(args) => {
            server_runtime()?.block_on(run_devnet(args, network.address_network()))?;
        }
        Command::Testnet(args) => {
            let runtime = server_runtime()?;
            let json = args.json;
            let report = runtime.block_on(testnet::run(args, network.address_network()))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", testnet::render(&report));
            }
            if !report.invariants_ok {
                anyhow::bail!("an invariant failed");
            }
        }
        Command::Bench(args) => {
            server_runtime()?.block_on(bench::run(args))?;
        }
        Command::Daemon(args) => {
            server_runtime()?.block_on(run_daemon(args, chosen_network))?;
        }
    }
    Ok(())
}

/// The runtime of a server or a run of many nodes: one thread per core.
fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The runtime of a client command: one thread is plenty for a few HTTP calls.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn run_devnet(args: DevnetArgs, network: Network) -> anyhow::Result<()> {
    let config = DevnetConfig {
        block_time: (!args.block_time.is_zero()).then_some(args.block_time),
        genesis: args.fund,
        repo: args.repo,
        ..DevnetConfig::default()
    };
    let signal = ShutdownSignal::watch()?;
    let devnet = Devnet::new(config).context("cannot start the devnet")?;
    devnet.start_mining();
    let methods = if args.gateway {
        paych_node::rpc::devnet::Methods::Gateway
    } else {
        paych_node::rpc::devnet::Methods::FullNode
    };
    let server =
        paych_node::rpc::devnet::serve_methods(devnet.clone(), args.listen, methods).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "FULLNODE_API_INFO={}", server.api_info())?;
    stdout.flush()?;
    eprintln!(
        "devnet serving Lotus JSON-RPC on http://{}/rpc/v1; faucet {}; Ctrl-C to stop",
        server.local_addr(),
        format_address(&devnet.faucet_address(), network)
    );
    signal.received().await?;
    server.shutdown().await;
    Ok(())
}

async fn run_daemon(args: DaemonArgs, network: Option<FilNetwork>) -> anyhow::Result<()> {
    let repo = match args.repo {
        Some(repo) => repo,
        None => paych_node::daemon::default_repo()?,
    };
    let options = paych_node::daemon::DaemonOptions {
        repo,
        network,
        listen: args.listen,
        api: args.api,
        peers: args.peers,
        owns_process: true,
    };
    let signal = ShutdownSignal::watch()?;
    let daemon = paych_node::daemon::Daemon::start(options).await?;
    eprintln!(
        "paych daemon: network {}; repo {}; API on http://{}/rpc/v1; peer {} listening on {}; Ctrl-C to stop",
        daemon.chain_network(),
        daemon.repo().display(),
        daemon.api_addr(),
        daemon.network().local_peer_id(),
        daemon.listen_addrs().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    signal.received().await?;
    eprintln!("paych daemon: shutting down");
    Ok(daemon.shutdown().await?)
}

/// Ctrl-C (SIGINT) and SIGTERM, watched from the moment this is made: a server makes it
/// before it starts, so a signal that arrives while it starts (after its `api` file or its
/// API info is out, say) stops it cleanly once it is up instead of killing the process.
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the handlers.
    fn watch() -> anyhow::Result<ShutdownSignal> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignal {
                interrupt: signal(SignalKind::interrupt()).context("cannot watch Ctrl-C")?,
                terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignal {})
    }

    /// Resolves on the first Ctrl-C or SIGTERM since [`ShutdownSignal::watch`].
    async fn received(mut self) -> anyhow::Result<()> {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await.context("cannot watch Ctrl-C")?;
        Ok(())
    }
}

fn describe_voucher(v: &SignedVoucher, network: Network) -> String {
    let none = || "none".to_owned();
    let merges = if v.merges.is_empty() {
        none()
    } else {
        v.merges
            .iter()
            .map(|m| format!("lane {} at nonce {}", m.lane, m.nonce))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let extra = v.extra.as_ref().map_or_else(none, |e| {
        format!(
            "call {} method {} with 0x{}",
            format_address(&e.actor, network),
            e.method,
            hex::encode(&e.data)
        )
    });
    let secret = if v.secret_hash.is_empty() { none() } else { hex::encode(&v.secret_hash) };
    let signature = v.signature.as_ref().map_or_else(
        || "unsigned".to_owned(),
        |s| {
            let kind = match s.sig_type {
                SignatureType::Secp256k1 => "secp256k1",
                SignatureType::BLS => "bls",
            };
            format!("{kind} {}", hex::encode(&s.bytes))
        },
    );
    let rows = [
        ("Channel", format_address(&v.channel_addr, network)),
        ("Lane", v.lane.to_string()),
        ("Nonce", v.nonce.to_string()),
        ("Amount", format!("{} ({} attoFIL)", format_fil(&v.amount), v.amount.atto())),
        ("TimeLockMin", v.time_lock_min.to_string()),
        ("TimeLockMax", v.time_lock_max.to_string()),
        ("MinSettleHeight", v.min_settle_height.to_string()),
        ("SecretHash", secret),
        ("Extra", extra),
        ("Merges", merges),
        ("Signature", signature),
    ];
    rows.iter().map(|(k, v)| format!("{k:<16} {v}\n")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn reads_block_times() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "1", "s", "1.5s", "-1s", "1 s", "1d", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_genesis_funding() {
        let (addr, amount) = parse_funding("t01001=2.5").unwrap();
        assert_eq!(addr, Address::new_id(1001));
        assert_eq!(amount, TokenAmount::from_atto(2_500_000_000_000_000_000u64));
        for bad in ["t01001", "t01001=", "=5", "x01001=5", "t01001=-1", "t01001=five"] {
            assert!(parse_funding(bad).is_err(), "{bad:?}");
        }
    }
}
