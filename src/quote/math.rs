//! Exact DLMM (Liquidity Book) swap math, as Meteora's DLMM SDK computes it.
//!
//! Prices are Q64.64 fixed point in `u128` (`ONE = 2^64`), every product and
//! quotient goes through `U256`, and every rounding is the SDK's: fees and
//! required inputs round up, outputs round down. rust_decimal is not used
//! here on purpose: a 28-digit decimal walk is off by one raw unit in some
//! bins. See `shared/docs/dlmm-quote-spec.md` for the formulas.
//!
//! The functions are pure: bins come in as a slice already in walk order
//! (from the active bin away from it), so the store decides how to read them.

use ethnum::U256;

/// 1.0 in Q64.64.
pub const ONE: u128 = 1 << 64;
/// Fee rates are in units of 1e-9.
pub const FEE_PRECISION: u128 = 1_000_000_000;
/// Highest total fee rate: 10%.
pub const MAX_FEE_RATE: u128 = 100_000_000;
/// Basis points in 1.
pub const BPS: u128 = 10_000;
/// Largest bin id magnitude the price function accepts (Meteora's limit).
pub const MAX_EXPONENT: u32 = 0x80000;
/// Volatility accumulator step per bin crossed.
const VOLATILITY_PER_BIN: u128 = 10_000;
/// Denominator of the variable fee formula.
const VARIABLE_FEE_DENOMINATOR: u128 = 100_000_000_000;

/// Why a price or swap cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MathError {
    /// `|bin_id| >= 0x80000`, or the Q64.64 power under- or overflows.
    #[error("bin {bin_id} has no representable price at bin_step {bin_step}")]
    PriceOutOfRange {
        /// The bin.
        bin_id: i32,
        /// The pool's bin step.
        bin_step: u16,
    },
    /// The input an exact-out swap needs does not fit in u64.
    #[error("the required input exceeds the u64 range")]
    InputOverflow,
    /// The output of an exact-in swap (the sum of its bins' outputs) does
    /// not fit in u64: it is refused, never wrapped or capped.
    #[error("the output exceeds the u64 range")]
    OutputOverflow,
}

/// What the walk needs to know of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolParams {
    /// Price step between bins, basis points.
    pub bin_step: u16,
    /// The bin trading now.
    pub active_bin_id: i32,
    /// Base fee factor.
    pub base_factor: u16,
    /// Variable fee control; 0 disables the variable fee.
    pub variable_fee_control: u32,
    /// Cap of the volatility accumulator.
    pub max_volatility_accumulator: u32,
    /// Protocol share of fees, basis points (0..=2500).
    pub protocol_share_bps: u16,
}

/// One bin's reserves, raw units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinReserve {
    /// The bin.
    pub bin_id: i32,
    /// Token X held.
    pub x: u64,
    /// Token Y held.
    pub y: u64,
}

/// The part of a swap filled in one bin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinFill {
    /// The bin.
    pub bin_id: i32,
    /// Input into the bin, fee included.
    pub amount_in: u64,
    /// Output from the bin.
    pub amount_out: u64,
    /// Fee charged (protocol + LP).
    pub fee: u64,
    /// Protocol part of `fee`.
    pub protocol_fee: u64,
    /// Fee rate applied, 1e-9 units.
    pub fee_rate: u64,
    /// Volatility accumulator at this bin.
    pub volatility: u64,
}

/// A swap through one pool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HopFill {
    /// Input consumed, fees included.
    pub amount_in: u64,
    /// Output received.
    pub amount_out: u64,
    /// Sum of the bins' fees.
    pub total_fee: u64,
    /// Sum of the bins' protocol fees (each floored per bin, as the SDK does).
    pub protocol_fee: u64,
    /// Bins filled, in walk order.
    pub bins: Vec<BinFill>,
    /// True if the bins ran out before the amount was filled.
    pub exhausted: bool,
}

impl HopFill {
    /// LP part of the fees (the protocol part of each bin's fee is at most
    /// that fee, so this never goes below 0).
    pub fn lp_fee(&self) -> u64 {
        self.total_fee.saturating_sub(self.protocol_fee)
    }

