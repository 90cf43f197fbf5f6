//! The client commands of the `paych` binary: each one makes a few JSON-RPC calls to the
//! daemon running on the repo (`--repo`, else `$PAYCH_PATH`, else `~/.paych`) and prints the
//! answer as `lotus paych`, `lotus wallet` and `lotus net` print theirs. Amounts are read
//! and written in FIL as Lotus writes them; vouchers travel as unpadded base64url CBOR.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use paych_core::chain::lotus::json;
use paych_core::types::{
    format_fil, parse_address, parse_fil, Network, SignedVoucher, TokenAmount,
};
use paych_core::wallet::KeyInfo;
use paych_node::client::{ApiClient, ClientError};
use serde_json::{json, Value};

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
        root: String,
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
        #[arg(default_value = "secp256k1")]
        key_type: String,
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
            let api = client(&repo)?;
            let method = if reserve { "Filecoin.PaychGet" } else { "Filecoin.PaychFund" };
            let params = if reserve {
                json!([from, to, json::amount_text(&amount), null])
            } else {
                json!([from, to, json::amount_text(&amount)])
            };
            let info = api.call(method, params).await?;
            let channel = match (&info["Channel"], &info["WaitSentinel"]) {
                (_, sentinel @ Value::Object(_)) => {
                    api.call("Filecoin.PaychGetWaitReady", json!([sentinel])).await?
                }
                (channel @ Value::String(_), _) => channel.clone(),
                _ => bail!("the daemon answered neither a channel nor a message: {info}"),
            };
            out.push_str(&format!("{}\n", text(&channel)));
        }
        ClientCommand::List { repo } => {
            let channels = client(&repo)?.call("Filecoin.PaychList", json!([])).await?;
            for channel in array(&channels) {
                out.push_str(&format!("{}\n", text(channel)));
            }
        }
        ClientCommand::Status(args) => {
            let status =
                client(&args.repo)?.call("Filecoin.PaychStatus", json!([args.channel])).await?;
            write_status(out, &status)?;
        }
        ClientCommand::StatusByFromTo { from, to, repo } => {
            let funds = client(&repo)?
                .call("Filecoin.PaychAvailableFundsByFromTo", json!([from, to]))
                .await?;
            write_funds(out, &funds)?;
        }
        ClientCommand::Settle(args) => {
            let cid =
                client(&args.repo)?.call("Filecoin.PaychSettle", json!([args.channel])).await?;
            out.push_str(&format!(
                "Settling channel {}: message {}\n",
                args.channel,
                cid_text(&cid)
            ));
        }
        ClientCommand::Collect(args) => {
            let cid =
                client(&args.repo)?.call("Filecoin.PaychCollect", json!([args.channel])).await?;
            out.push_str(&format!(
                "Collecting funds from channel {}: message {}\n",
                args.channel,
                cid_text(&cid)
            ));
        }
        ClientCommand::Reserve(args) => {
            let api = client(&args.repo)?;
            let cid = api
                .call(
                    "Filecoin.PaychReserveFunds",
                    json!([args.channel, json::amount_text(&args.amount)]),
                )
                .await?;
            match cid {
                Value::Null => out.push_str(&format!(
                    "Reserved {} on channel {}\n",
                    format_fil(&args.amount),
                    args.channel
                )),
                cid => out.push_str(&format!(
                    "Reserved {} on channel {}; adding funds in message {}\n",
                    format_fil(&args.amount),
                    args.channel,
                    cid_text(&cid)
                )),
            }
        }
        ClientCommand::Release(args) => {
            client(&args.repo)?
                .call(
                    "Filecoin.PaychReleaseFunds",
                    json!([args.channel, json::amount_text(&args.amount)]),
                )
                .await?;
            out.push_str(&format!(
                "Released {} on channel {}\n",
                format_fil(&args.amount),
                args.channel
            ));
        }
        ClientCommand::Pay { channel, amount, flow, repo } => {
            let paid = client(&repo)?
                .call("Filecoin.PaychPay", json!([channel, json::amount_text(&amount), flow]))
                .await?;
            let voucher = voucher_text(&paid["Voucher"])?;
            out.push_str(&format!(
                "{}: paid {} on lane {}; the lane now holds {}\n{voucher}\n",
                text(&paid["Status"]),
                fil(&paid["Delta"])?,
                paid["Lane"],
                fil(&paid["LaneAmount"])?,
            ));
        }
        ClientCommand::Retrieve { channel, root, max_price_per_chunk, max_total, repo } => {
            let params = json!([
                channel,
                root,
                json::amount_text(&max_price_per_chunk),
                max_total.as_ref().map(json::amount_text),
            ]);
            let got = client(&repo)?.call("Filecoin.PaychRetrieve", params).await?;
            out.push_str(&format!(
                "retrieved {} bytes in {} chunks, paid {} on lane {}\n",
                got["Bytes"],
                got["Chunks"],
                fil(&got["Paid"])?,
                text(&got["Lane"]),
            ));
        }
        ClientCommand::Reconcile(args) => {
            let answer = client(&args.repo)?
                .call("Filecoin.PaychReconcile", json!([args.channel]))
                .await
                .map_err(|e| match e {
                    ClientError::Rpc { code: -32601, message } => {
                        anyhow!("{message}: this daemon does not serve reconciliation over its API")
                    }
                    e => e.into(),
                })?;
            match answer["CombinedText"].as_str() {
                Some(combined) => out.push_str(&format!(
                    "reconciled {} vouchers into one worth {}; submit it with `paych voucher \
                     submit {} <voucher>`:\n{combined}\n",
                    answer["Vouchers"],
                    fil(&answer["ReqVal"])?,
                    args.channel,
                )),
                None => bail!(
                    "the payer refused to reconcile ({}): {}",
                    text(&answer["Status"]),
                    answer["Message"].as_str().unwrap_or("no reason given")
                ),
            }
        }
        ClientCommand::Wallet { command, repo } => {
            run_wallet(out, &client(&repo)?, command).await?
        }
        ClientCommand::Net { command, repo } => run_net(out, &client(&repo)?, command).await?,
    }
    print!("{out}");
    Ok(())
}

