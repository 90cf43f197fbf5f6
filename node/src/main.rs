//! The `paych` binary.

use anyhow::Context;
use clap::{Parser, Subcommand};
use paych_core::types::SignedVoucher;

/// paych: a Filecoin payment-channel node.
#[derive(Parser)]
#[command(name = "paych", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    match cli.command {
        Command::Voucher { command: VoucherCommand::Decode { voucher } } => {
            let voucher = SignedVoucher::from_base64url(&voucher)
                .context("cannot decode the voucher: expected the unpadded base64url text form")?;
            println!("{voucher:#?}");
        }
    }
    Ok(())
}