    /// Adds one bin's fill. Every sum is checked: the outputs of bins each
    /// below 2^64 can add up past it (issue #18: u64::MAX of X sold into
    /// three full Y bins), and a wrapped sum is a wrong price.
    fn push(&mut self, fill: BinFill) -> Result<(), MathError> {
        let add = |a: u64, b: u64, e: MathError| a.checked_add(b).ok_or(e);
        self.amount_in = add(self.amount_in, fill.amount_in, MathError::InputOverflow)?;
        self.amount_out = add(self.amount_out, fill.amount_out, MathError::OutputOverflow)?;
        self.total_fee = add(self.total_fee, fill.fee, MathError::InputOverflow)?;
        self.protocol_fee = add(
            self.protocol_fee,
            fill.protocol_fee,
            MathError::InputOverflow,
        )?;
        self.bins.push(fill);
        Ok(())
    }
}

/// `base^exp` in Q64.64, with Meteora's exact algorithm (squaring the
/// reciprocal so every intermediate stays below 1.0).
pub fn pow(base: u128, exp: i32) -> Option<u128> {
    if exp == 0 {
        return Some(ONE);
    }
    let mut invert = exp < 0;
    let e = exp.unsigned_abs();
    if e >= MAX_EXPONENT {
        return None;
    }
    let mut squared = base;
    let mut result = ONE;
    if squared >= result {
        squared = u128::MAX / squared;
        invert = !invert;
    }
    let mut bit = 1;
    while bit <= 0x40000 {
        if e & bit != 0 {
            result = mul_shr64(result, squared);
        }
        squared = mul_shr64(squared, squared);
        bit <<= 1;
    }
    if result == 0 {
        return None;
    }
    Some(if invert { u128::MAX / result } else { result })
}

/// Price of one raw X in raw Y at `bin_id`, Q64.64.
pub fn bin_price(bin_id: i32, bin_step: u16) -> Result<u128, MathError> {
    let base = ONE + (u128::from(bin_step) << 64u32) / BPS;
    pow(base, bin_id).ok_or(MathError::PriceOutOfRange { bin_id, bin_step })
}

/// Total fee rate (1e-9 units) for a volatility accumulator `va`, capped at 10%.
pub fn fee_rate(pool: &PoolParams, va: u128) -> u128 {
    let bin_step = u128::from(pool.bin_step);
    let base = u128::from(pool.base_factor) * bin_step * 10;
    let variable = if pool.variable_fee_control == 0 {
        0
    } else {
        let step = U256::from(va * bin_step);
        let numerator = U256::from(pool.variable_fee_control) * step * step;
        div_ceil(numerator, U256::from(VARIABLE_FEE_DENOMINATOR)).as_u128()
    };
    (base + variable).min(MAX_FEE_RATE)
}

/// The volatility accumulator at `bin_id` for a quote starting at the
/// active bin (no stored volatility state: reference 0).
fn volatility(pool: &PoolParams, bin_id: i32) -> u128 {
    let distance = u128::from(pool.active_bin_id.abs_diff(bin_id));
    (distance * VOLATILITY_PER_BIN).min(u128::from(pool.max_volatility_accumulator))
}

fn protocol_part(pool: &PoolParams, fee: u128) -> u128 {
    fee * u128::from(pool.protocol_share_bps) / BPS
}

/// What a walk needs of one bin: its reserve on the output side, its
/// price, and the volatility and fee rate a quote sees there.
struct BinQuote {
    reserve_out: u128,
    price: u128,
    va: u128,
    rate: u128,
}

/// `None` for a bin with no reserve on the output side (skipped, and not
/// counted as visited for the volatility accumulator).
fn bin_quote(
    pool: &PoolParams,
    bin: &BinReserve,
    swap_for_y: bool,
) -> Result<Option<BinQuote>, MathError> {
    let reserve_out = u128::from(if swap_for_y { bin.y } else { bin.x });
    if reserve_out == 0 {
        return Ok(None);
    }
    let price = bin_price(bin.bin_id, pool.bin_step)?;
    let va = volatility(pool, bin.bin_id);
    Ok(Some(BinQuote {
        reserve_out,
        price,
        va,
        rate: fee_rate(pool, va),
    }))
}