/// Runs a `paych voucher …` command that talks to the daemon.
pub async fn run_voucher(command: VoucherClientCommand, repo: &RepoArg) -> anyhow::Result<()> {
    let api = client(repo)?;
    let out = &mut String::new();
    match command {
        VoucherClientCommand::Create { channel, amount, lane } => {
            let created = api
                .call(
                    "Filecoin.PaychVoucherCreate",
                    json!([channel, json::amount_text(&amount), lane]),
                )
                .await?;
            if created["Voucher"].is_null() {
                bail!(
                    "not enough funds in channel {channel} to create the voucher (shortfall {}): \
                     add funds with `paych add-funds`",
                    fil(&created["Shortfall"])?
                );
            }
            out.push_str(&format!("{}\n", voucher_text(&created["Voucher"])?));
        }
        VoucherClientCommand::Check { channel, voucher } => {
            api.call("Filecoin.PaychVoucherCheckValid", json!([channel, voucher_json(&voucher)?]))
                .await?;
            out.push_str("voucher is valid\n");
        }
        VoucherClientCommand::Add { channel, voucher } => {
            let delta = api
                .call(
                    "Filecoin.PaychVoucherAdd",
                    json!([channel, voucher_json(&voucher)?, null, "0"]),
                )
                .await?;
            out.push_str(&format!(
                "added voucher for lane {} nonce {}: delta {}\n",
                voucher.lane,
                voucher.nonce,
                fil(&delta)?
            ));
        }
        VoucherClientCommand::List { channel, export } => {
            let vouchers = api.call("Filecoin.PaychVoucherList", json!([channel])).await?;
            write_vouchers(out, &vouchers, export)?;
        }
        VoucherClientCommand::BestSpendable { channel } => {
            let vouchers = api.call("Filecoin.PaychVoucherBestSpendable", json!([channel])).await?;
            write_vouchers(out, &vouchers, true)?;
        }
        VoucherClientCommand::Submit { channel, voucher } => {
            let cid = api
                .call(
                    "Filecoin.PaychVoucherSubmit",
                    json!([channel, voucher_json(&voucher)?, null, null]),
                )
                .await?;
            out.push_str(&format!("voucher submitted in message {}\n", cid_text(&cid)));
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
            let addr = api.call("Filecoin.WalletNew", json!([key_type])).await?;
            out.push_str(&format!("{}\n", text(&addr)));
        }
        WalletCommand::List => {
            let addrs = api.call("Filecoin.WalletList", json!([])).await?;
            let default = api.call("Filecoin.WalletDefaultAddress", json!([])).await?;
            let mut rows = vec![["Address".to_owned(), "Balance".to_owned(), "Default".to_owned()]];
            for addr in array(&addrs) {
                let balance = api.call("Filecoin.WalletBalance", json!([addr])).await?;
                let mark = if *addr == default { "X" } else { "" };
                rows.push([text(addr), fil(&balance)?, mark.to_owned()]);
            }
            let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
            let balance_width = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
            for [addr, balance, mark] in rows {
                let line = format!("{addr:<width$}  {balance:<balance_width$}  {mark}");
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        WalletCommand::Balance { address } => {
            let address = match address {
                Some(address) => Value::String(address),
                None => match api.call("Filecoin.WalletDefaultAddress", json!([])).await? {
                    Value::Null => bail!("the wallet has no default address: pass one"),
                    addr => addr,
                },
            };
            let balance = api.call("Filecoin.WalletBalance", json!([address])).await?;
            out.push_str(&format!("{}\n", fil(&balance)?));
        }
        WalletCommand::Import { file } => {
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
            let info = KeyInfo::from_lotus_hex(input.trim()).map_err(|e| {
                anyhow!("{e}; expected the hex that `paych wallet export` or `lotus wallet export` prints")
            })?;
            let addr =
                api.call("Filecoin.WalletImport", json!([serde_json::to_value(info)?])).await?;
            out.push_str(&format!("imported key {} successfully!\n", text(&addr)));
        }
        WalletCommand::Export { address } => {
            let info = api.call("Filecoin.WalletExport", json!([address])).await?;
            let info: KeyInfo = serde_json::from_value(info)
                .map_err(|e| anyhow!("the daemon's key is not a KeyInfo: {e}"))?;
            out.push_str(&format!("{}\n", info.to_lotus_hex()));
        }
    }
    Ok(())
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
            api.call(
                "Filecoin.NetConnect",
                json!([{"ID": peer.to_string(), "Addrs": [transport.to_string()]}]),
            )
            .await?;
            out.push_str(&format!("connect {peer}: success\n"));
        }
        NetCommand::Peers => {
            let peers = api.call("Filecoin.NetPeers", json!([])).await?;
            for peer in array(&peers) {
                let addrs: Vec<String> = array(&peer["Addrs"]).iter().map(text).collect();
                out.push_str(&format!("{}, [{}]\n", text(&peer["ID"]), addrs.join(" ")));
            }
        }
        NetCommand::Listen => {
            let info = api.call("Filecoin.NetAddrsListen", json!([])).await?;
            for addr in array(&info["Addrs"]) {
                out.push_str(&format!("{}/p2p/{}\n", text(addr), text(&info["ID"])));
            }
        }
    }
    Ok(())
}

