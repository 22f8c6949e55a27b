//! Money amounts as the OpenOES protocol writes them: canonical decimal
//! strings, parsed exactly into `rust_decimal::Decimal`, never a float.
//!
//! The wire form: optional sign, digits, optionally `.` and digits; no
//! exponent, spaces, separators or leading `.`; at most 18 fraction digits.
//! Signed changes always carry their sign (`+10.5`, `-5`). Credit, pledge
//! and settlement all parse and print amounts here, so the rules are one.

use std::fmt;

use rust_decimal::Decimal;

/// Most fraction digits an amount may have (the protocol's limit; also what
/// the 18-decimal tokens of most chains need).
pub const MAX_FRACTION_DIGITS: usize = 18;

/// Why a string is not an acceptable amount. The text is for a person and
/// goes into a field violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Empty string.
    #[error("is required")]
    Empty,
    /// Not of the form `[+-]digits[.digits]`.
    #[error(
        "{0:?} is not a plain decimal (digits, optionally `.` and digits; no exponent, spaces or separators)"
    )]
    Syntax(String),
    /// Too many fraction digits.
    #[error("{0:?} has more than 18 fraction digits")]
    TooPrecise(String),
    /// Does not fit the exact decimal type.
    #[error("{0:?} is too large")]
    TooLarge(String),
    /// A signed change without its sign.
    #[error("{0:?} must carry an explicit sign, e.g. +10.5 or -5")]
    SignRequired(String),
    /// A change of zero.
    #[error("must not be zero")]
    Zero,
    /// A negative amount where only positive ones make sense.
    #[error("{0:?} must be positive")]
    NotPositive(String),
}

/// Parses an amount in the wire form (sign optional).
pub fn parse(text: &str) -> Result<Decimal, AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    let syntax = || AmountError::Syntax(text.to_string());
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(syntax());
    }
    if frac.is_some_and(|f| f.len() > MAX_FRACTION_DIGITS) {
        return Err(AmountError::TooPrecise(text.to_string()));
    }
    // The syntax is checked; what fails now is only size.
    Decimal::from_str_exact(text.strip_prefix('+').unwrap_or(text))
        .map_err(|_| AmountError::TooLarge(text.to_string()))
}

/// Parses a signed change: sign required, not zero.
pub fn parse_change(text: &str) -> Result<Decimal, AmountError> {
    let value = parse(text)?;
    if !text.starts_with(['+', '-']) {
        return Err(AmountError::SignRequired(text.to_string()));
    }
    if value.is_zero() {
        return Err(AmountError::Zero);
    }
    Ok(value)
}

/// Parses an amount that must be greater than zero (deposits, pledges).
pub fn parse_positive(text: &str) -> Result<Decimal, AmountError> {
    let value = parse(text)?;
    if value <= Decimal::ZERO {
        return Err(if value.is_zero() {
            AmountError::Zero
        } else {
            AmountError::NotPositive(text.to_string())
        });
    }
    Ok(value)
}

/// `a + b`, exactly or not at all. rust_decimal's `+` rounds a sum that does
/// not fit its 96-bit mantissa at the larger scale (e.g.
/// `70000000000.000000000000000001 + 10000000000` loses the last digit),
/// which would make Credit Inventory drift from the sum of its changes; here
/// the sum is taken exactly in i128 at the finer of the two scales and
/// converted back with as few fraction digits as it needs, or refused with
/// [`AmountError::TooLarge`]. (Two 96-bit mantissas at a common scale of at
/// most 28 digits cannot overflow i128 unless the sum is beyond `Decimal`.)
pub fn add(a: Decimal, b: Decimal) -> Result<Decimal, AmountError> {
    let too_large = || AmountError::TooLarge(format!("{} + {}", format(a), format(b)));
    let (a, b) = (a.normalize(), b.normalize());
    let mut scale = a.scale().max(b.scale());
    let units = |d: Decimal| {
        d.mantissa()
            .checked_mul(10i128.checked_pow(scale - d.scale())?)
    };
    let (Some(x), Some(y)) = (units(a), units(b)) else {
        return Err(too_large());
    };
    let mut sum = x.checked_add(y).ok_or_else(too_large)?;
    while scale > 0 && sum % 10 == 0 {
        sum /= 10;
        scale -= 1;
    }
    Decimal::try_from_i128_with_scale(sum, scale).map_err(|_| too_large())
}

/// Prints an amount in the wire form: no exponent, no trailing fraction
/// zeros (`10.50` -> `10.5`, `-0` -> `0`).
pub fn format(value: Decimal) -> String {
    Plain(value.normalize()).to_string()
}