/// Swaps exactly `amount_in` through `bins` (in walk order). X->Y when
/// `swap_for_y`. Bins without reserve on the output side are skipped. If the
/// bins run out first, the fill covers what they held and `exhausted` is set.
pub fn swap_exact_in(
    pool: &PoolParams,
    bins: &[BinReserve],
    amount_in: u64,
    swap_for_y: bool,
) -> Result<HopFill, MathError> {
    let mut fill = HopFill::default();
    let mut left = u128::from(amount_in);
    for bin in bins {
        if left == 0 {
            break;
        }
        let Some(BinQuote {
            reserve_out,
            price,
            va,
            rate,
        }) = bin_quote(pool, bin, swap_for_y)?
        else {
            continue; // nothing to take here
        };
        let fee = ceil_mul_div(left, rate, FEE_PRECISION);
        let ex = left - fee;
        let max_in = if swap_for_y {
            div_ceil(U256::from(reserve_out) << 64u32, U256::from(price))
        } else {
            div_ceil(U256::from(reserve_out) * U256::from(price), U256::from(ONE))
        };
        let (used, out, fee) = if U256::from(ex) >= max_in {
            // Drain the bin: the fee is charged on top of what it can take.
            let max_in = max_in.as_u128();
            let fee = ceil_mul_div(max_in, rate, FEE_PRECISION - rate);
            (max_in + fee, reserve_out, fee)
        } else {
            let out: U256 = if swap_for_y {
                (U256::from(ex) * U256::from(price)) >> 64u32
            } else {
                (U256::from(ex) << 64u32) / U256::from(price)
            };
            (left, out.as_u128(), fee)
        };
        left -= used;
        fill.push(BinFill {
            bin_id: bin.bin_id,
            amount_in: narrow(used, MathError::InputOverflow)?,
            amount_out: narrow(out, MathError::OutputOverflow)?,
            fee: narrow(fee, MathError::InputOverflow)?,
            protocol_fee: narrow(protocol_part(pool, fee), MathError::InputOverflow)?,
            fee_rate: narrow(rate, MathError::InputOverflow)?,
            volatility: narrow(va, MathError::InputOverflow)?,
        })?;
    }
    fill.exhausted = left > 0;
    Ok(fill)
}

/// Swaps for exactly `amount_out` through `bins` (in walk order). If the
/// bins run out first, the fill covers what they held and `exhausted` is set.
pub fn swap_exact_out(
    pool: &PoolParams,
    bins: &[BinReserve],
    amount_out: u64,
    swap_for_y: bool,
) -> Result<HopFill, MathError> {
    let mut fill = HopFill::default();
    let mut want = u128::from(amount_out);
    let mut total_in = 0u128;
    for bin in bins {
        if want == 0 {
            break;
        }
        let Some(BinQuote {
            reserve_out,
            price,
            va,
            rate,
        }) = bin_quote(pool, bin, swap_for_y)?
        else {
            continue; // nothing to take here
        };
        let take = want.min(reserve_out);
        let in_ex = if swap_for_y {
            div_ceil(U256::from(take) << 64u32, U256::from(price))
        } else {
            div_ceil(U256::from(take) * U256::from(price), U256::from(ONE))
        };
        if in_ex > U256::from(u64::MAX) {
            return Err(MathError::InputOverflow);
        }
        let in_ex = in_ex.as_u128();
        let fee = ceil_mul_div(in_ex, rate, FEE_PRECISION - rate);
        total_in += in_ex + fee;
        if total_in > u128::from(u64::MAX) {
            return Err(MathError::InputOverflow);
        }
        want -= take;
        fill.push(BinFill {
            bin_id: bin.bin_id,
            amount_in: narrow(in_ex + fee, MathError::InputOverflow)?,
            amount_out: narrow(take, MathError::OutputOverflow)?,
            fee: narrow(fee, MathError::InputOverflow)?,
            protocol_fee: narrow(protocol_part(pool, fee), MathError::InputOverflow)?,
            fee_rate: narrow(rate, MathError::InputOverflow)?,
            volatility: narrow(va, MathError::InputOverflow)?,
        })?;
    }
    fill.exhausted = want > 0;
    Ok(fill)
}

