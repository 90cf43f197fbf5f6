//! The client commands of the `paych` binary: each one makes a few JSON-RPC calls to the
//! daemon running on the repo (`--repo`, else `$PAYCH_PATH`, else `~/.paych`) and prints the
//! answer as `lotus paych`, `lotus wallet` and `lotus net` print theirs (Lotus
//! `cli/paych.go`: the same words, flags and lines). Amounts are read and written in FIL as
//! Lotus writes them; vouchers travel as unpadded base64url CBOR; addresses print with the
//! prefix of the daemon's network. Commands that send a message wait for it ([`wait`]).

mod invoice;
mod sent;
mod show;
mod wait;
mod wallet;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use paych_core::types::{
    format_address, format_fil, parse_address, parse_fil, Address, Network, SignedVoucher,
    TokenAmount,
};
use paych_node::rpc::client::{ApiClient, ClientError};
use paych_node::rpc::methods::*;
use paych_node::rpc::params::{Bytes, KeyType, Root};

use sent::ChannelMessage;
use show::{fil, voucher_text};
use wait::{Awaited, Waiter};

/// The amounts the CLI accepts, for error messages.
const AMOUNT_FORMS: &str = "write FIL as `1.5` or `1.5 FIL`, or a sub-unit as `100 attoFIL` \
     (also milliFIL, microFIL, nanoFIL, picoFIL, femtoFIL)";

/// The repo of the daemon to talk to.
#[derive(clap::Args, Debug, Clone)]
pub struct RepoArg {
    /// The repo of the running daemon (default: $PAYCH_PATH, else ~/.paych).
    #[arg(long, global = true)]
    pub repo: Option<PathBuf>,
}

/// A channel address argument.
#[derive(clap::Args, Debug, Clone)]
pub struct ChannelArgs {
    /// The channel's address (t2…).
    #[arg(value_parser = address_arg)]
    pub channel: String,
    #[command(flatten)]
    repo: RepoArg,
}

/// How long a command waits for the message it sent.
#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// How long to wait for the message to land (`90s`, `10m`, `1h`); the message may
    /// still land after.
    #[arg(long, default_value = wait::DEFAULT_TIMEOUT, value_parser = paych_node::parse_duration)]
    pub timeout: Duration,
}

/// A channel whose message the command sends and waits for.
#[derive(clap::Args, Debug, Clone)]
pub struct ChannelWaitArgs {
    /// The channel's address (t2…).
    #[arg(value_parser = address_arg)]
    pub channel: String,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    repo: RepoArg,
}

/// A channel and an amount.
#[derive(clap::Args, Debug, Clone)]
pub struct ChannelAmountArgs {
    /// The channel's address (t2…).
    #[arg(value_parser = address_arg)]
    pub channel: String,
    /// The amount, in FIL (`1.5`, `1.5 FIL`, `100 attoFIL`).
    #[arg(value_parser = amount_arg, allow_negative_numbers = true)]
    pub amount: TokenAmount,
    #[command(flatten)]
    repo: RepoArg,
}

