//! The client commands of the `paych` binary: each one makes a few JSON-RPC calls to the
//! daemon running on the repo (`--repo`, else `$PAYCH_PATH`, else `~/.paych`) and prints the
//! answer as `lotus paych`, `lotus wallet` and `lotus net` print theirs. Amounts are read
//! and written in FIL as Lotus writes them; vouchers travel as unpadded base64url CBOR.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use paych_core::lotus_json::api::{ChannelAvailableFunds, ChannelStatusJson};
use paych_core::lotus_json::{self as json, CidJson, SignedVoucherJson};
use paych_core::types::{
    format_fil, parse_address, parse_fil, Address, SignedVoucher, TokenAmount,
};
use paych_core::wallet::KeyInfo;
use paych_node::rpc::client::{ApiClient, ClientError};
use paych_node::rpc::methods::*;
use paych_node::rpc::params::{AddrInfo, Bytes, KeyType, Root};

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
    /// address once the message has landed.
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
        repo: RepoArg,
    },
    /// List the channels the daemon tracks.
    List {
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Show a channel: its parties, funds, lanes and settlement.
    Status(ChannelArgs),
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
    /// Settle a channel (starts the settlement delay); prints the message's CID.
    Settle(ChannelArgs),
    /// Collect a settled channel; prints the message's CID.
    Collect(ChannelArgs),
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
    /// List the channel's stored vouchers: `Lane L, Nonce N: AMOUNT` (attoFIL).
    List {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
        /// Print each voucher's text form too.
        #[arg(long)]
        export: bool,
    },
    /// Print the best spendable voucher of each lane.
    BestSpendable {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
    },
    /// Submit a voucher to the chain; prints the message's CID.
    Submit {
        /// The channel's address.
        #[arg(value_parser = address_arg)]
        channel: String,
        /// The voucher (base64url).
        #[arg(value_parser = voucher_arg)]
        voucher: Box<SignedVoucher>,
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

/// The repo: `--repo` after the command, else before it, else the default.
fn client(repo: &RepoArg) -> anyhow::Result<ApiClient> {
    let repo = match repo.repo.as_ref().or(TOP_LEVEL_REPO.get()) {
        Some(repo) => repo.clone(),
        None => paych_node::daemon::default_repo()?,
    };
    Ok(ApiClient::from_repo(&repo)?)
}

/// Runs a client command.
pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    let out = &mut String::new();
    match command {
        ClientCommand::AddFunds { from, to, amount, reserve, repo } => {
            add_funds(out, &client(&repo)?, (addr(&from)?, addr(&to)?, amount), reserve).await?
        }
        ClientCommand::List { repo } => {
            for channel in client(&repo)?.call::<PaychList>(()).await? {
                out.push_str(&format!("{channel}\n"));
            }
        }
        ClientCommand::Status(args) => {
            let ch = addr(&args.channel)?;
            write_status(out, &client(&args.repo)?.call::<PaychStatus>((ch,)).await?)?;
        }
        ClientCommand::StatusByFromTo { from, to, repo } => {
            let params = (addr(&from)?, addr(&to)?);
            let funds = client(&repo)?.call::<PaychAvailableFundsByFromTo>(params).await?;
            write_funds(out, &funds)?;
        }
        ClientCommand::Settle(args) => {
            let cid = client(&args.repo)?.call::<PaychSettle>((addr(&args.channel)?,)).await?;
            out.push_str(&format!("Settling channel {}: message {}\n", args.channel, cid.cid));
        }
        ClientCommand::Collect(args) => {
            let cid = client(&args.repo)?.call::<PaychCollect>((addr(&args.channel)?,)).await?;
            out.push_str(&format!(
                "Collecting funds from channel {}: message {}\n",
                args.channel, cid.cid
            ));
        }
        ClientCommand::Reserve(args) => reserve(out, args).await?,
        ClientCommand::Release(args) => {
            let params = (addr(&args.channel)?, args.amount.clone());
            client(&args.repo)?.call::<PaychReleaseFunds>(params).await?;
            let amount = format_fil(&args.amount);
            out.push_str(&format!("Released {amount} on channel {}\n", args.channel));
        }
        ClientCommand::Pay { channel, amount, flow, repo } => {
            let paid = client(&repo)?.call::<PaychPay>((addr(&channel)?, amount, flow)).await?;
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
            let got = client(&repo)?.call::<PaychRetrieve>(params).await?;
            out.push_str(&format!(
                "retrieved {} bytes in {} chunks, paid {} on lane {}\n",
                got.bytes,
                got.chunks,
                fil(&got.paid)?,
                got.lane.map_or_else(|| "-".to_owned(), |lane| lane.to_string()),
            ));
        }
        ClientCommand::Reconcile(args) => reconcile(out, args).await?,
        ClientCommand::Wallet { command, repo } => {
            run_wallet(out, &client(&repo)?, command).await?
        }
        ClientCommand::Net { command, repo } => run_net(out, &client(&repo)?, command).await?,
    }
    print!("{out}");
    Ok(())
}

/// `paych add-funds`: `PaychGet` (reserving) or `PaychFund`, then waits for the channel.
async fn add_funds(
    out: &mut String,
    api: &ApiClient,
    params: (Address, Address, TokenAmount),
    reserve: bool,
) -> anyhow::Result<()> {
    let (from, to, amount) = params;
    let info = if reserve {
        api.call::<PaychGet>((from, to, amount, None)).await?
    } else {
        api.call::<PaychFund>((from, to, amount)).await?
    };
    let channel = match (info.channel, info.wait_sentinel) {
        (_, Some(sentinel)) => api.call::<PaychGetWaitReady>((cid(&sentinel)?,)).await?,
        (Some(channel), None) => channel,
        (None, None) => bail!("the daemon answered neither a channel nor a message"),
    };
    out.push_str(&format!("{channel}\n"));
    Ok(())
}

/// `paych reserve`.
async fn reserve(out: &mut String, args: ChannelAmountArgs) -> anyhow::Result<()> {
    let params = (addr(&args.channel)?, args.amount.clone());
    let cid = client(&args.repo)?.call::<PaychReserveFunds>(params).await?;
    let amount = format_fil(&args.amount);
    match cid {
        None => out.push_str(&format!("Reserved {amount} on channel {}\n", args.channel)),
        Some(cid) => out.push_str(&format!(
            "Reserved {amount} on channel {}; adding funds in message {}\n",
            args.channel, cid.cid
        )),
    }
    Ok(())
}

/// `paych reconcile`.
async fn reconcile(out: &mut String, args: ChannelArgs) -> anyhow::Result<()> {
    let answer = client(&args.repo)?
        .call::<PaychReconcile>((addr(&args.channel)?,))
        .await
        .map_err(|e| match e {
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
            args.channel,
        )),
        None => bail!(
            "the payer refused to reconcile ({}): {}",
            answer.status,
            answer.message.as_deref().unwrap_or("no reason given")
        ),
    }
    Ok(())
}

