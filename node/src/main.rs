//! The `paych` binary.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use paych_core::types::{format_address, format_fil, Network, SignatureType, SignedVoucher};

/// paych: a Filecoin payment-channel node.
#[derive(Parser)]
#[command(name = "paych", version, about)]
struct Cli {
    /// The network whose address prefix is printed (`f` mainnet, `t` testnets).
    #[arg(long, global = true, value_enum, default_value_t = NetworkArg::Testnet)]
    network: NetworkArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum NetworkArg {
    Mainnet,
    Testnet,
}

impl From<NetworkArg> for Network {
    fn from(n: NetworkArg) -> Self {
        match n {
            NetworkArg::Mainnet => Network::Mainnet,
            NetworkArg::Testnet => Network::Testnet,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Work with vouchers.
    Voucher {
        #[command(subcommand)]
        command: VoucherCommand,
    },
}

#[derive(Subcommand)]
enum VoucherCommand {
    /// Decode a voucher from its text form (base64url CBOR) and print its fields.
    Decode {
        /// The voucher, as `paych voucher create` or `lotus paych voucher create` prints it.
        voucher: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let network = Network::from(cli.network);
    match cli.command {
        Command::Voucher { command: VoucherCommand::Decode { voucher } } => {
            let voucher = SignedVoucher::from_base64url(&voucher).context(
                "cannot decode the voucher: expected the unpadded base64url text form \
                 that `paych voucher create` prints",
            )?;
            print!("{}", describe_voucher(&voucher, network));
        }
    }
    Ok(())
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