/// Lotus's `paych status` lines, with the lanes and the settlement of our `PaychStatus`.
fn write_status(out: &mut String, s: &Value) -> anyhow::Result<()> {
    let direction = match s["Direction"].as_i64() {
        Some(1) => "inbound",
        Some(2) => "outbound",
        _ => "unknown",
    };
    out.push_str(match (&s["Channel"], &s["PendingChainMessage"]) {
        (Value::Null, _) => "Creating channel\n",
        (_, Value::Object(_)) => "Adding funds to channel\n",
        _ => "Channel exists\n",
    });
    let settling = match (&s["Settling"], &s["SettlingAt"]) {
        (Value::Bool(true), at) => format!("yes, at epoch {at}"),
        _ => "no".to_owned(),
    };
    let mut rows = vec![
        ("Channel", text(&s["Channel"])),
        ("Direction", direction.to_owned()),
        ("From", text(&s["From"])),
        ("To", text(&s["To"])),
        ("Lifecycle", text(&s["Lifecycle"])),
        ("Confirmed Amt", fil(&s["ConfirmedAmt"])?),
        ("Pending Amt", fil(&s["PendingAmt"])?),
        ("Queued Amt", fil(&s["QueuedAmt"])?),
        ("Voucher Redeemed Amt", fil(&s["VoucherRedeemedAmt"])?),
        ("Reserved Amt", fil(&s["ReservedAmt"])?),
        ("Available Amt", fil(&s["AvailableAmt"])?),
        ("Next Lane", s["NextLane"].to_string()),
        ("Settling", settling),
    ];
    if let Value::Object(_) = &s["PendingChainMessage"] {
        rows.push(("Pending Message", cid_text(&s["PendingChainMessage"])));
    }
    if let Value::String(error) = &s["CreateError"] {
        rows.push(("Create Error", error.clone()));
    }
    write_rows(out, &rows);
    let lanes = array(&s["Lanes"]);
    if !lanes.is_empty() {
        out.push_str("  Lanes:\n");
    }
    for lane in lanes {
        let closed = if lane["Closed"] == Value::Bool(true) { ", closed" } else { "" };
        out.push_str(&format!(
            "    Lane {}, Nonce {}: {} (redeemed on chain {}{closed})\n",
            lane["Lane"],
            lane["Nonce"],
            fil(&lane["Amount"])?,
            fil(&lane["RedeemedOnChain"])?,
        ));
    }
    Ok(())
}

