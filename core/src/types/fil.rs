//! FIL amounts in text, as the Lotus CLI reads and writes them.
//!
//! Output: the shortest decimal in FIL followed by ` FIL` (`0.5 FIL`, `1 FIL`, `0 FIL`).
//! Input: a decimal number with an optional unit — `fil` (the default), `millifil`,
//! `microfil`, `nanofil`, `picofil`, `femtofil` or `attofil` (the `fil` suffix of the
//! sub-units optional, case ignored) — e.g. `0.5`, `0.5 FIL`, `1500 nanoFIL`, `42 atto`.

use fvm_shared::bigint::BigInt;
use fvm_shared::econ::TokenAmount;

/// Why a FIL amount could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid FIL amount {text:?}: {reason}")]
pub struct FilParseError {
    /// The text given.
    pub text: String,
    /// Why it is invalid.
    pub reason: &'static str,
}

/// Formats an amount in FIL, as Lotus prints it.
pub fn format_fil(amount: &TokenAmount) -> String {
    let atto = amount.atto();
    let negative = atto.sign() == fvm_shared::bigint::Sign::Minus;
    let magnitude = atto.magnitude().to_string();
    let padded = format!("{magnitude:0>19}");
    let (whole, fraction) = padded.split_at(padded.len() - 18);
    let fraction = fraction.trim_end_matches('0');
    let sign = if negative { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole} FIL")
    } else {
        format!("{sign}{whole}.{fraction} FIL")
    }
}

/// Parses a FIL amount (see the module documentation for the accepted forms). Negative
/// amounts are refused.
pub fn parse_fil(text: &str) -> Result<TokenAmount, FilParseError> {
    let err = |reason| FilParseError { text: text.to_owned(), reason };
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix("fil").unwrap_or(&unit);
    let decimals: usize =
        match unit {
            "" => 18,
            "milli" => 15,
            "micro" => 12,
            "nano" => 9,
            "pico" => 6,
            "femto" => 3,
            "atto" | "a" => 0,
            _ => return Err(err(
                "unknown unit (use FIL, milliFIL, microFIL, nanoFIL, picoFIL, femtoFIL or attoFIL)",
            )),
        };
    if number.is_empty() {
        return Err(err("expected a number"));
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') {
        return Err(err("more than one decimal point"));
    }
    if whole.is_empty() && fraction.is_empty() {
        return Err(err("expected a number"));
    }
    if fraction.len() > decimals {
        return Err(err("more decimals than an attoFIL allows"));
    }
    if whole.len() + decimals > 80 {
        return Err(err("amount too large"));
    }
    let digits = format!("{whole}{fraction:0<decimals$}");
    let atto: BigInt = if digits.is_empty() {
        BigInt::default()
    } else {
        digits.parse().map_err(|_| err("expected a number"))?
    };
    Ok(TokenAmount::from_atto(atto))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_lotus() {
        assert_eq!(format_fil(&TokenAmount::from_whole(1)), "1 FIL");
        assert_eq!(format_fil(&TokenAmount::default()), "0 FIL");
        assert_eq!(format_fil(&TokenAmount::from_atto(500_000_000_000_000_000u64)), "0.5 FIL");
        assert_eq!(format_fil(&TokenAmount::from_atto(1)), "0.000000000000000001 FIL");
        assert_eq!(format_fil(&TokenAmount::from_atto(-1_500_000_000_000_000_000i64)), "-1.5 FIL");
    }

    #[test]
    fn parses_lotus_forms() {
        assert_eq!(parse_fil("0.5").unwrap(), TokenAmount::from_atto(500_000_000_000_000_000u64));
        assert_eq!(parse_fil("0.5 FIL").unwrap(), parse_fil("0.5fil").unwrap());
        assert_eq!(parse_fil("2").unwrap(), TokenAmount::from_whole(2));
        assert_eq!(parse_fil("1500 nanoFIL").unwrap(), TokenAmount::from_nano(1500));
        assert_eq!(parse_fil("42 atto").unwrap(), TokenAmount::from_atto(42));
        assert_eq!(parse_fil(".25").unwrap(), TokenAmount::from_atto(250_000_000_000_000_000u64));
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        for bad in ["", "FIL", "-1", "1.2.3", "1 bitcoin", "0.1 atto", ".", "1e9", &"9".repeat(100)]
        {
            assert!(parse_fil(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trips() {
        for atto in [0u64, 1, 999, 10u64.pow(18), 123_456_789_012_345_678] {
            let amount = TokenAmount::from_atto(atto);
            let text = format_fil(&amount);
            assert_eq!(parse_fil(&text).unwrap(), amount, "{text}");
        }
    }
}
