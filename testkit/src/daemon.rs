//! `paych daemon` and `paych devnet` as processes on 127.0.0.1, started from a given binary
//! (a test passes `env!("CARGO_BIN_EXE_paych")`), waited for until ready, and stopped.
//!
//! A daemon is ready when it has written its `api` and `token` files; a devnet when it has
//! printed its `FULLNODE_API_INFO=` line. A [`Running`] process is killed if the test fails
//! before stopping it.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::deadline::wait_until;

/// How often a process's files and exit are looked at.
const POLL: Duration = Duration::from_millis(50);

/// A child process, killed (and reaped) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Waits for the process to exit by itself, failing the test after the deadline.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_until("the process did not stop", POLL, || self.0.try_wait().unwrap())
    }

    /// Sends `signal` (say `"-TERM"`) to the process with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.0.id().to_string()]).status();
        assert!(status.unwrap().success(), "kill {signal} failed");
    }
}

/// `paych daemon --repo REPO` from the binary `bin`, listening on ephemeral loopback ports
/// for libp2p and the API, with no chain node configured (set `FULLNODE_API_INFO` on the
/// command for one) and its standard output discarded.
pub fn daemon_command(bin: &str, repo: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["daemon", "--repo"])
        .arg(repo)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"])
        .env_remove("FULLNODE_API_INFO")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null());
    command
}

/// Starts `paych daemon` on `repo` against the chain node `info` (a `FULLNODE_API_INFO`),
/// knowing `peers` (`ADDRESS=MULTIADDR` each), and waits until it is ready.
pub fn start_daemon(bin: &str, repo: &Path, info: &str, peers: &[String]) -> Running {
    let mut command = daemon_command(bin, repo);
    command.env("FULLNODE_API_INFO", info).stderr(Stdio::inherit());
    for peer in peers {
        command.args(["--peer", peer]);
    }
    let child = Running(command.spawn().unwrap());
    wait_for(&repo.join("api"));
    wait_for(&repo.join("token"));
    child
}

/// Starts `paych devnet` from `bin` on a free loopback port, mining every 100 ms; answers
/// it and its `FULLNODE_API_INFO`.
pub fn start_devnet(bin: &str) -> (Running, String) {
    start_devnet_with(bin, &[])
}

/// [`start_devnet`] with more arguments (`--gateway`, say).
pub fn start_devnet_with(bin: &str, args: &[&str]) -> (Running, String) {
    start_devnet_mining(bin, "100ms", args)
}

/// Starts `paych devnet` from `bin` with `args` on a free loopback port, mining every
/// `block_time` (`0s`: only on `Devnet.Mine`, so that a message pushed to it never lands by
/// itself); answers it and its `FULLNODE_API_INFO`.
pub fn start_devnet_mining(bin: &str, block_time: &str, args: &[&str]) -> (Running, String) {
    let mut child = Command::new(bin)
        .args(["devnet", "--listen", "127.0.0.1:0", "--block-time", block_time])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let info = line.trim().strip_prefix("FULLNODE_API_INFO=").unwrap().to_owned();
    (Running(child), info)
}

/// The contents of the file at `path` once it exists and is not empty, failing the test
/// after the deadline.
pub fn wait_for(path: &Path) -> String {
    wait_until(&format!("{} never appeared", path.display()), POLL, || {
        std::fs::read_to_string(path).ok().filter(|text| !text.is_empty())
    })
}

/// The JSON-RPC endpoint of the daemon on `repo` and its token, as the daemon wrote them
/// (waiting until it has).
pub fn api_of(repo: &Path) -> (String, String) {
    (rpc_url(&wait_for(&repo.join("api"))), wait_for(&repo.join("token")))
}

/// The JSON-RPC endpoint `http://127.0.0.1:PORT/rpc/v1` of an API multiaddr
/// `/ip4/127.0.0.1/tcp/PORT/http` (a daemon's `api` file, or a `FULLNODE_API_INFO` without
/// its token), read as the node's own client reads it.
pub fn rpc_url(api: &str) -> String {
    let api = api.trim().trim_start_matches(':');
    paych_node::rpc::client::rpc_url(api).unwrap_or_else(|| panic!("not an API address: {api:?}"))
}

/// `http://127.0.0.1:PORT` of an API multiaddr (see [`rpc_url`]).
pub fn http_base(api: &str) -> String {
    let url = rpc_url(api);
    url.trim_end_matches("/rpc/v1").to_owned()
}