/// The client commands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Add funds to the channel from FROM to TO, creating it if needed; prints the channel's
    /// address once the message has landed (progress on standard error).
    AddFunds {
        /// The payer's address (a key of the daemon's wallet).
        #[arg(value_parser = address_arg)]
        from: String,
        /// The payee's address.
        #[arg(value_parser = address_arg)]
        to: String,
        /// The amount, in FIL.
        #[arg(value_parser = amount_arg, allow_negative_numbers = true)]
        amount: TokenAmount,
        /// Reserve the funds for vouchers (`PaychGet`) instead of only adding them
        /// (`PaychFund`).
        #[arg(long)]
        reserve: bool,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// List the channels the daemon tracks.
    List {
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Show a channel's funds, as `lotus paych status` does.
    Status {
        /// The channel's address (t2…).
        #[arg(value_parser = address_arg)]
        channel: String,
        /// Also print paych's own rows: direction, lifecycle, reservations, lanes and
        /// settlement.
        #[arg(long)]
        verbose: bool,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Show the channel from FROM to TO, as `lotus paych status-by-from-to` does.
    StatusByFromTo {
        /// The payer's address.
        #[arg(value_parser = address_arg)]
        from: String,
        /// The payee's address.
        #[arg(value_parser = address_arg)]
        to: String,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Settle a channel (starts the settlement delay); waits for the message.
    Settle(ChannelWaitArgs),
    /// Collect a settled channel's funds; waits for the message.
    Collect(ChannelWaitArgs),
    /// Reserve funds of an outbound channel for vouchers.
    Reserve(ChannelAmountArgs),
    /// Release funds reserved on an outbound channel.
    Release(ChannelAmountArgs),
    /// Pay AMOUNT more on a flow's lane and send the voucher to the payee over libp2p.
    Pay {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
        /// The amount to add, in FIL.
        #[arg(value_parser = amount_arg, allow_negative_numbers = true)]
        amount: TokenAmount,
        /// The payment flow (a retrieval, say) whose lane carries the payment.
        #[arg(long)]
        flow: Option<String>,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Retrieve the blob ROOT from the channel's payee, checking every chunk and paying for
    /// it (`PaychRetrieve`); refuses a provider asking more than the maximum price.
    Retrieve {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
        /// The blob's root (64 hex digits).
        #[arg(value_parser = root_arg)]
        root: Root,
        /// The most one chunk may cost, in FIL (`100 attoFIL`).
        #[arg(long, value_parser = amount_arg)]
        max_price_per_chunk: TokenAmount,
        /// The most the whole blob may cost, in FIL (default: the chunks times the maximum
        /// price per chunk).
        #[arg(long, value_parser = amount_arg)]
        max_total: Option<TokenAmount>,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Ask the daemon to reconcile a channel's vouchers into one (`PaychReconcile`); prints
    /// what the daemon answers.
    Reconcile(ChannelArgs),
    /// Manage the daemon's wallet.
    Wallet {
        #[command(subcommand)]
        command: WalletCommand,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Manage the daemon's libp2p connections.
    Net {
        #[command(subcommand)]
        command: NetCommand,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Pay an invoice through one of its hubs (`PaychPayInvoice`): a conditional voucher on
    /// the channel to the hub; prints the receipt (the payee's secret, the amount, the fee,
    /// the hub, the channel and the lane) once the secret came back.
    PayInvoice {
        /// The invoice's text form (`paychinv1…`).
        invoice: String,
        /// The most the hub's fee may be, in FIL (default: no bound).
        #[arg(long, value_parser = amount_arg)]
        max_fee: Option<TokenAmount>,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// A payee's invoices: create one (the daemon signs it and keeps its secret), or decode
    /// one's text form (no daemon needed).
    Invoice {
        #[command(subcommand)]
        command: InvoiceCommand,
    },
}

/// `paych invoice …`.
#[derive(Subcommand, Debug)]
pub enum InvoiceCommand {
    /// Ask the daemon for a signed invoice of AMOUNT (`PaychInvoice`); prints its text form
    /// (`paychinv1…`, to hand to the payer) and its fields.
    Create {
        /// The amount, in FIL.
        #[arg(value_parser = amount_arg)]
        amount: TokenAmount,
        /// How long the invoice may be paid (`90s`, `10m`, `1h`; at most 30 days).
        #[arg(long, default_value = "1h", value_parser = paych_node::parse_duration)]
        expiry: Duration,
        /// A hub the payee can be reached through, `ADDRESS=MULTIADDR/p2p/ID`; repeat for
        /// more (at most 4).
        #[arg(long)]
        hub: Vec<String>,
        /// The payee: a key of the daemon's wallet (default: its default key).
        #[arg(long, value_parser = address_arg)]
        payee: Option<String>,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Print an invoice's fields, whether the payee's signature verifies and whether it may
    /// still be paid; reads only the text, no daemon.
    Decode {
        /// The invoice's text form (`paychinv1…`).
        text: String,
    },
}

/// `paych voucher …` commands that talk to the daemon.
#[derive(Subcommand, Debug)]
pub enum VoucherClientCommand {
    /// Create a signed voucher for AMOUNT (the lane's new cumulative amount); prints it.
    Create {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
        /// The lane's new cumulative amount, in FIL.
        #[arg(value_parser = amount_arg, allow_negative_numbers = true)]
        amount: TokenAmount,
        /// The lane.
        #[arg(long, default_value_t = 0)]
        lane: u64,
    },
    /// Check that a voucher is valid for the channel.
    Check {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
        /// The voucher (base64url).
        #[arg(value_parser = voucher_arg)]
        voucher: Box<SignedVoucher>,
    },
    /// Add a voucher received from the payer.
    Add {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
        /// The voucher (base64url).
        #[arg(value_parser = voucher_arg)]
        voucher: Box<SignedVoucher>,
    },
    /// List the channel's stored vouchers: `Lane L, Nonce N: AMOUNT FIL`.
    List {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
        /// Print each voucher as its serialized text too.
        #[arg(long)]
        export: bool,
    },
    /// Print the best spendable voucher of each lane.
    BestSpendable {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
        /// Print each voucher as its serialized text too.
        #[arg(long)]
        export: bool,
    },
    /// Submit a voucher to the chain to update the channel's state; waits for the message.
    Submit {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
        /// The voucher (base64url).
        #[arg(value_parser = voucher_arg)]
        voucher: Box<SignedVoucher>,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `paych wallet …`.
#[derive(Subcommand, Debug)]
pub enum WalletCommand {
    /// Create a key; prints its address.
    New {
        /// The key type (only secp256k1).
        #[arg(default_value = "secp256k1", value_parser = key_type_arg)]
        key_type: KeyType,
    },
    /// List the wallet's addresses with their balances.
    List,
    /// Print an address's balance (default: the wallet's default address).
    Balance {
        /// The address.
        #[arg(value_parser = address_arg)]
        address: Option<String>,
    },
    /// Import a key exported by `paych wallet export` or `lotus wallet export` (hex), from
    /// a file or standard input (`-` or nothing).
    Import {
        /// The file holding the key.
        file: Option<PathBuf>,
    },
    /// Export a key as hex (Lotus's format). Anyone holding it can spend the funds.
    Export {
        /// The address.
        #[arg(value_parser = address_arg)]
        address: String,
    },
}

/// `paych net …`.
#[derive(Subcommand, Debug)]
pub enum NetCommand {
    /// Connect to a peer: MULTIADDR ends in `/p2p/<peer id>`.
    Connect {
        /// The peer's multiaddr.
        multiaddr: String,
    },
    /// List connected peers.
    Peers,
    /// List the addresses the node listens on.
    Listen,
}

/// Checks an address argument, keeping its text.
fn address_arg(text: &str) -> Result<String, String> {
    parse_address(text.trim())
        .map(|_| text.trim().to_owned())
        .map_err(|e| format!("{e}; expected a Filecoin address such as t1… (key) or t2… (actor)"))
}

/// Reads a blob's root argument.
fn root_arg(text: &str) -> Result<Root, String> {
    paych_node::retrieval::parse_root(text).map(Root).map_err(|e| e.to_string())
}

/// Reads a key type argument.
fn key_type_arg(text: &str) -> Result<KeyType, String> {
    match text {
        "secp256k1" => Ok(KeyType::Secp256k1),
        _ => Err("only \"secp256k1\" keys are supported".to_owned()),
    }
}

/// An address argument (checked when it was read) as an address.
fn addr(text: &str) -> anyhow::Result<Address> {
    Ok(parse_address(text.trim())?.0)
}

/// Reads an amount argument.
fn amount_arg(text: &str) -> Result<TokenAmount, String> {
    parse_fil(text).map_err(|e| format!("{e}; {AMOUNT_FORMS}"))
}

/// Reads a voucher argument.
fn voucher_arg(text: &str) -> Result<Box<SignedVoucher>, String> {
    SignedVoucher::from_base64url(text.trim()).map(Box::new).map_err(|e| {
        format!(
            "{e}; expected the unpadded base64url text form that `paych voucher create` or \
             `lotus paych voucher create` prints"
        )
    })
}

/// The repo given before the command (`paych --repo DIR list`, as `lotus --repo`), if any.
static TOP_LEVEL_REPO: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets the repo given before the command; a `--repo` after the command wins over it.
pub fn set_top_level_repo(repo: PathBuf) {
    let _ = TOP_LEVEL_REPO.set(repo);
}

/// The daemon a command talks to, and how the command prints addresses.
struct Daemon {
    api: ApiClient,
    /// `--network`, if given.
    network: Option<Network>,
}

impl Daemon {
    /// The daemon on the repo (`--repo` after the command, else before it, else the
    /// default), addresses printed for `network` (`--network`) if given, else as the daemon
    /// writes them.
    fn on(repo: &RepoArg, network: Option<Network>) -> anyhow::Result<Daemon> {
        let repo = match repo.repo.as_ref().or(TOP_LEVEL_REPO.get()) {
            Some(repo) => repo.clone(),
            None => paych_node::daemon::default_repo()?,
        };
        let api = ApiClient::from_repo(&repo)?;
        let api = match network {
            Some(network) => api.with_network(network),
            None => api,
        };
        Ok(Daemon { api, network })
    }

    /// `addr` with the prefix of the network: `--network`, else the daemon's own (the prefix
    /// of its default key's address as it answers it; a daemon makes that key when it first
    /// starts), else the test networks' `t`.
    async fn show(&self, addr: &Address) -> anyhow::Result<String> {
        let network = match self.network {
            Some(network) => network,
            None => match self.api.call::<WalletDefaultAddress>(()).await? {
                Some(key) if key.starts_with('f') => Network::Mainnet,
                _ => Network::Testnet,
            },
        };
        Ok(format_address(addr, network))
    }
}

/// Runs a client command, printing addresses for `network` (`--network`, if given).
pub async fn run(command: ClientCommand, network: Option<Network>) -> anyhow::Result<()> {
    let out = &mut String::new();
    match command {
        ClientCommand::AddFunds { from, to, amount, reserve, wait, repo } => {
            let daemon = Daemon::on(&repo, network)?;
            let funding = Funding { from: addr(&from)?, to: addr(&to)?, amount, reserve };
            add_funds(out, &daemon, funding, wait.timeout).await?
        }
        ClientCommand::List { repo } => {
            for channel in Daemon::on(&repo, network)?.api.call::<PaychList>(()).await? {
                out.push_str(&format!("{channel}\n"));
            }
        }
        ClientCommand::Status { channel, verbose, repo } => {
            status(out, &Daemon::on(&repo, network)?, addr(&channel)?, verbose).await?
        }
        ClientCommand::StatusByFromTo { from, to, repo } => {
            let params = (addr(&from)?, addr(&to)?);
            let daemon = Daemon::on(&repo, network)?;
            let funds = daemon.api.call::<PaychAvailableFundsByFromTo>(params).await?;
            show::write_funds(out, &funds)?;
        }
        ClientCommand::Settle(args) => {
            let (daemon, ch) = (Daemon::on(&args.repo, network)?, addr(&args.channel)?);
            let cid = daemon.api.call::<PaychSettle>((ch,)).await?;
            let settle = (ChannelMessage::Settle, ch, cid);
            sent::wait_for(out, &daemon, settle, args.wait.timeout).await?
        }
        ClientCommand::Collect(args) => {
            let (daemon, ch) = (Daemon::on(&args.repo, network)?, addr(&args.channel)?);
            let cid = daemon.api.call::<PaychCollect>((ch,)).await?;
            let collect = (ChannelMessage::Collect, ch, cid);
            sent::wait_for(out, &daemon, collect, args.wait.timeout).await?
        }
        ClientCommand::Reserve(args) => {
            reserve(out, &Daemon::on(&args.repo, network)?, args).await?
        }
        ClientCommand::Release(args) => {
            let daemon = Daemon::on(&args.repo, network)?;
            let ch = addr(&args.channel)?;
            daemon.api.call::<PaychReleaseFunds>((ch, args.amount.clone())).await?;
            let amount = format_fil(&args.amount);
            out.push_str(&format!("Released {amount} on channel {}\n", daemon.show(&ch).await?));
        }
        ClientCommand::Pay { channel, amount, flow, repo } => {
            let daemon = Daemon::on(&repo, network)?;
            let paid = daemon.api.call::<PaychPay>((addr(&channel)?, amount, flow)).await?;
            out.push_str(&format!(
                "{}: paid {} on lane {}; the lane now holds {}\n{}\n",
                paid.status,
                fil(&paid.delta)?,
                paid.lane,
                fil(&paid.lane_amount)?,
                voucher_text(paid.voucher)?,
            ));
        }
        ClientCommand::Retrieve { channel, root, max_price_per_chunk, max_total, repo } => {
            let params = (addr(&channel)?, root, max_price_per_chunk, max_total);
            let got = Daemon::on(&repo, network)?.api.call::<PaychRetrieve>(params).await?;
            out.push_str(&format!(
                "retrieved {} bytes in {} chunks, paid {} on lane {}\n",
                got.bytes,
                got.chunks,
                fil(&got.paid)?,
                got.lane.map_or_else(|| "-".to_owned(), |lane| lane.to_string()),
            ));
        }
        ClientCommand::Reconcile(args) => {
            reconcile(out, &Daemon::on(&args.repo, network)?, addr(&args.channel)?).await?
        }
        ClientCommand::Wallet { command, repo } => {
            wallet::run_wallet(out, &Daemon::on(&repo, network)?.api, command).await?
        }
        ClientCommand::Net { command, repo } => {
            wallet::run_net(out, &Daemon::on(&repo, network)?.api, command).await?
        }
        ClientCommand::PayInvoice { invoice, max_fee, repo } => {
            invoice::pay(out, &Daemon::on(&repo, network)?, invoice, max_fee).await?
        }
        ClientCommand::Invoice { command } => invoice::run_invoice(out, command, network).await?,
    }
    print!("{out}");
    Ok(())
}

/// What `paych add-funds` asks for.
struct Funding {
    from: Address,
    to: Address,
    amount: TokenAmount,
    /// `--reserve`: `PaychGet` (the funds reserved for vouchers) rather than `PaychFund`.
    reserve: bool,
}

/// `paych add-funds`: `PaychGet` (reserving) or `PaychFund`, then waits for the channel
/// (`PaychGetWaitReady`), as `lotus paych add-funds` does.
async fn add_funds(
    out: &mut String,
    daemon: &Daemon,
    funding: Funding,
    timeout: Duration,
) -> anyhow::Result<()> {
    let Funding { from, to, amount, reserve } = funding;
    let api = &daemon.api;
    let info = if reserve {
        api.call::<PaychGet>((from, to, amount, None)).await?
    } else {
        api.call::<PaychFund>((from, to, amount)).await?
    };
    let channel = match (info.channel, info.wait_sentinel) {
        (channel, Some(sentinel)) => {
            let what = match channel {
                Some(channel) => format!("adding funds to channel {channel}"),
                None => {
                    format!(
                        "creating the channel from {} to {}",
                        daemon.show(&from).await?,
                        daemon.show(&to).await?
                    )
                }
            };
            // Lotus prints this line on standard output; paych keeps standard output for the
            // answer (the channel's address) and reports progress on standard error.
            eprintln!("waiting for confirmation..");
            let awaited = Awaited { cid: show::cid(&sentinel)?, what };
            let cid = awaited.cid;
            Waiter::new(api, timeout)
                .wait(&awaited, |api| api.call::<PaychGetWaitReady>((cid,)))
                .await?
        }
        (Some(channel), None) => channel,
        (None, None) => bail!("the daemon answered neither a channel nor a message"),
    };
    out.push_str(&format!("{channel}\n"));
    Ok(())
}

/// `paych status`: Lotus's rows of the channel's funds (`PaychAvailableFunds`), then with
/// `verbose` paych's own (`PaychStatus`).
async fn status(
    out: &mut String,
    daemon: &Daemon,
    channel: Address,
    verbose: bool,
) -> anyhow::Result<()> {
    let funds = daemon.api.call::<PaychAvailableFunds>((channel,)).await?;
    show::write_funds(out, &funds)?;
    if verbose {
        show::write_details(out, &daemon.api.call::<PaychStatus>((channel,)).await?)?;
    }
    Ok(())
}

/// `paych reserve`.
async fn reserve(out: &mut String, daemon: &Daemon, args: ChannelAmountArgs) -> anyhow::Result<()> {
    let ch = addr(&args.channel)?;
    let cid = daemon.api.call::<PaychReserveFunds>((ch, args.amount.clone())).await?;
    let (amount, ch) = (format_fil(&args.amount), daemon.show(&ch).await?);
    match cid {
        None => out.push_str(&format!("Reserved {amount} on channel {ch}\n")),
        Some(cid) => out.push_str(&format!(
            "Reserved {amount} on channel {ch}; adding funds in message {}\n",
            cid.cid
        )),
    }
    Ok(())
}

/// `paych reconcile`.
async fn reconcile(out: &mut String, daemon: &Daemon, channel: Address) -> anyhow::Result<()> {
    let answer = daemon.api.call::<PaychReconcile>((channel,)).await.map_err(|e| match e {
        ClientError::Rpc { code: -32601, message } => {
            anyhow!("{message}: this daemon does not serve reconciliation over its API")
        }
        e => e.into(),
    })?;
    match answer.combined_text {
        Some(combined) => out.push_str(&format!(
            "reconciled {} vouchers into one worth {}; submit it with `paych voucher \
             submit {} <voucher>`:\n{combined}\n",
            answer.vouchers,
            fil(&answer.req_val)?,
            daemon.show(&channel).await?,
        )),
        None => bail!(
            "the payer refused to reconcile ({}): {}",
            answer.status,
            answer.message.as_deref().unwrap_or("no reason given")
        ),
    }
    Ok(())
}

/// Runs a `paych voucher …` command that talks to the daemon, printing addresses for
/// `network` (`--network`, if given).
pub async fn run_voucher(
    command: VoucherClientCommand,
    repo: &RepoArg,
    network: Option<Network>,
) -> anyhow::Result<()> {
    let daemon = Daemon::on(repo, network)?;
    let api = &daemon.api;
    let out = &mut String::new();
    match command {
        VoucherClientCommand::Create { channel, amount, lane } => {
            let created = api.call::<PaychVoucherCreate>((addr(&channel)?, amount, lane)).await?;
            let Some(voucher) = created.voucher else {
                // Lotus's words, the shortfall in attoFIL.
                bail!(
                    "could not create voucher: insufficient funds in channel, shortfall: {}; \
                     add funds with `paych add-funds`",
                    show::atto(&created.shortfall)?
                );
            };
            out.push_str(&format!("{}\n", voucher_text(voucher)?));
        }
        VoucherClientCommand::Check { channel, voucher } => {
            api.call::<PaychVoucherCheckValid>((addr(&channel)?, *voucher)).await?;
            out.push_str("voucher is valid\n");
        }
        VoucherClientCommand::Add { channel, voucher } => {
            let (lane, nonce) = (voucher.lane, voucher.nonce);
            let params = (addr(&channel)?, *voucher, Bytes::default(), TokenAmount::default());
            let delta = api.call::<PaychVoucherAdd>(params).await?;
            out.push_str(&format!(
                "added voucher for lane {lane} nonce {nonce}: delta {}\n",
                fil(&delta)?
            ));
        }
        VoucherClientCommand::List { channel, export } => {
            let vouchers = api.call::<PaychVoucherList>((addr(&channel)?,)).await?;
            show::write_vouchers(out, vouchers, export)?;
        }
        VoucherClientCommand::BestSpendable { channel, export } => {
            let vouchers = api.call::<PaychVoucherBestSpendable>((addr(&channel)?,)).await?;
            show::write_vouchers(out, vouchers, export)?;
        }
        VoucherClientCommand::Submit { channel, voucher, wait } => {
            sent::submit(out, &daemon, (addr(&channel)?, *voucher), wait.timeout).await?
        }
    }
    print!("{out}");
    Ok(())
}
