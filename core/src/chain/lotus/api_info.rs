//! Where a Lotus node's API is: [`ApiInfo`], read from `FULLNODE_API_INFO`-style text
//! (`TOKEN:MULTIADDR` or `TOKEN:URL`), as the Lotus tools read it.
//!
//! A multiaddr names a host and port only, so its endpoint is `/rpc/v1` there; a URL keeps
//! its path (`https://host/prefix/rpc/v1`, `https://host/prefix`), and only a bare host
//! gets `/rpc/v1`. `ws`/`wss` map to `http`/`https`, as do the multiaddr forms `/ws`,
//! `/wss`, `/https` and `/tls…`.

use std::str::FromStr;

/// The environment variable the Lotus tools read the full node's API from.
pub const FULLNODE_API_INFO: &str = "FULLNODE_API_INFO";
/// The longest API info string accepted.
pub const MAX_API_INFO_LEN: usize = 8192;
/// The path a bare host or a multiaddr gets: Lotus's v1 API.
pub const DEFAULT_RPC_PATH: &str = "/rpc/v1";

/// Why an API info string could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiInfoError {
    /// The environment variable is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// The string is longer than [`MAX_API_INFO_LEN`].
    #[error("API info longer than {MAX_API_INFO_LEN} bytes")]
    TooLong,
    /// The address part is neither a multiaddr nor an http(s)/ws(s) URL this client reads.
    #[error("invalid API address {text:?}: {reason}")]
    InvalidAddress {
        /// The address given.
        text: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// Where a Lotus node's API is and how to authenticate: `TOKEN:MULTIADDR`, as in
/// `FULLNODE_API_INFO`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiInfo {
    /// The bearer token (a Lotus JWT); `None` for a node that needs none.
    pub token: Option<String>,
    /// The JSON-RPC endpoint, e.g. `http://127.0.0.1:1234/rpc/v1` or
    /// `https://gateway.example/lotus/rpc/v1`.
    pub url: String,
}

impl std::fmt::Debug for ApiInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiInfo")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("url", &self.url)
            .finish()
    }
}

impl ApiInfo {
    /// Parses `TOKEN:/ip4/127.0.0.1/tcp/1234/http`, `:/ip4/…` or `/ip4/…` (no token), or a
    /// URL (`TOKEN:https://host/prefix/rpc/v1`). Multiaddrs may use `ip4`, `ip6`, `dns`,
    /// `dns4`, `dns6`, then `/http`, `/ws` (plain), `/https`, `/wss`, `/tls`, `/tls/http` or
    /// `/tls/ws` (TLS); a multiaddr without one means `http`.
    pub fn parse(text: &str) -> Result<Self, ApiInfoError> {
        let text = text.trim();
        if text.len() > MAX_API_INFO_LEN {
            return Err(ApiInfoError::TooLong);
        }
        let (token, addr) = if text.starts_with('/') || is_url(text) {
            (None, text)
        } else {
            match text.split_once(':') {
                Some((token, addr)) => {
                    (if token.is_empty() { None } else { Some(token.to_owned()) }, addr)
                }
                None => (None, text),
            }
        };
        let url = if is_url(addr) {
            url_endpoint(addr)?
        } else {
            format!("{}{DEFAULT_RPC_PATH}", multiaddr_base(addr)?)
        };
        Ok(ApiInfo { token, url })
    }

    /// Reads [`FULLNODE_API_INFO`] from the environment.
    pub fn from_env() -> Result<Self, ApiInfoError> {
        let text = std::env::var(FULLNODE_API_INFO)
            .map_err(|_| ApiInfoError::Missing(FULLNODE_API_INFO))?;
        Self::parse(&text)
    }

    /// The JSON-RPC endpoint requests are posted to.
    pub fn rpc_url(&self) -> &str {
        &self.url
    }

    /// Whether the endpoint is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("https://")
    }
}

