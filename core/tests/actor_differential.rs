//! The pure actor against the real one, edge case by edge case.
//!
//! Each row is a call whose result on the Filecoin chain was read from the source of the
//! built-in actors and the FVM — the payment-channel actor (`actors/paych/src/lib.rs`), the
//! account actor's `AuthenticateMessage`, the runtime's `resolve_to_actor_id`,
//! `extract_send_result`,
//! `ActorError::checked` and `From<SendError>` (`runtime/src/builtin/shared.rs`,
//! `runtime/src/actor_error.rs`), and `fvm_shared`'s `recover_secp_public_key` — and is
//! written next to the row. `core::actor` must give the same result: a redemption's delta,
//! a collection's payout, or the exit code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paych_core::actor::{
    collect, construct, settle, update_channel_state, ExtraCallFailure, Payout,
};
use paych_core::types::{
    Address, ConstructorParams, ExitCode, ModVerifyParams, Signature, SignatureType, TokenAmount,
    INIT_ACTOR_ID,
};
use paych_testkit::actor_env::{params, Setup, MINER_ID};
use paych_testkit::amounts::atto;
use paych_testkit::keys::{high_s_twin, signed_by};

/// The form of the voucher's signature.
#[derive(Debug, Clone, Copy)]
enum Sig {
    /// As paych signs: low-s.
    LowS,
    /// `s` replaced by `n − s`, recovery id flipped.
    HighS,
    /// `s` replaced by `n − s`, recovery id left as it was.
    HighSSameRecoveryId,
    /// The recovery id byte replaced.
    RecoveryId(u8),
    /// A valid secp256k1 signature whose type byte says BLS.
    LabelledBls,
}

/// How the voucher's `extra` call goes; `None`: the voucher has none.
type Extra = Option<Result<(), ExtraCallFailure>>;

/// A constructor party.
#[derive(Debug, Clone, Copy)]
enum Party {
    /// The payer's account, by key address.
    Payer,
    /// An actor that is not an account (a miner), by ID.
    Miner,
    /// A key address with no actor yet.
    NewKey,
    /// An ID address with no actor.
    UnknownId,
    /// An actor (f2) address with no actor.
    UnknownRobust,
}