/// What `amount` of input is worth at `price` with no slippage: X->Y
/// `floor(amount * P / 2^64)`, Y->X `floor((amount << 64u32) / P)`.
pub fn convert_at_price(amount: u128, price: u128, swap_for_y: bool) -> U256 {
    if swap_for_y {
        (U256::from(amount) * U256::from(price)) >> 64u32
    } else {
        (U256::from(amount) << 64u32) / U256::from(price.max(1))
    }
}

/// Price impact of a single-pool swap, as an exact fraction (numerator,
/// denominator) of 1: `|out - out_no_slip| / out_no_slip` where
/// `out_no_slip` converts the input less the last bin's fee rate at the
/// first filled bin's price. `None` if nothing was filled.
pub fn single_pool_impact(
    pool: &PoolParams,
    fill: &HopFill,
    swap_for_y: bool,
) -> Result<Option<(U256, U256)>, MathError> {
    let (Some(first), Some(last)) = (fill.bins.first(), fill.bins.last()) else {
        return Ok(None);
    };
    let consumed = u128::from(fill.amount_in);
    let net = consumed - ceil_mul_div(consumed, u128::from(last.fee_rate), FEE_PRECISION);
    let price = bin_price(first.bin_id, pool.bin_step)?;
    let no_slip = convert_at_price(net, price, swap_for_y);
    let out = U256::from(fill.amount_out);
    let diff = if no_slip > out {
        no_slip - out
    } else {
        out - no_slip
    };
    Ok((no_slip > 0).then_some((diff, no_slip)))
}

/// Formats `numerator / denominator * 100` as a plain decimal string with
/// 20 significant digits, rounded half up, trailing zeros dropped (what the
/// SDK's decimal library prints, without its exponent notation).
pub fn percent_string(numerator: U256, denominator: U256) -> String {
    const SIGNIFICANT: usize = 20;
    if numerator == 0 || denominator == 0 {
        return "0".into();
    }
    // Both below 2^250 here: no product below overflows. (The callers'
    // values are amounts and Q64.64 conversions of them, far smaller.)
    let (mut numerator, mut denominator) = (numerator, denominator);
    while numerator > (U256::MAX >> 8u32) || denominator > (U256::MAX >> 8u32) {
        numerator >>= 1u32;
        denominator >>= 1u32;
    }
    if numerator == 0 || denominator == 0 {
        return "0".into();
    }
    let scaled = numerator * 100;
    let int = scaled / denominator;
    let mut rem = scaled % denominator;
    // Significant digits, `point` of them before the decimal point, after
    // `zeros` zeros that follow "0." when the integer part is 0.
    let mut digits: Vec<u8> = if int == 0 {
        Vec::new()
    } else {
        int.to_string().bytes().map(|b| b - b'0').collect()
    };
    let mut point = digits.len();
    let mut zeros = 0usize;
    while digits.len() <= SIGNIFICANT && rem != 0 {
        rem *= 10;
        let digit = (rem / denominator).as_u8();
        rem %= denominator;
        if digits.is_empty() && digit == 0 {
            zeros += 1;
        } else {
            digits.push(digit);
        }
    }
    if digits.len() > SIGNIFICANT && point <= SIGNIFICANT {
        let round_up = digits.pop().is_some_and(|d| d >= 5);
        if round_up && increment(&mut digits) {
            // 9...9 rounded up: one more leading digit.
            digits.insert(0, 1);
            if point > 0 || zeros == 0 {
                point += 1;
            } else {
                zeros -= 1;
            }
        }
    }
    let text = |ds: &[u8]| ds.iter().map(|d| char::from(b'0' + d)).collect::<String>();
    let (int_part, frac_part) = if point > 0 {
        let point = point.min(digits.len());
        (text(&digits[..point]), text(&digits[point..]))
    } else {
        ("0".to_string(), "0".repeat(zeros) + &text(&digits))
    };
    let frac_part = frac_part.trim_end_matches('0');
    if frac_part.is_empty() {
        int_part
    } else {
        format!("{int_part}.{frac_part}")
    }
}

