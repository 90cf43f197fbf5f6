//! `paych wallet …` and `paych net …`: the daemon's keys and libp2p connections, printed as
//! `lotus wallet` and `lotus net` print theirs.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use paych_core::wallet::KeyInfo;
use paych_node::rpc::client::ApiClient;
use paych_node::rpc::methods::*;
use paych_node::rpc::params::AddrInfo;

use super::show::fil;
use super::{addr, NetCommand, WalletCommand};

/// The most bytes of a key read from standard input.
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// Runs a `paych wallet …` command.
pub async fn run_wallet(
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
                .take(MAX_KEY_BYTES)
                .read_to_string(&mut input)
                .context("cannot read the key from standard input")?;
        }
    }
    KeyInfo::from_lotus_hex(input.trim()).map_err(|e| {
        anyhow!("{e}; expected the hex that `paych wallet export` or `lotus wallet export` prints")
    })
}

/// Runs a `paych net …` command.
pub async fn run_net(out: &mut String, api: &ApiClient, command: NetCommand) -> anyhow::Result<()> {
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
