//! How a Lotus node's failures become [`ChainError`]s: JSON-RPC error codes as go-jsonrpc
//! and Lotus define them ([`CODES`], one table), exit codes named in Lotus's error texts,
//! and TLS failures found beneath a transport error.
//!
//! Sources: go-jsonrpc `server.go`/`handler.go` (-32700 parse error, -32600 invalid
//! request, -32601 method not found, -32602 invalid params; any other Go error is code 1,
//! `FirstUserCode` = 2 in `errors.go`), and Lotus `api/api_errors.go` (`EOutOfGas` = 2 …
//! `EPaymentChannelDisabled` = 13, `ELimitExceeded` = -32005, `EExpensiveFork` = -32002).
//! -32603 (internal error) and -32000 (server error) are JSON-RPC 2.0's; -32001 is the
//! paych devnet's own "not found".

use std::time::Duration;

use serde_json::Value;

use crate::chain::{ChainError, TlsError};
use crate::jsonrpc::{RpcError, RpcResponse};
use crate::types::ExitCode;

/// What a JSON-RPC error code says about a request, and so which [`ChainError`] it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The node did not understand the request: a client/server mismatch
    /// ([`ChainError::Transport`]).
    Mismatch,
    /// The node does not serve the method ([`ChainError::Unsupported`]).
    MethodNotFound,
    /// The node cannot answer now, for reasons of its own — state it does not hold, a
    /// subsystem not ready ([`ChainError::Transport`]).
    Unavailable,
    /// Something asked for does not exist ([`ChainError::NotFound`]).
    NotFound,
    /// The chain refused: a message, a call, a limit ([`ChainError::Rejected`], with the
    /// exit code when the error carries one).
    Rejected,
    /// Execution ran out of gas ([`ChainError::Rejected`] with exit code 7,
    /// `SysErrOutOfGas`).
    OutOfGas,
    /// A plain Go error (code 1, and codes this table does not know): read from its text —
    /// "not found" is [`ChainError::NotFound`], "context deadline exceeded" or "timed out"
    /// is [`ChainError::Timeout`], anything else [`ChainError::Rejected`].
    ByMessage,
}

/// Every JSON-RPC error code a Lotus node (or a paych devnet) answers, with its name where
/// it is defined and its [`Class`].
pub const CODES: &[(i64, &str, Class)] = &[
    (-32700, "go-jsonrpc rpcParseError", Class::Mismatch),
    (-32600, "go-jsonrpc rpcInvalidRequest", Class::Mismatch),
    (-32601, "go-jsonrpc rpcMethodNotFound", Class::MethodNotFound),
    (-32602, "go-jsonrpc rpcInvalidParams", Class::Mismatch),
    (-32603, "JSON-RPC internal error", Class::Unavailable),
    (-32000, "JSON-RPC server error", Class::ByMessage),
    (-32001, "paych devnet: not found", Class::NotFound),
    (-32002, "Lotus EExpensiveFork", Class::Unavailable),
    (-32005, "Lotus ELimitExceeded", Class::Rejected),
    (1, "go-jsonrpc default (a Go error)", Class::ByMessage),
    (2, "Lotus EOutOfGas", Class::OutOfGas),
    (3, "Lotus EExecutionReverted", Class::Rejected),
    (4, "Lotus EF3Disabled", Class::Unavailable),
    (5, "Lotus EF3ParticipationTicketInvalid", Class::Unavailable),
    (6, "Lotus EF3ParticipationTicketExpired", Class::Unavailable),
    (7, "Lotus EF3ParticipationIssuerMismatch", Class::Unavailable),
    (8, "Lotus EF3ParticipationTooManyInstances", Class::Unavailable),
    (9, "Lotus EF3ParticipationTicketStartBeforeExisting", Class::Unavailable),
    (10, "Lotus EF3NotReady", Class::Unavailable),
    (11, "Lotus EActorNotFound", Class::NotFound),
    (12, "Lotus ENullRound", Class::NotFound),
    (13, "Lotus EPaymentChannelDisabled", Class::Rejected),
];

/// `SysErrOutOfGas`: the exit code of a message that ran out of gas.
const OUT_OF_GAS_EXIT: u32 = 7;