#[derive(Debug, Clone)]
enum Call {
    /// The Init actor constructs a channel from `from` to `to`.
    Construct { from: Party, to: Party },
    /// The payee redeems a voucher for 10 on a new lane of a channel holding 100.
    Update { sig: Sig, extra: Extra },
    /// A party collects a settled channel owing `to_send` and holding `balance`.
    Collect { to_send: i64, balance: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The constructor created the channel.
    Constructed,
    /// `UpdateChannelState` succeeded and raised `to_send` by this much.
    Redeemed(TokenAmount),
    /// `Collect` paid this out.
    Paid(Payout),
    /// The call failed with this exit code.
    Exit(u32),
}

struct Case {
    name: &'static str,
    call: Call,
    chain: Outcome,
    /// Where the chain's result comes from.
    why: &'static str,
}

fn exited(code: u32) -> Extra {
    Some(Err(ExtraCallFailure::Exited(ExitCode::new(code))))
}

fn update(sig: Sig, extra: Extra) -> Call {
    Call::Update { sig, extra }
}

fn cases() -> Vec<Case> {
    use Outcome::{Constructed, Exit, Paid, Redeemed};
    let redeemed = || Redeemed(atto(10));
    let mut cases = vec![
        Case {
            name: "a channel between two accounts is constructed",
            call: Call::Construct { from: Party::Payer, to: Party::NewKey },
            chain: Constructed,
            why: "resolve_to_actor_id creates a new key address's account with a zero send",
        },
        Case {
            name: "a channel to an actor that is not an account is constructed",
            call: Call::Construct { from: Party::Payer, to: Party::Miner },
            chain: Constructed,
            why: "the constructor resolves parties with resolve_to_actor_id, which checks only \
                  that the actor exists, not its kind",
        },
        Case {
            name: "a party at an ID address without an actor fails with 17",
            call: Call::Construct { from: Party::Payer, to: Party::UnknownId },
            chain: Exit(17),
            why: "an ID address resolves to itself; get_actor_code_cid finds nothing: not_found",
        },
        Case {
            name: "a party at an actor address without an actor fails with 23",
            call: Call::Construct { from: Party::UnknownRobust, to: Party::Payer },
            chain: Exit(23),
            why: "the zero send to create it fails with ErrorNumber::NotFound: From<SendError> \
                  gives USR_UNSPECIFIED",
        },
        Case {
            name: "a low-s signature redeems",
            call: update(Sig::LowS, None),
            chain: redeemed(),
            why: "the plain path of UpdateChannelState",
        },
        Case {
            name: "a high-s signature with its recovery id flipped redeems",
            call: update(Sig::HighS, None),
            chain: redeemed(),
            why: "recover_secp_public_key normalises s to n − s and flips the recovery id",
        },
        Case {
            name: "a high-s signature with its recovery id unchanged is refused with 16",
            call: update(Sig::HighSSameRecoveryId, None),
            chain: Exit(16),
            why: "normalised, it recovers another key: AuthenticateMessage fails with \
                  USR_ILLEGAL_ARGUMENT, passed through by ActorError::checked",
        },
        Case {
            name: "a recovery id of 4 is refused with 16",
            call: update(Sig::RecoveryId(4), None),
            chain: Exit(16),
            why: "RecoveryId::try_from refuses it: AuthenticateMessage fails with 16",
        },
        Case {
            name: "a secp256k1 signature labelled BLS redeems",
            call: update(Sig::LabelledBls, None),
            chain: redeemed(),
            why: "UpdateChannelState hands AuthenticateMessage the signature's bytes only; the \
                  account checks them as a signature of its own key's kind",
        },
        Case {
            name: "a successful extra call redeems",
            call: update(Sig::LowS, Some(Ok(()))),
            chain: redeemed(),
            why: "extract_send_result of a zero exit code",
        },
        Case {
            name: "a missing extra callee fails with 23",
            call: update(Sig::LowS, Some(Err(ExtraCallFailure::CalleeMissing))),
            chain: Exit(23),
            why: "the send fails with ErrorNumber::NotFound: From<SendError> gives USR_UNSPECIFIED",
        },
        Case {
            name: "extra calls nested deeper than the chain allows fail with 24",
            call: update(Sig::LowS, Some(Err(ExtraCallFailure::CallDepthExceeded))),
            chain: Exit(24),
            why: "the send fails with ErrorNumber::LimitExceeded: From<SendError> gives \
                  USR_ASSERTION_FAILED",
        },
    ];
    for code in [4, 9, 11] {
        cases.push(Case {
            name: "an extra callee exiting with 4, 9 or 11 fails with 23",
            call: update(Sig::LowS, exited(code)),
            chain: Exit(23),
            why: "ActorError::checked: SYS_ILLEGAL_INSTRUCTION, SYS_ILLEGAL_EXIT_CODE and \
                  SYS_MISSING_RETURN become USR_UNSPECIFIED",
        });
    }
    for code in [1, 2, 3, 5, 6, 7, 8, 10, 12, 13, 14, 15] {
        cases.push(Case {
            name: "an extra callee exiting with another system code fails with 24",
            call: update(Sig::LowS, exited(code)),
            chain: Exit(24),
            why: "ActorError::checked: any other system error becomes USR_ASSERTION_FAILED",
        });
    }
    for code in [16, 18, 22, 23, 24, 32, 0x1000] {
        cases.push(Case {
            name: "an extra callee's user exit code is passed through",
            call: update(Sig::LowS, exited(code)),
            chain: Exit(code),
            why: "ActorError::checked passes a code of 16 or more through",
        });
    }
    cases.extend([
        Case {
            name: "collect pays to_send to the payee and the rest to the payer",
            call: Call::Collect { to_send: 30, balance: 100 },
            chain: Paid(Payout { to: atto(30), from: atto(70) }),
            why: "Collect sends to_send to `to`, then the current balance to `from`",
        },
        Case {
            name: "collect of a balance exactly to_send pays the payer nothing",
            call: Call::Collect { to_send: 100, balance: 100 },
            chain: Paid(Payout { to: atto(100), from: atto(0) }),
            why: "the second send carries a zero balance",
        },
        Case {
            name: "collect of a balance below to_send fails with 19 and pays nothing",
            call: Call::Collect { to_send: 101, balance: 100 },
            chain: Exit(19),
            why: "the send to `to` fails with ErrorNumber::InsufficientFunds: From<SendError> \
                  gives USR_INSUFFICIENT_FUNDS, and the whole call rolls back",
        },
        Case {
            name: "collect of a negative to_send fails with 24",
            call: Call::Collect { to_send: -1, balance: 100 },
            chain: Exit(24),
            why: "the FVM refuses a negative transfer with ErrorNumber::IllegalArgument: \
                  From<SendError> gives USR_ASSERTION_FAILED",
        },
    ]);
    cases
}

fn with_sig(signature: &Signature, sig: Sig) -> Signature {
    match sig {
        Sig::LowS => signature.clone(),
        Sig::HighS => high_s_twin(signature),
        Sig::HighSSameRecoveryId => {
            let mut twin = high_s_twin(signature);
            twin.bytes[64] ^= 1;
            twin
        }
        Sig::LabelledBls => {
            Signature { sig_type: SignatureType::BLS, bytes: signature.bytes.clone() }
        }
        Sig::RecoveryId(v) => {
            let mut bytes = signature.bytes.clone();
            bytes[64] = v;
            Signature::new_secp256k1(bytes)
        }
    }
}

/// What `core::actor` does with `call`.
fn run(call: &Call) -> Outcome {
    let mut s = Setup::new(100);
    let mut state = s.channel();
    match call {
        Call::Construct { from, to } => {
            s.env.call.caller = Address::new_id(INIT_ACTOR_ID);
            let address = |party: &Party| match party {
                Party::Payer => s.payer.key_addr,
                Party::Miner => Address::new_id(MINER_ID),
                Party::NewKey => paych_testkit::actor_env::Party::new(9, 0).key_addr,
                Party::UnknownId => Address::new_id(4242),
                Party::UnknownRobust => Address::new_actor(b"nobody"),
            };
            let ctor = ConstructorParams { from: address(from), to: address(to) };
            match construct(&s.env, &ctor) {
                Ok(_) => Outcome::Constructed,
                Err(e) => Outcome::Exit(e.exit_code().value()),
            }
        }
        Call::Update { sig, extra } => {
            let mut sv = s.voucher(0, 1, 10);
            if let Some(result) = extra {
                s.env.extra_result = *result;
                sv.extra = Some(ModVerifyParams {
                    actor: Address::new_id(MINER_ID),
                    method: 7,
                    data: Vec::new(),
                });
            }
            let mut sv = signed_by(sv, &s.payer.key);
            sv.signature = sv.signature.as_ref().map(|signature| with_sig(signature, *sig));
            match update_channel_state(&mut state, &s.env, &params(sv)) {
                Ok(redemption) => Outcome::Redeemed(redemption.delta),
                Err(e) => Outcome::Exit(e.exit_code().value()),
            }
        }
        Call::Collect { to_send, balance } => {
            settle(&mut state, &s.env).unwrap();
            state.to_send = TokenAmount::from_atto(*to_send);
            s.env.call.epoch = state.settling_at;
            s.env.call.balance = atto(*balance);
            match collect(&state, &s.env) {
                Ok(payout) => Outcome::Paid(payout),
                Err(e) => Outcome::Exit(e.exit_code().value()),
            }
        }
    }
}

#[test]
fn the_pure_actor_gives_the_real_actors_result_on_every_edge_case() {
    let mut differences = Vec::new();
    for case in cases() {
        let ours = run(&case.call);
        if ours != case.chain {
            differences.push(format!(
                "{} ({:?}): chain {:?} ({}), paych {ours:?}",
                case.name, case.call, case.chain, case.why
            ));
        }
    }
    assert!(differences.is_empty(), "paych differs from the chain:\n{}", differences.join("\n"));
}