/// Prints a signed change: always with its sign (`+10.5`, `-5`).
pub fn format_change(value: Decimal) -> String {
    let text = format(value);
    if text.starts_with('-') {
        text
    } else {
        format!("+{text}")
    }
}

/// Decimal's Display without exponent notation, whatever the value.
struct Plain(Decimal);

impl fmt::Display for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // rust_decimal prints plainly; `-0` normalizes to `0` first.
        let value = if self.0.is_zero() {
            Decimal::ZERO
        } else {
            self.0
        };
        write!(f, "{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_or_refused() {
        let d = |t: &str| parse(t).expect("amount");
        // rust_decimal's own `+` rounds this one (the reason `add` exists).
        let (a, b) = (d("70000000000.000000000000000001"), d("10000000000"));
        assert_ne!(format(a + b), "80000000000.000000000000000001");
        assert_eq!(
            add(a, b).map(format),
            Err(AmountError::TooLarge(
                "70000000000.000000000000000001 + 10000000000".into()
            ))
        );
        assert_eq!(add(d("1.5"), d("-0.25")).map(format), Ok("1.25".into()));
        assert_eq!(add(d("0.1"), d("-0.1")).map(format), Ok("0".into()));
        // Large amounts with few fraction digits are fine.
        let big = d("50000000000000000000000");
        assert_eq!(
            add(big, d("0.5")).map(format),
            Ok("50000000000000000000000.5".into())
        );
        assert_eq!(
            add(d("0.000000000000000001"), d("0.000000000000000002")).map(format),
            Ok("0.000000000000000003".into())
        );
        assert!(add(d("79228162514264337593543950335"), d("1")).is_err());
    }

    #[test]
    fn plain_decimals_parse_exactly() {
        assert_eq!(parse("10.5"), Ok(Decimal::new(105, 1)));
        assert_eq!(parse("+10.5"), Ok(Decimal::new(105, 1)));
        assert_eq!(parse("-5"), Ok(Decimal::new(-5, 0)));
        assert_eq!(
            parse("0.000000000000000001"),
            Ok(Decimal::new(1, 18)),
            "18 digits"
        );
        // Exact: 0.1 + 0.2 is 0.3, as it must be for money.
        assert_eq!(
            parse("0.1").expect("ok") + parse("0.2").expect("ok"),
            parse("0.3").expect("ok")
        );
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        let syntax = [
            "1e5", "1E-3", " 1", "1 ", "1,000", ".5", "5.", "+", "-", "--1", "+-1", "NaN", "inf",
            "0x10", "1.2.3", "١٢",
        ];
        for text in syntax {
            assert!(
                matches!(parse(text), Err(AmountError::Syntax(_))),
                "{text:?}: {:?}",
                parse(text)
            );
        }
        assert_eq!(parse(""), Err(AmountError::Empty));
        assert!(
            matches!(
                parse("0.0000000000000000001"),
                Err(AmountError::TooPrecise(_))
            ),
            "19 digits"
        );
        assert!(matches!(
            parse("99999999999999999999999999999"),
            Err(AmountError::TooLarge(_))
        ));
    }

    #[test]
    fn changes_need_a_sign_and_are_never_zero() {
        assert_eq!(parse_change("+10.0"), Ok(Decimal::new(100, 1)));
        assert_eq!(parse_change("-5"), Ok(Decimal::new(-5, 0)));
        assert!(matches!(
            parse_change("10"),
            Err(AmountError::SignRequired(_))
        ));
        assert_eq!(parse_change("+0.00"), Err(AmountError::Zero));
        assert_eq!(parse_change("-0"), Err(AmountError::Zero));
    }

    #[test]
    fn positive_amounts() {
        assert_eq!(parse_positive("1"), Ok(Decimal::ONE));
        assert_eq!(parse_positive("0"), Err(AmountError::Zero));
        assert!(matches!(
            parse_positive("-1"),
            Err(AmountError::NotPositive(_))
        ));
    }

    #[test]
    fn printing_is_canonical() {
        assert_eq!(format(parse("10.50").expect("valid")), "10.5");
        assert_eq!(format(parse("-0.0").expect("valid")), "0");
        assert_eq!(
            format(parse("1000000").expect("valid")),
            "1000000",
            "no exponent"
        );
        assert_eq!(
            format(parse("0.000000000000000001").expect("valid")),
            "0.000000000000000001"
        );
        assert_eq!(format_change(parse("10.0").expect("valid")), "+10");
        assert_eq!(format_change(parse("-67500.00").expect("valid")), "-67500");
        // Round trip: what we print, we parse back to the same value.
        for text in ["12345678901.123456789012345678", "-0.5", "7"] {
            let value = parse(text).expect("valid");
            assert_eq!(parse(&format(value)), Ok(value), "{text}");
        }
    }
}