/// The class of a JSON-RPC error code ([`Class::ByMessage`] for codes not in [`CODES`]).
pub fn class_of(code: i64) -> Class {
    CODES.iter().find(|(c, _, _)| *c == code).map_or(Class::ByMessage, |(_, _, class)| *class)
}

/// The result of a response to request `id`, or its error as a [`ChainError`].
pub(super) fn answer(
    method: &str,
    id: u64,
    response: RpcResponse,
    timeout: Duration,
) -> Result<Value, ChainError> {
    match response.outcome {
        Ok(_) if response.id != id => Err(ChainError::Transport(format!(
            "{method}: answer to request {} instead of {id}",
            response.id
        ))),
        Ok(value) => Ok(value),
        Err(error) => Err(rpc_error(error, timeout)),
    }
}

/// Maps a JSON-RPC error answer through [`CODES`].
pub fn rpc_error(error: RpcError, timeout: Duration) -> ChainError {
    let text = error.to_string();
    match class_of(error.code) {
        Class::Mismatch | Class::Unavailable => ChainError::Transport(text),
        Class::MethodNotFound => ChainError::Unsupported(error.message),
        Class::NotFound => ChainError::NotFound(error.message),
        Class::OutOfGas => ChainError::Rejected {
            exit_code: Some(ExitCode::new(OUT_OF_GAS_EXIT)),
            message: error.message,
        },
        Class::Rejected => rejected(error),
        Class::ByMessage => {
            let lower = error.message.to_ascii_lowercase();
            if lower.contains("not found") {
                ChainError::NotFound(error.message)
            } else if lower.contains("context deadline exceeded") || lower.contains("timed out") {
                ChainError::Timeout(timeout)
            } else {
                rejected(error)
            }
        }
    }
}

/// A refusal, with the exit code the error's data (`{"ExitCode":n}`) or text names.
fn rejected(error: RpcError) -> ChainError {
    let exit_code = error
        .data
        .as_ref()
        .and_then(|d| d.get("ExitCode"))
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
        .or_else(|| exit_code_in(&error.message))
        .map(ExitCode::new);
    ChainError::Rejected { exit_code, message: error.message }
}

/// The exit code a Lotus error message names: `exit=[ErrIllegalArgument(16)]`,
/// `exit=[16]`, `RetCode=16`, `exit code 16`.
pub fn exit_code_in(message: &str) -> Option<u32> {
    let leading_number = |text: &str| -> Option<u32> {
        let end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        text[..end].parse().ok()
    };
    for marker in ["exit=[", "RetCode=", "exit code ", "ExitCode "] {
        let Some(at) = message.find(marker) else { continue };
        let rest = &message[at + marker.len()..];
        // `16…`, or a name with the number in parentheses: `ErrIllegalArgument(16)`.
        let named = rest
            .split([']', ' ', ','])
            .next()
            .and_then(|field| field.split_once('('))
            .and_then(|(_, number)| leading_number(number));
        if let Some(code) = leading_number(rest).or(named) {
            return Some(code);
        }
    }
    None
}

/// A lookup-style error turned into a refusal, for methods where "not found" means the
/// chain refused (pushing, estimating, calling).
pub(super) fn refused(e: ChainError) -> ChainError {
    match e {
        ChainError::NotFound(message) => ChainError::Rejected { exit_code: None, message },
        other => other,
    }
}

