//! Amounts from plain numbers: the one place tests turn `u64`s into [`TokenAmount`]s.

use paych_core::types::TokenAmount;

/// `n` attoFIL.
pub fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

/// `n` whole FIL.
pub fn fil(n: u64) -> TokenAmount {
    TokenAmount::from_whole(n)
}