/// Adds one to a decimal digit string; true if it carried out of the top.
fn increment(digits: &mut [u8]) -> bool {
    for d in digits.iter_mut().rev() {
        if *d == 9 {
            *d = 0;
        } else {
            *d += 1;
            return false;
        }
    }
    true
}

/// `(a * b) >> 64` for Q64.64 values below 2^128.
fn mul_shr64(a: u128, b: u128) -> u128 {
    let product: U256 = U256::from(a) * U256::from(b);
    (product >> 64u32).as_u128()
}

fn div_ceil(numerator: U256, denominator: U256) -> U256 {
    let q = numerator / denominator;
    if numerator % denominator == 0 {
        q
    } else {
        q + 1
    }
}

/// `ceil(a * b / c)` for values whose product fits in U256. Every caller
/// has `b <= c` (a fee rate over the fee precision), so the result is at
/// most `a` and fits in u128.
fn ceil_mul_div(a: u128, b: u128, c: u128) -> u128 {
    debug_assert!(b <= c);
    div_ceil(U256::from(a) * U256::from(b), U256::from(c)).as_u128()
}

/// A per-bin amount as u64. Each is bounded by the u64 input or reserve it
/// came from, so `e` is never expected; it is an error rather than a silent
/// cap all the same, so no path can turn a bug into a wrong number.
fn narrow(v: u128, e: MathError) -> Result<u64, MathError> {
    u64::try_from(v).map_err(|_| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_a() -> PoolParams {
        PoolParams {
            bin_step: 25,
            active_bin_id: 0,
            base_factor: 10_000,
            variable_fee_control: 0,
            max_volatility_accumulator: 350_000,
            protocol_share_bps: 500,
        }
    }

    /// Pool A of pool_a.json in walk order for each direction.
    fn bins_a(swap_for_y: bool) -> Vec<BinReserve> {
        let mut bins: Vec<BinReserve> = (-5..=5)
            .map(|id| match id {
                0 => BinReserve {
                    bin_id: 0,
                    x: 500_000,
                    y: 500_000,
                },
                id if id < 0 => BinReserve {
                    bin_id: id,
                    x: 0,
                    y: 1_000_000,
                },
                id => BinReserve {
                    bin_id: id,
                    x: 1_000_000,
                    y: 0,
                },
            })
            .collect();
        if swap_for_y {
            bins.retain(|b| b.bin_id <= 0);
            bins.reverse();
        } else {
            bins.retain(|b| b.bin_id >= 0);
        }
        bins
    }

    #[test]
    fn prices_match_the_published_q64_values() {
        let cases = [
            (0, 25, 18446744073709551616u128),
            (1, 25, 18492860933893825495),
            (-1, 25, 18400742218164141262),
            (5, 25, 18678484182043970523),
            (-5, 25, 18217879117196203635),
            (6400, 10, 11066635098401162765500),
        ];
        for (id, step, want) in cases {
            assert_eq!(bin_price(id, step), Ok(want), "price({id}, {step})");
        }
        assert!(bin_price(0x80000, 1).is_err());
    }

    #[test]
    fn fee_rate_base_and_capped_variable() {
        let mut pool = pool_a();
        assert_eq!(fee_rate(&pool, 0), 2_500_000);
        pool.variable_fee_control = 40_000;
        // ceil(40000 * (10000 * 25)^2 / 1e11) = 25000
        assert_eq!(fee_rate(&pool, 10_000), 2_525_000);
        pool.variable_fee_control = u32::MAX;
        assert_eq!(fee_rate(&pool, 350_000), MAX_FEE_RATE, "capped at 10%");
    }

    struct Case {
        swap_for_y: bool,
        amount: u64,
        out: u64,
        fee: u64,
        protocol: u64,
        bins: &'static [(i32, u64, u64, u64, u64)], // id, in, out, lp, protocol
    }

    const A1: Case = Case {
        swap_for_y: true,
        amount: 100_000,
        out: 99_750,
        fee: 250,
        protocol: 12,
        bins: &[(0, 100_000, 99_750, 238, 12)],
    };
    const A2: Case = Case {
        swap_for_y: true,
        amount: 2_000_000,
        out: 1_990_043,
        fee: 5_002,
        protocol: 248,
        bins: &[
            (0, 501_254, 500_000, 1_192, 62),
            (-1, 1_005_014, 1_000_000, 2_388, 125),
            (-2, 493_732, 490_043, 1_174, 61),
        ],
    };
    const A3: Case = Case {
        swap_for_y: false,
        amount: 2_500_000,
        out: 2_486_310,
        fee: 6_252,
        protocol: 311,
        bins: &[
            (0, 501_254, 500_000, 1_192, 62),
            (1, 1_005_013, 1_000_000, 2_388, 125),
            (2, 993_733, 986_310, 2_361, 124),
        ],
    };

    #[test]
    fn exact_in_matches_public_vectors_per_bin() {
        for (name, case) in [("A1", A1), ("A2", A2), ("A3", A3)] {
            let fill = swap_exact_in(
                &pool_a(),
                &bins_a(case.swap_for_y),
                case.amount,
                case.swap_for_y,
            )
            .expect("swap");
            assert!(!fill.exhausted, "{name}");
            assert_eq!(fill.amount_in, case.amount, "{name} in");
            assert_eq!(fill.amount_out, case.out, "{name} out");
            assert_eq!(fill.total_fee, case.fee, "{name} fee");
            assert_eq!(fill.protocol_fee, case.protocol, "{name} protocol fee");
            let got: Vec<_> = fill
                .bins
                .iter()
                .map(|b| {
                    (
                        b.bin_id,
                        b.amount_in,
                        b.amount_out,
                        b.fee - b.protocol_fee,
                        b.protocol_fee,
                    )
                })
                .collect();
            assert_eq!(got, case.bins, "{name} per bin");
        }
    }

    #[test]
    fn exact_out_matches_public_vector_a8() {
        let fill = swap_exact_out(&pool_a(), &bins_a(false), 100_000, false).expect("swap");
        assert_eq!((fill.amount_in, fill.amount_out), (100_251, 100_000));
        assert_eq!((fill.total_fee, fill.protocol_fee), (251, 12));
    }

    #[test]
    fn price_impact_and_slippage_of_a2() {
        let fill = swap_exact_in(&pool_a(), &bins_a(true), 2_000_000, true).expect("swap");
        let (n, d) = single_pool_impact(&pool_a(), &fill, true)
            .expect("ok")
            .expect("filled");
        assert_eq!(percent_string(n, d), "0.24847117794486215539");
        assert_eq!(
            u128::from(fill.amount_out) * (10_000 - 100) / 10_000,
            1_970_142
        );
    }

    #[test]
    fn percent_formatting() {
        let p = |n: u32, d: u32| percent_string(U256::from(n), U256::from(d));
        assert_eq!(p(0, 7), "0");
        assert_eq!(p(1, 4), "25");
        assert_eq!(p(1, 3), "33.333333333333333333");
        assert_eq!(p(2, 3), "66.666666666666666667");
        assert_eq!(p(1, 30000), "0.0033333333333333333333");
        assert_eq!(p(999_999_999, 1_000_000_000), "99.9999999");
        assert_eq!(p(3, 1), "300");
        assert_eq!(p(1, 7), "14.285714285714285714");
        // 0.0099999999999999999999...% rounds up across the carry.
        let n = U256::from(99_999_999_999_999_999_999_999u128);
        let d = U256::from(10u128).pow(27);
        assert_eq!(percent_string(n, d), "0.01");
    }

    #[test]
    fn running_out_of_bins_is_reported() {
        let fill = swap_exact_in(&pool_a(), &bins_a(true), 10_000_000, true).expect("swap");
        assert!(fill.exhausted);
        assert_eq!(fill.amount_out, 5_500_000, "everything the Y side held");
        let fill = swap_exact_out(&pool_a(), &bins_a(false), 6_000_000, false).expect("swap");
        assert!(fill.exhausted);
    }

    #[test]
    fn an_output_beyond_u64_is_an_error_never_a_wrapped_sum() {
        // Issue #18: u64::MAX of X into three full Y bins at bin 100 of step
        // 100 is worth 49457994460734440847 raw Y (2.68 x 2^64).
        let pool = PoolParams {
            bin_step: 100,
            active_bin_id: 100,
            ..pool_a()
        };
        let bins: Vec<BinReserve> = (98..=100)
            .rev()
            .map(|id| BinReserve {
                bin_id: id,
                x: 0,
                y: u64::MAX,
            })
            .collect();
        assert_eq!(
            swap_exact_in(&pool, &bins, u64::MAX, true),
            Err(MathError::OutputOverflow)
        );
        // What fits is exact: the bins add up to the output.
        let fill = swap_exact_in(&pool, &bins, u64::MAX / 8, true).expect("fits");
        let sum: u128 = fill.bins.iter().map(|b| u128::from(b.amount_out)).sum();
        assert_eq!(sum, u128::from(fill.amount_out));
    }

    // === properties, over a deterministic pseudo-random sweep ===

    /// splitmix64: reproducible without a dependency.
    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn random_pool(seed: &mut u64) -> (PoolParams, Vec<BinReserve>, Vec<BinReserve>) {
        let pool = PoolParams {
            bin_step: [1, 5, 10, 25, 80, 100][(rng(seed) % 6) as usize],
            active_bin_id: (rng(seed) % 2001) as i32 - 1000,
            base_factor: [5_000, 10_000, 20_000][(rng(seed) % 3) as usize],
            variable_fee_control: [0, 7_500, 40_000, 2_000_000][(rng(seed) % 4) as usize],
            max_volatility_accumulator: 350_000,
            protocol_share_bps: (rng(seed) % 2501) as u16,
        };
        let bins: Vec<BinReserve> = (-20..=20)
            .map(|offset| {
                let id = pool.active_bin_id + offset;
                let amount = |seed: &mut u64| rng(seed) % 10_000_000_000;
                match offset {
                    0 => BinReserve {
                        bin_id: id,
                        x: amount(seed),
                        y: amount(seed),
                    },
                    o if o < 0 => BinReserve {
                        bin_id: id,
                        x: 0,
                        y: amount(seed),
                    },
                    _ => BinReserve {
                        bin_id: id,
                        x: amount(seed),
                        y: 0,
                    },
                }
            })
            .collect();
        let down: Vec<_> = bins
            .iter()
            .rev()
            .filter(|b| b.bin_id <= pool.active_bin_id)
            .copied()
            .collect();
        let up: Vec<_> = bins
            .iter()
            .filter(|b| b.bin_id >= pool.active_bin_id)
            .copied()
            .collect();
        (pool, down, up)
    }

    #[test]
    fn properties_hold_over_random_pools() {
        let mut seed = 42;
        for _ in 0..300 {
            let (pool, down, up) = random_pool(&mut seed);
            for (swap_for_y, bins) in [(true, &down), (false, &up)] {
                let reserve: u128 = bins
                    .iter()
                    .map(|b| u128::from(if swap_for_y { b.y } else { b.x }))
                    .sum();
                let amount = rng(&mut seed) % 50_000_000_000 + 1;
                let a = swap_exact_in(&pool, bins, amount, swap_for_y).expect("in");
                let b =
                    swap_exact_in(&pool, bins, amount + 1 + amount / 7, swap_for_y).expect("in");
                assert!(
                    u128::from(a.amount_out) <= reserve,
                    "output never exceeds reserves"
                );
                assert!(a.amount_in <= amount, "never consumes more than given");
                assert!(
                    b.amount_out >= a.amount_out,
                    "more input never gives less output"
                );
                for fill in &a.bins {
                    assert!(fill.protocol_fee <= fill.fee, "fee split is sane");
                    assert!(fill.fee_rate <= MAX_FEE_RATE as u64, "fee rate capped");
                }
                if a.amount_out == 0 {
                    continue;
                }
                // Exact-out's input, fed to exact-in, gives at least the output.
                let want = a.amount_out;
                let out = swap_exact_out(&pool, bins, want, swap_for_y).expect("out");
                assert!(!out.exhausted);
                assert_eq!(out.amount_out, want);
                let back = swap_exact_in(&pool, bins, out.amount_in, swap_for_y).expect("in");
                assert!(
                    back.amount_out >= want,
                    "exact-out input {} gives {} < {want} ({pool:?}, swap_for_y {swap_for_y})",
                    out.amount_in,
                    back.amount_out
                );
            }
        }
    }
}