/// The TLS failure beneath an error, if there is one: the first `rustls::Error` in its
/// chain of sources, stepping into the errors `io::Error`s wrap (TLS streams put it in one,
/// and the HTTP connector wraps that in another).
pub fn tls_cause(error: &(dyn std::error::Error + 'static)) -> Option<TlsError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls_error(tls));
        }
        // An `io::Error`'s `source` skips the error it wraps: step into that one instead.
        next = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn tls_error(error: &rustls::Error) -> TlsError {
    use rustls::CertificateError as C;
    let text = error.to_string();
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => TlsError::Expired(text),
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsError::WrongHost(text),
            _ => TlsError::NotTrusted(text),
        },
        _ => TlsError::Handshake(text),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn map(code: i64, message: &str) -> ChainError {
        rpc_error(RpcError::new(code, message), Duration::from_secs(3))
    }

    #[test]
    fn finds_exit_codes_in_lotus_errors() {
        assert_eq!(
            exit_code_in(
                "message execution failed (exit=[ErrIllegalArgument(16)], revert reason=[none])"
            ),
            Some(16)
        );
        assert_eq!(exit_code_in("call failed: exit=[18]"), Some(18));
        assert_eq!(exit_code_in("actor aborted: RetCode=32"), Some(32));
        assert_eq!(exit_code_in("rejected with exit code 20: illegal state"), Some(20));
        assert_eq!(exit_code_in("mpool push: nonce too low"), None);
    }

    #[test]
    fn go_jsonrpc_request_errors_are_a_mismatch_not_a_refusal() {
        for code in [-32700, -32600, -32602] {
            assert!(matches!(map(code, "Parse error"), ChainError::Transport(_)), "{code}");
        }
    }

    #[test]
    fn method_not_found_is_unsupported() {
        let e = map(-32601, "method 'Filecoin.StateActorCodeCIDs' not found");
        assert!(matches!(e, ChainError::Unsupported(m) if m.contains("StateActorCodeCIDs")));
    }

    #[test]
    fn internal_errors_are_transport() {
        assert!(matches!(map(-32603, "boom"), ChainError::Transport(_)));
    }

    #[test]
    fn an_expensive_fork_is_not_a_timeout() {
        let e = map(-32002, "required historical state unavailable: refusing explicit call");
        assert!(matches!(e, ChainError::Transport(m) if m.contains("historical state")));
    }

    #[test]
    fn lotus_actor_not_found_and_null_round_are_not_found() {
        assert!(matches!(map(11, "actor not found"), ChainError::NotFound(_)));
        assert!(matches!(map(12, "requested epoch was a null round"), ChainError::NotFound(_)));
        assert!(matches!(map(-32001, "block not found"), ChainError::NotFound(_)));
    }

    #[test]
    fn out_of_gas_is_refused_with_exit_code_7() {
        assert!(matches!(
            map(2, "call ran out of gas"),
            ChainError::Rejected { exit_code: Some(c), .. } if c.value() == 7
        ));
    }

    #[test]
    fn execution_reverted_limit_exceeded_and_paych_disabled_are_refusals() {
        for code in [3, -32005, 13] {
            assert!(matches!(map(code, "no"), ChainError::Rejected { .. }), "{code}");
        }
        assert!(matches!(
            map(3, "message execution failed (exit=[33])"),
            ChainError::Rejected { exit_code: Some(c), .. } if c.value() == 33
        ));
    }

    #[test]
    fn f3_errors_are_unavailable_not_refusals() {
        for code in 4..=10 {
            assert!(matches!(map(code, "f3 is disabled"), ChainError::Transport(_)), "{code}");
        }
    }

    #[test]
    fn a_plain_go_error_is_read_from_its_text() {
        for code in [1, -32000, 4242] {
            let not_found = map(code, "resolution lookup failed: actor not found");
            assert!(matches!(not_found, ChainError::NotFound(_)), "{code}");
            let late = map(code, "context deadline exceeded");
            assert!(matches!(late, ChainError::Timeout(d) if d == Duration::from_secs(3)));
            let refused = map(code, "gas premium too low");
            assert!(matches!(refused, ChainError::Rejected { exit_code: None, .. }));
        }
        let mut with_data = RpcError::new(-32000, "refused");
        with_data.data = Some(json!({"ExitCode": 16}));
        assert!(matches!(
            rpc_error(with_data, Duration::ZERO),
            ChainError::Rejected { exit_code: Some(c), .. } if c.value() == 16
        ));
    }

    #[test]
    fn every_code_in_the_table_is_listed_once() {
        let mut codes: Vec<i64> = CODES.iter().map(|(c, _, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CODES.len());
    }

    #[test]
    fn finds_a_certificate_error_inside_an_io_error() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        let wrapped = std::io::Error::other(io);
        let cause = tls_cause(&wrapped).unwrap();
        assert!(matches!(&cause, TlsError::NotTrusted(_)));
        assert!(cause.to_string().starts_with("certificate not trusted: "));
        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        assert!(matches!(tls_cause(&name), Some(TlsError::WrongHost(_))));
        assert_eq!(tls_cause(&std::io::Error::other("refused")), None);
    }
}