/// Lotus's `paych status-by-from-to` lines from a `ChannelAvailableFunds`.
fn write_funds(out: &mut String, f: &Value) -> anyhow::Result<()> {
    if f["Channel"].is_null() {
        if !f["PendingWaitSentinel"].is_null() {
            out.push_str("Creating channel\n");
            write_rows(
                out,
                &[
                    ("From", text(&f["From"])),
                    ("To", text(&f["To"])),
                    ("Pending Amt", fil(&f["PendingAmt"])?),
                    ("Wait Sentinel", cid_text(&f["PendingWaitSentinel"])),
                ],
            );
        } else {
            out.push_str("Channel does not exist\n");
            write_rows(out, &[("From", text(&f["From"])), ("To", text(&f["To"]))]);
        }
        return Ok(());
    }
    out.push_str(if f["PendingWaitSentinel"].is_null() {
        "Channel exists\n"
    } else {
        "Adding Funds to channel\n"
    });
    let mut rows = vec![
        ("Channel", text(&f["Channel"])),
        ("From", text(&f["From"])),
        ("To", text(&f["To"])),
        ("Confirmed Amt", fil(&f["ConfirmedAmt"])?),
        ("Pending Amt", fil(&f["PendingAmt"])?),
        ("Queued Amt", fil(&f["QueuedAmt"])?),
        ("Voucher Redeemed Amt", fil(&f["VoucherReedeemedAmt"])?),
    ];
    if !f["PendingWaitSentinel"].is_null() {
        rows.push(("Add Funds Wait Sentinel", cid_text(&f["PendingWaitSentinel"])));
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
fn write_vouchers(out: &mut String, vouchers: &Value, export: bool) -> anyhow::Result<()> {
    for v in array(vouchers) {
        let voucher: SignedVoucher = json::from_value(v.clone())
            .map_err(|e| anyhow!("the daemon answered a voucher that cannot be read: {e}"))?;
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

/// A voucher's Lotus JSON.
fn voucher_json(voucher: &SignedVoucher) -> anyhow::Result<Value> {
    Ok(json::to_value(voucher, Network::Testnet)?)
}

/// A voucher's text form from its Lotus JSON.
fn voucher_text(value: &Value) -> anyhow::Result<String> {
    let voucher: SignedVoucher = json::from_value(value.clone())
        .map_err(|e| anyhow!("the daemon answered a voucher that cannot be read: {e}"))?;
    Ok(voucher.to_base64url()?)
}

/// An attoFIL decimal string of the API, in FIL.
fn fil(value: &Value) -> anyhow::Result<String> {
    let text = value.as_str().unwrap_or("0");
    let amount = json::parse_amount_field("amount", text)
        .map_err(|e| anyhow!("the daemon answered an amount that cannot be read: {e}"))?;
    Ok(format_fil(&amount))
}

/// A string value's text, `-` for null.
fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A CID's text from `{"/": "bafy…"}`.
fn cid_text(value: &Value) -> String {
    match &value["/"] {
        Value::String(cid) => cid.clone(),
        _ => text(value),
    }
}

/// The items of a JSON array (`null` is empty, as Lotus writes empty arrays).
fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}