/// Runs a `paych voucher …` command that talks to the daemon.
pub async fn run_voucher(command: VoucherClientCommand, repo: &RepoArg) -> anyhow::Result<()> {
    let api = client(repo)?;
    let out = &mut String::new();
    match command {
        VoucherClientCommand::Create { channel, amount, lane } => {
            let created = api.call::<PaychVoucherCreate>((addr(&channel)?, amount, lane)).await?;
            let Some(voucher) = created.voucher else {
                bail!(
                    "not enough funds in channel {channel} to create the voucher (shortfall {}): \
                     add funds with `paych add-funds`",
                    fil(&created.shortfall)?
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
            write_vouchers(out, vouchers, export)?;
        }
        VoucherClientCommand::BestSpendable { channel } => {
            let vouchers = api.call::<PaychVoucherBestSpendable>((addr(&channel)?,)).await?;
            write_vouchers(out, vouchers, true)?;
        }
        VoucherClientCommand::Submit { channel, voucher } => {
            let params = (addr(&channel)?, *voucher, Bytes::default(), Bytes::default());
            let cid = api.call::<PaychVoucherSubmit>(params).await?;
            out.push_str(&format!("voucher submitted in message {}\n", cid.cid));
        }
    }
    print!("{out}");
    Ok(())
}

async fn run_wallet(
    out: &mut String,
    api: &ApiClient,
    command: WalletCommand,
) -> anyhow::Result<()> {
    match command {
        WalletCommand::New { key_type } => {
            let addr = api.call::<WalletNew>((key_type,)).await?;
            out.push_str(&format!("{addr}\n"));
        }
        WalletCommand::List => wallet_list(out, api).await?,
        WalletCommand::Balance { address } => {
            let address = match address {
                Some(address) => address,
                None => match api.call::<WalletDefaultAddress>(()).await? {
                    None => bail!("the wallet has no default address: pass one"),
                    Some(addr) => addr,
                },
            };
            let balance = api.call::<WalletBalance>((addr(&address)?,)).await?;
            out.push_str(&format!("{}\n", fil(&balance)?));
        }
        WalletCommand::Import { file } => {
            let info = read_key(file)?;
            let addr = api.call::<WalletImport>((info,)).await?;
            out.push_str(&format!("imported key {addr} successfully!\n"));
        }
        WalletCommand::Export { address } => {
            let info = api.call::<WalletExport>((addr(&address)?,)).await?;
            out.push_str(&format!("{}\n", info.to_lotus_hex()));
        }
    }
    Ok(())
}

/// `paych wallet list`: each key with its balance, the default one marked.
async fn wallet_list(out: &mut String, api: &ApiClient) -> anyhow::Result<()> {
    let addrs = api.call::<WalletList>(()).await?;
    let default = api.call::<WalletDefaultAddress>(()).await?;
    let mut rows = vec![["Address".to_owned(), "Balance".to_owned(), "Default".to_owned()]];
    for address in addrs {
        let balance = api.call::<WalletBalance>((addr(&address)?,)).await?;
        let mark = if Some(&address) == default.as_ref() { "X" } else { "" };
        rows.push([address, fil(&balance)?, mark.to_owned()]);
    }
    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let balance_width = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
    for [address, balance, mark] in rows {
        let line = format!("{address:<width$}  {balance:<balance_width$}  {mark}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(())
}

/// A key in Lotus's hex, from `file` or standard input (`-` or nothing).
fn read_key(file: Option<PathBuf>) -> anyhow::Result<KeyInfo> {
    let mut input = String::new();
    match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => {
            input = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut input)
                .context("cannot read the key from standard input")?;
        }
    }
    KeyInfo::from_lotus_hex(input.trim()).map_err(|e| {
        anyhow!("{e}; expected the hex that `paych wallet export` or `lotus wallet export` prints")
    })
}

async fn run_net(out: &mut String, api: &ApiClient, command: NetCommand) -> anyhow::Result<()> {
    match command {
        NetCommand::Connect { multiaddr } => {
            let addr: libp2p::Multiaddr = multiaddr.trim().parse().map_err(|e| {
                anyhow!("{multiaddr:?}: {e}; expected e.g. /ip4/1.2.3.4/tcp/24001/p2p/12D3KooW…")
            })?;
            let Some(peer) = paych_node::pay::peer_of(&addr) else {
                bail!("{addr}: the multiaddr must end in /p2p/<peer id> (see `paych net listen` on the peer)");
            };
            let mut transport = addr.clone();
            transport.pop();
            api.call::<NetConnect>((AddrInfo { id: peer, addrs: vec![transport] },)).await?;
            out.push_str(&format!("connect {peer}: success\n"));
        }
        NetCommand::Peers => {
            for peer in api.call::<NetPeers>(()).await? {
                out.push_str(&format!("{}, [{}]\n", peer.id, peer.addrs.join(" ")));
            }
        }
        NetCommand::Listen => {
            let info = api.call::<NetAddrsListen>(()).await?;
            for addr in info.addrs {
                out.push_str(&format!("{addr}/p2p/{}\n", info.id));
            }
        }
    }
    Ok(())
}

/// Lotus's `paych status` lines, with the lanes and the settlement of our `PaychStatus`.
fn write_status(out: &mut String, s: &ChannelStatusJson) -> anyhow::Result<()> {
    let direction = match s.direction {
        1 => "inbound",
        2 => "outbound",
        _ => "unknown",
    };
    out.push_str(match (&s.funds.channel, &s.pending_chain_message) {
        (None, _) => "Creating channel\n",
        (_, Some(_)) => "Adding funds to channel\n",
        _ => "Channel exists\n",
    });
    let settling =
        if s.settling { format!("yes, at epoch {}", s.settling_at) } else { "no".to_owned() };
    let mut rows = vec![
        ("Channel", text(&s.funds.channel)),
        ("Direction", direction.to_owned()),
        ("From", s.funds.from.clone()),
        ("To", s.funds.to.clone()),
        ("Lifecycle", s.lifecycle.clone()),
        ("Confirmed Amt", fil(&s.funds.confirmed_amt)?),
        ("Pending Amt", fil(&s.funds.pending_amt)?),
        ("Queued Amt", fil(&s.funds.queued_amt)?),
        ("Voucher Redeemed Amt", fil(&s.voucher_redeemed_amt)?),
        ("Reserved Amt", fil(&s.reserved_amt)?),
        ("Available Amt", fil(&s.available_amt)?),
        ("Next Lane", s.next_lane.to_string()),
        ("Settling", settling),
    ];
    if let Some(message) = &s.pending_chain_message {
        rows.push(("Pending Message", message.cid.clone()));
    }
    if let Some(error) = &s.create_error {
        rows.push(("Create Error", error.clone()));
    }
    write_rows(out, &rows);
    if !s.lanes.is_empty() {
        out.push_str("  Lanes:\n");
    }
    for lane in &s.lanes {
        let closed = if lane.closed { ", closed" } else { "" };
        out.push_str(&format!(
            "    Lane {}, Nonce {}: {} (redeemed on chain {}{closed})\n",
            lane.lane,
            lane.nonce,
            fil(&lane.amount)?,
            fil(&lane.redeemed_on_chain)?,
        ));
    }
    Ok(())
}

/// Lotus's `paych status-by-from-to` lines from a `ChannelAvailableFunds`.
fn write_funds(out: &mut String, f: &ChannelAvailableFunds) -> anyhow::Result<()> {
    let (from, to) = (("From", f.funds.from.clone()), ("To", f.funds.to.clone()));
    let sentinel = f.pending_wait_sentinel.as_ref().map(|c| c.cid.clone());
    let Some(channel) = &f.funds.channel else {
        match sentinel {
            Some(sentinel) => {
                out.push_str("Creating channel\n");
                let pending = ("Pending Amt", fil(&f.funds.pending_amt)?);
                write_rows(out, &[from, to, pending, ("Wait Sentinel", sentinel)]);
            }
            None => {
                out.push_str("Channel does not exist\n");
                write_rows(out, &[from, to]);
            }
        }
        return Ok(());
    };
    out.push_str(if sentinel.is_none() { "Channel exists\n" } else { "Adding Funds to channel\n" });
    let mut rows = vec![
        ("Channel", channel.clone()),
        from,
        to,
        ("Confirmed Amt", fil(&f.funds.confirmed_amt)?),
        ("Pending Amt", fil(&f.funds.pending_amt)?),
        ("Queued Amt", fil(&f.funds.queued_amt)?),
        ("Voucher Redeemed Amt", fil(&f.voucher_reedeemed_amt)?),
    ];
    if let Some(sentinel) = sentinel {
        rows.push(("Add Funds Wait Sentinel", sentinel));
    }
    write_rows(out, &rows);
    Ok(())
}

/// `  Name: value` lines, values aligned (Lotus's `formatNameValues`).
fn write_rows(out: &mut String, rows: &[(&str, String)]) {
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in rows {
        let pad = " ".repeat(width - name.len());
        out.push_str(&format!("  {name}: {pad}{value}\n"));
    }
}

/// Lotus's voucher lines: `Lane L, Nonce N: AMOUNT` (attoFIL), `; VOUCHER` with `export`.
fn write_vouchers(
    out: &mut String,
    vouchers: Vec<SignedVoucherJson>,
    export: bool,
) -> anyhow::Result<()> {
    for v in vouchers {
        let voucher = voucher(v)?;
        out.push_str(&format!(
            "Lane {}, Nonce {}: {}",
            voucher.lane,
            voucher.nonce,
            voucher.amount.atto()
        ));
        if export {
            out.push_str(&format!("; {}", voucher.to_base64url()?));
        }
        out.push('\n');
    }
    Ok(())
}

/// A voucher from its Lotus JSON shape.
fn voucher(shape: SignedVoucherJson) -> anyhow::Result<SignedVoucher> {
    <SignedVoucher as json::LotusJson>::from_shape(shape)
        .map_err(|e| anyhow!("the daemon answered a voucher that cannot be read: {e}"))
}

/// A voucher's text form from its Lotus JSON shape.
fn voucher_text(shape: SignedVoucherJson) -> anyhow::Result<String> {
    Ok(voucher(shape)?.to_base64url()?)
}

/// A CID from its Lotus JSON shape.
fn cid(shape: &CidJson) -> anyhow::Result<cid::Cid> {
    shape.parse("cid").map_err(|e| anyhow!("the daemon answered a CID that cannot be read: {e}"))
}

/// An attoFIL decimal string of the API, in FIL.
fn fil(text: &str) -> anyhow::Result<String> {
    let amount = json::parse_amount_field("amount", text)
        .map_err(|e| anyhow!("the daemon answered an amount that cannot be read: {e}"))?;
    Ok(format_fil(&amount))
}

/// An optional text, `-` for none.
fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".to_owned())
}