impl FromStr for ApiInfo {
    type Err = ApiInfoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn is_url(text: &str) -> bool {
    ["http://", "https://", "ws://", "wss://"].iter().any(|p| text.starts_with(p))
}

/// A URL's endpoint: its scheme as http(s), its authority, and its path kept — or
/// [`DEFAULT_RPC_PATH`] when it has none.
fn url_endpoint(url: &str) -> Result<String, ApiInfoError> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let scheme = match scheme {
        "ws" | "http" => "http",
        _ => "https",
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains(char::is_whitespace) || authority.contains('@') {
        return Err(ApiInfoError::InvalidAddress {
            text: url.to_owned(),
            reason: "no host, or a host with spaces or credentials".to_owned(),
        });
    }
    if path.contains(char::is_whitespace) {
        return Err(ApiInfoError::InvalidAddress {
            text: url.to_owned(),
            reason: "a path with spaces".to_owned(),
        });
    }
    let path = match path {
        "" | "/" => DEFAULT_RPC_PATH,
        kept => kept,
    };
    Ok(format!("{scheme}://{authority}{path}"))
}

/// A multiaddr's `scheme://host:port`.
fn multiaddr_base(addr: &str) -> Result<String, ApiInfoError> {
    let invalid = |reason: &str| ApiInfoError::InvalidAddress {
        text: addr.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = addr.split('/').collect();
    let ["", proto, host, "tcp", port, rest @ ..] = parts.as_slice() else {
        return Err(invalid(
            "expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/http|https|ws|wss|tls…]",
        ));
    };
    let host = match *proto {
        "ip4" => host
            .parse::<std::net::Ipv4Addr>()
            .map_err(|_| invalid("not an IPv4 address"))?
            .to_string(),
        "ip6" => format!(
            "[{}]",
            host.parse::<std::net::Ipv6Addr>().map_err(|_| invalid("not an IPv6 address"))?
        ),
        "dns" | "dns4" | "dns6" => {
            if host.is_empty()
                || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(invalid("not a host name"));
            }
            (*host).to_owned()
        }
        _ => return Err(invalid("expected ip4, ip6, dns, dns4 or dns6")),
    };
    let port: u16 = port.parse().map_err(|_| invalid("not a TCP port"))?;
    let scheme = match rest {
        [] | ["http"] | ["ws"] => "http",
        ["https"] | ["wss"] | ["tls"] | ["tls", "http"] | ["tls", "ws"] => "https",
        _ => return Err(invalid("expected http, https, ws, wss, tls, tls/http or tls/ws")),
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn url(text: &str) -> String {
        ApiInfo::parse(text).unwrap().url
    }

    #[test]
    fn reads_api_info_with_and_without_token() {
        let info = ApiInfo::parse("eyJh.eyJB.sig:/ip4/127.0.0.1/tcp/1234/http").unwrap();
        assert_eq!(info.token.as_deref(), Some("eyJh.eyJB.sig"));
        assert_eq!(info.rpc_url(), "http://127.0.0.1:1234/rpc/v1");
        let info = ApiInfo::parse(":/ip4/127.0.0.1/tcp/5678/http").unwrap();
        assert_eq!(info.token, None);
        assert_eq!(info.url, "http://127.0.0.1:5678/rpc/v1");
        let info = ApiInfo::parse("tok:http://127.0.0.1:1234/rpc/v0").unwrap();
        assert_eq!(info.token.as_deref(), Some("tok"));
    }

    #[test]
    fn a_multiaddr_gets_the_v1_path_on_its_host() {
        assert_eq!(url("/ip4/10.0.0.1/tcp/1234/ws"), "http://10.0.0.1:1234/rpc/v1");
        assert_eq!(url("/ip6/::1/tcp/1234"), "http://[::1]:1234/rpc/v1");
        assert_eq!(url("/dns4/lotus.local/tcp/1234/http"), "http://lotus.local:1234/rpc/v1");
    }

    #[test]
    fn multiaddrs_with_https_wss_or_tls_map_to_https() {
        for tail in ["https", "wss", "tls", "tls/http", "tls/ws"] {
            let info = ApiInfo::parse(&format!("tok:/dns/lotus.local/tcp/443/{tail}")).unwrap();
            assert_eq!(info.url, "https://lotus.local:443/rpc/v1", "{tail}");
            assert!(info.is_tls());
        }
    }

    #[test]
    fn a_url_keeps_its_path() {
        assert_eq!(
            url("tok:https://gw.example/some/prefix/rpc/v1"),
            "https://gw.example/some/prefix/rpc/v1"
        );
        assert_eq!(url("https://gw.example/prefix"), "https://gw.example/prefix");
        assert_eq!(url("https://gw.example:8443/rpc/v0"), "https://gw.example:8443/rpc/v0");
        assert_eq!(url("wss://gw.example/prefix/rpc/v1"), "https://gw.example/prefix/rpc/v1");
        assert_eq!(url("ws://127.0.0.1:1234/rpc/v0"), "http://127.0.0.1:1234/rpc/v0");
    }

    #[test]
    fn a_bare_host_url_gets_the_v1_path() {
        assert_eq!(url("https://gw.example"), "https://gw.example/rpc/v1");
        assert_eq!(url("https://gw.example/"), "https://gw.example/rpc/v1");
        assert_eq!(url("tok:http://127.0.0.1:1234"), "http://127.0.0.1:1234/rpc/v1");
    }

    #[test]
    fn refuses_bad_api_info() {
        for bad in [
            "",
            "tok:",
            "/ip4/127.0.0.1/udp/1234/http",
            "/ip4/300.0.0.1/tcp/1234/http",
            "/ip4/127.0.0.1/tcp/99999/http",
            "/ip4/127.0.0.1/tcp/1234/quic",
            "/unix/tmp/sock",
            "https:///rpc/v1",
            "https://user:pw@host/rpc/v1",
            "https://host/a path",
        ] {
            assert!(ApiInfo::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ApiInfo::parse(&"a".repeat(MAX_API_INFO_LEN + 1)), Err(ApiInfoError::TooLong));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let info = ApiInfo::parse("secret-token:/ip4/127.0.0.1/tcp/1234/http").unwrap();
        assert!(!format!("{info:?}").contains("secret-token"));
    }
}
