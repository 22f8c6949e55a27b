//! Pools and bins: the ingest shape, its validation, and the JSON stored in
//! Redis.
//!
//! Input comes two ways, the `pools load` file (`{"pool": {...}, "bins":
//! [...]}`, the seed's shape, see `tests/data/dlmm/pool_a.json`) and the
//! UpsertPool / UpsertBins RPCs. Both are checked by the same code and name
//! bad fields the same way (`pool.bin_step`, `bins[3].x_amount`).

use ethnum::U256;
use serde::{Deserialize, Serialize};

use super::math::{self, BinReserve, PoolParams};
use crate::validate::FieldViolations;

/// Highest protocol share of fees, basis points (25%).
pub const MAX_PROTOCOL_SHARE_BPS: u32 = 2500;

/// How far a given display price may be from the price derived from the
/// bin id, relative: the display price is informational, but one that
/// disagrees beyond rounding means the data is wrong.
const PRICE_TOLERANCE_PPB: u64 = 1_000;

/// A pool's configuration, as stored at `pool:<id>` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// Unique id.
    pub pool_id: String,
    /// Token X.
    pub token_x: String,
    /// Token Y.
    pub token_y: String,
    /// Price step between bins, basis points.
    pub bin_step: u16,
    /// The bin trading now.
    pub active_bin_id: i32,
    /// Base fee factor.
    pub base_factor: u16,
    /// Variable fee control.
    pub variable_fee_control: u32,
    /// Cap of the volatility accumulator.
    pub max_volatility_accumulator: u32,
    /// Protocol share of fees, basis points.
    pub protocol_share_bps: u16,
    /// Free-form status, informational.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Decimals of token X, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_x_decimals: Option<u8>,
    /// Decimals of token Y, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_y_decimals: Option<u8>,
    /// Unix milliseconds of the first write; set by the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    /// Unix milliseconds of the last write; set by the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<i64>,
    /// Which generation of keys holds the bins (see [`super::keys`]);
    /// set by the store's scripts, `None` for the seed's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bins_gen: Option<u64>,
}

impl Pool {
    /// The parameters the swap math needs.
    pub fn params(&self) -> PoolParams {
        PoolParams {
            bin_step: self.bin_step,
            active_bin_id: self.active_bin_id,
            base_factor: self.base_factor,
            variable_fee_control: self.variable_fee_control,
            max_volatility_accumulator: self.max_volatility_accumulator,
            protocol_share_bps: self.protocol_share_bps,
        }
    }
}

/// One bin, as stored at `bin:<pool id>:<bin id>` (JSON; amounts as strings
/// because JSON numbers lose precision above 2^53).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bin {
    /// The bin.
    pub bin_id: i32,
    /// Raw token X, decimal string.
    #[serde(with = "u64_string")]
    pub x_amount: u64,
    /// Raw token Y, decimal string.
    #[serde(with = "u64_string")]
    pub y_amount: u64,
    /// Display price; informational.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub price: String,
}

impl Bin {
    /// True if the bin holds nothing (it is then removed, not stored).
    pub fn is_empty(&self) -> bool {
        self.x_amount == 0 && self.y_amount == 0
    }

    /// The reserves, for the math.
    pub fn reserve(&self) -> BinReserve {
        BinReserve {
            bin_id: self.bin_id,
            x: self.x_amount,
            y: self.y_amount,
        }
    }
}

/// A pool with its bins, as loaded from a file or an UpsertPool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// The configuration.
    pub pool: Pool,
    /// The bins given (empty ones mean "remove").
    pub bins: Vec<Bin>,
}

// === input, before validation ===

/// Longest `status` of a pool, bytes: informational text, copied into every
/// ListPools answer (a 3 MB status on 40 pools made a 120 MB message).
pub const MAX_STATUS_BYTES: usize = 256;
/// Longest display `price` of a bin, characters: 40 significant digits and
/// a point are more than any price needs.
pub const MAX_PRICE_CHARS: usize = 80;

/// Fields the store sets itself; accepted in a file (a dump of stored
/// pools loads again) and ignored.
const STORE_FIELDS: [&str; 3] = ["created_at", "last_updated", "bins_gen"];

/// A pool as given, every field still unchecked. A field left out is
/// `None` and refused as missing (never taken as 0); a field not of this
/// shape lands in `unknown` and is refused by name (`base_facter` would
/// otherwise be a zero-fee pool).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PoolInput {
    /// Unique id.
    #[serde(default)]
    pub pool_id: String,
    /// Token X.
    #[serde(default)]
    pub token_x: String,
    /// Token Y.
    #[serde(default)]
    pub token_y: String,
    /// Bin step.
    pub bin_step: Option<i64>,
    /// Active bin.
    pub active_bin_id: Option<i64>,
    /// Base factor.
    pub base_factor: Option<i64>,
    /// Variable fee control.
    pub variable_fee_control: Option<i64>,
    /// Volatility cap.
    pub max_volatility_accumulator: Option<i64>,
    /// Protocol share, bps.
    pub protocol_share_bps: Option<i64>,
    /// Status.
    #[serde(default)]
    pub status: Option<String>,
    /// Token X decimals.
    #[serde(default)]
    pub token_x_decimals: Option<i64>,
    /// Token Y decimals.
    #[serde(default)]
    pub token_y_decimals: Option<i64>,
    /// Any other field, refused by name.
    #[serde(flatten)]
    pub unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A bin as given; as strict as [`PoolInput`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BinInput {
    /// The bin.
    pub bin_id: Option<i64>,
    /// Raw X: a decimal string (a JSON integer is accepted too).
    pub x_amount: Option<Amount>,
    /// Raw Y: a decimal string (a JSON integer is accepted too).
    pub y_amount: Option<Amount>,
    /// Display price.
    #[serde(default)]
    pub price: Option<String>,
    /// Any other field, refused by name.
    #[serde(flatten)]
    pub unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

/// An amount as given: text, or a JSON number kept as its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amount(pub String);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(Amount(match value {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}

/// The ingest file shape: `{"pool": {...}, "bins": [...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    /// The pool.
    pub pool: PoolInput,
    /// Its bins.
    #[serde(default)]
    pub bins: Vec<BinInput>,
}

/// Why a pool file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PoolFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON of the expected shape.
    #[error("{path}: not a pool file ({{\"pool\": {{...}}, \"bins\": [...]}}): {source}")]
    Json {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The data is invalid.
    #[error("{path}: {violations}")]
    Invalid {
        /// The file.
        path: String,
        /// Every bad field.
        violations: FieldViolations,
    },
}

impl PoolFile {
    /// Reads and validates a pool file of at most `max_bins` bins.
    pub fn load(path: &std::path::Path, max_bins: usize) -> Result<PoolSnapshot, PoolFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PoolFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: PoolFile = serde_json::from_str(&text).map_err(|source| PoolFileError::Json {
            path: shown.clone(),
            source,
        })?;
        validate_snapshot(&file.pool, &file.bins, max_bins).map_err(|violations| {
            PoolFileError::Invalid {
                path: shown,
                violations,
            }
        })
    }
}

/// Checks a pool and its bins (at most `max_bins` of them: one write is one
/// Lua script, see `quote.max_bins_per_write`); every problem is reported,
/// by field path.
pub fn validate_snapshot(
    pool: &PoolInput,
    bins: &[BinInput],
    max_bins: usize,
) -> Result<PoolSnapshot, FieldViolations> {
    let mut v = FieldViolations::default();
    let pool = validate_pool(pool, &mut v);
    let bins = validate_bins(pool.as_ref(), bins, max_bins, &mut v);
    match (pool, v.0.is_empty()) {
        (Some(pool), true) => Ok(PoolSnapshot { pool, bins }),
        _ => Err(v),
    }
}

/// Checks bins (at most `max_bins`) for a pool already known.
pub fn validate_bins_for(
    pool: &Pool,
    bins: &[BinInput],
    max_bins: usize,
) -> Result<Vec<Bin>, FieldViolations> {
    let mut v = FieldViolations::default();
    let bins = validate_bins(Some(pool), bins, max_bins, &mut v);
    if v.0.is_empty() { Ok(bins) } else { Err(v) }
}

fn validate_pool(p: &PoolInput, v: &mut FieldViolations) -> Option<Pool> {
    for (field, value) in [
        ("pool.pool_id", &p.pool_id),
        ("pool.token_x", &p.token_x),
        ("pool.token_y", &p.token_y),
    ] {
        v.check_id(field, value);
    }
    if !p.token_x.is_empty() && p.token_x == p.token_y {
        v.add("pool.token_y", "must differ from token_x");
    }
    unknown_fields(v, "pool", &p.unknown, &STORE_FIELDS);
    if let Some(status) = &p.status {
        v.check_text("pool.status", status, MAX_STATUS_BYTES, false);
    }
    let bin_step = ranged(v, "pool.bin_step", p.bin_step, 1, 10_000);
    let active = ranged(
        v,
        "pool.active_bin_id",
        p.active_bin_id,
        -(i64::from(math::MAX_EXPONENT) - 1),
        i64::from(math::MAX_EXPONENT) - 1,
    );
    let base_factor = ranged(v, "pool.base_factor", p.base_factor, 0, i64::from(u16::MAX));
    let vfc = ranged(
        v,
        "pool.variable_fee_control",
        p.variable_fee_control,
        0,
        i64::from(u32::MAX),
    );
    let max_va = ranged(
        v,
        "pool.max_volatility_accumulator",
        p.max_volatility_accumulator,
        0,
        i64::from(u32::MAX),
    );
    let share = ranged(
        v,
        "pool.protocol_share_bps",
        p.protocol_share_bps,
        0,
        i64::from(MAX_PROTOCOL_SHARE_BPS),
    );
    let decimals = |field, d: Option<i64>, v: &mut FieldViolations| {
        d.and_then(|d| ranged(v, field, Some(d), 0, 30))
            .map(|d| d as u8)
    };
    let token_x_decimals = decimals("pool.token_x_decimals", p.token_x_decimals, v);
    let token_y_decimals = decimals("pool.token_y_decimals", p.token_y_decimals, v);
    let (Some(bin_step), Some(active), Some(base_factor), Some(vfc), Some(max_va), Some(share)) =
        (bin_step, active, base_factor, vfc, max_va, share)
    else {
        return None;
    };
    if math::bin_price(active as i32, bin_step as u16).is_err() {
        v.add(
            "pool.active_bin_id",
            "has no representable price at this bin_step",
        );
    }
    Some(Pool {
        pool_id: p.pool_id.clone(),
        token_x: p.token_x.clone(),
        token_y: p.token_y.clone(),
        bin_step: bin_step as u16,
        active_bin_id: active as i32,
        base_factor: base_factor as u16,
        variable_fee_control: vfc as u32,
        max_volatility_accumulator: max_va as u32,
        protocol_share_bps: share as u16,
        status: p.status.clone().unwrap_or_default(),
        token_x_decimals,
        token_y_decimals,
        created_at: None,
        last_updated: None,
        bins_gen: None,
    })
}

fn validate_bins(
    pool: Option<&Pool>,
    bins: &[BinInput],
    max_bins: usize,
    v: &mut FieldViolations,
) -> Vec<Bin> {
    if bins.len() > max_bins {
        // Not checked one by one: refusing them must cost little.
        v.add(
            "bins",
            format!(
                "{} bins given; at most {max_bins} in one write (quote.max_bins_per_write; a full snapshot, replace_bins, may hold up to quote.max_bins_per_pool)",
                bins.len()
            ),
        );
        return Vec::new();
    }
    let mut out = Vec::with_capacity(bins.len());
    let mut seen = std::collections::HashSet::new();
    for (i, b) in bins.iter().enumerate() {
        let field = |name: &str| format!("bins[{i}].{name}");
        unknown_fields(v, &format!("bins[{i}]"), &b.unknown, &[]);
        let amount = |a: &Option<Amount>| match a {
            Some(a) => parse_u64(&a.0),
            None => Err("is required (a non-negative integer string)".to_string()),
        };
        let x = amount(&b.x_amount)
            .map_err(|e| v.add(field("x_amount"), e))
            .ok();
        let y = amount(&b.y_amount)
            .map_err(|e| v.add(field("y_amount"), e))
            .ok();
        let Some(bin_id) = b.bin_id else {
            v.add(field("bin_id"), "is required");
            continue;
        };
        let Some(bin_id) = i32::try_from(bin_id)
            .ok()
            .filter(|id| id.unsigned_abs() < math::MAX_EXPONENT)
        else {
            v.add(
                field("bin_id"),
                format!("must be within ±{}", math::MAX_EXPONENT - 1),
            );
            continue;
        };
        if !seen.insert(bin_id) {
            v.add(field("bin_id"), format!("bin {bin_id} is listed twice"));
        }
        let price = b.price.clone().unwrap_or_default();
        if price.len() > MAX_PRICE_CHARS {
            v.add(
                field("price"),
                format!("must be at most {MAX_PRICE_CHARS} characters"),
            );
            continue;
        }
        if let Some(pool) = pool {
            match math::bin_price(bin_id, pool.bin_step) {
                Err(_) => v.add(
                    field("bin_id"),
                    "has no representable price at this bin_step",
                ),
                Ok(q64) if !price.is_empty() && !price_agrees(&price, q64, pool) => v.add(
                    field("price"),
                    format!(
                        "{price} disagrees with the price of bin {bin_id} at bin_step {}",
                        pool.bin_step
                    ),
                ),
                Ok(_) => {}
            }
        }
        if let (Some(x_amount), Some(y_amount)) = (x, y) {
            out.push(Bin {
                bin_id,
                x_amount,
                y_amount,
                price,
            });
        }
    }
    out
}

/// Every field of `unknown` but the `allowed` ones is a violation, named
/// `<at>.<field>`.
fn unknown_fields(
    v: &mut FieldViolations,
    at: &str,
    unknown: &std::collections::BTreeMap<String, serde_json::Value>,
    allowed: &[&str],
) {
    for name in unknown.keys().filter(|k| !allowed.contains(&k.as_str())) {
        v.add(
            format!("{at}.{}", crate::validate::cut(name, 64)),
            "unknown field",
        );
    }
}

/// A required integer in `min..=max`.
fn ranged(
    v: &mut FieldViolations,
    field: &str,
    value: Option<i64>,
    min: i64,
    max: i64,
) -> Option<i64> {
    match value {
        None => {
            v.add(field, "is required");
            None
        }
        Some(value) if (min..=max).contains(&value) => Some(value),
        Some(value) => {
            v.add(
                field,
                format!("must be between {min} and {max}, got {value}"),
            );
            None
        }
    }
}

/// `10^n` if it fits in U256.
fn pow10(n: u32) -> Option<U256> {
    (0..n).try_fold(U256::ONE, |acc, _| acc.checked_mul(U256::from(10u8)))
}

/// Parses a raw amount: digits only, u64 range.
pub fn parse_u64(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("is required (a non-negative integer string)".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a non-negative integer"));
    }
    text.parse::<u64>()
        .map_err(|_| format!("{text} exceeds the u64 range"))
}

/// True if a display `price` agrees with the Q64.64 price of its bin,
/// within [`PRICE_TOLERANCE_PPB`], either per raw unit or per whole token
/// (raw price scaled by 10^(decimals_x - decimals_y)) when decimals are known.
/// Compared in integers: the decimal's digits against the Q64.64 value.
pub fn price_agrees(price: &str, q64: u128, pool: &Pool) -> bool {
    let Some((mantissa, scale)) = parse_decimal(price) else {
        return false;
    };
    let mut candidates = vec![(U256::from(q64), 0i32)];
    if let (Some(dx), Some(dy)) = (pool.token_x_decimals, pool.token_y_decimals) {
        candidates.push((U256::from(q64), i32::from(dx) - i32::from(dy)));
    }
    candidates.into_iter().any(|(q, shift)| {
        // given = mantissa / 10^scale ; derived = q / 2^64 * 10^shift
        let lhs = U256::from(mantissa).checked_mul(U256::ONE << 64u32);
        // Every power checked: a wrapped 10^300 is 0 mod 2^256, and a
        // price of "0." and 300 zeros then "agreed" with every bin.
        let (lhs, rhs) = if shift >= 0 {
            (
                lhs,
                pow10(shift as u32)
                    .and_then(|p| q.checked_mul(p))
                    .and_then(|r| pow10(scale).and_then(|p| r.checked_mul(p))),
            )
        } else {
            (
                lhs.and_then(|l| pow10(shift.unsigned_abs()).and_then(|p| l.checked_mul(p))),
                pow10(scale).and_then(|p| q.checked_mul(p)),
            )
        };
        if mantissa == 0 || q == U256::ZERO {
            return false; // a price is positive
        }
        let (Some(lhs), Some(rhs)) = (lhs, rhs) else {
            return false;
        };
        let diff = if lhs > rhs { lhs - rhs } else { rhs - lhs };
        diff.checked_mul(U256::from(1_000_000_000u64))
            .is_some_and(|d| d <= rhs.saturating_mul(U256::from(PRICE_TOLERANCE_PPB)))
    })
}

/// Splits a plain decimal into digits and scale, keeping 24 significant
/// digits (more cannot matter at the tolerance used).
fn parse_decimal(text: &str) -> Option<(u128, u32)> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: String = format!("{int}{frac}");
    let trimmed = digits.trim_start_matches('0');
    let keep = trimmed.len().min(24);
    let dropped = trimmed.len() - keep;
    let mantissa: u128 = if keep == 0 {
        0
    } else {
        trimmed[..keep].parse().ok()?
    };
    // value = digits / 10^frac.len(); dropping `dropped` trailing digits
    // divides the mantissa by 10^dropped.
    let scale = frac.len() as i64 - dropped as i64;
    if scale < 0 {
        let m = mantissa.checked_mul(10u128.checked_pow((-scale) as u32)?)?;
        return Some((m, 0));
    }
    Some((mantissa, scale as u32))
}

mod u64_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = super::Amount::deserialize(d)?.0;
        super::parse_u64(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_file() -> PoolFile {
        serde_json::from_str(include_str!("../../tests/data/dlmm/pool_a.json"))
            .expect("pool_a.json")
    }

    #[test]
    fn pool_a_is_valid_and_its_prices_agree() {
        let file = pool_file();
        let snapshot = validate_snapshot(&file.pool, &file.bins, 100).expect("valid");
        assert_eq!(snapshot.bins.len(), 11);
        assert_eq!(snapshot.pool.protocol_share_bps, 500);
    }

    #[test]
    fn bad_data_is_refused_naming_each_field() {
        let mut file = pool_file();
        file.pool.bin_step = Some(0);
        file.pool.protocol_share_bps = Some(2501);
        let err = validate_snapshot(&file.pool, &file.bins, 100).expect_err("invalid");
        let fields: Vec<_> = err.0.iter().map(|v| v.field.as_str()).collect();
        assert!(fields.contains(&"pool.bin_step"), "{err}");
        assert!(fields.contains(&"pool.protocol_share_bps"), "{err}");

        let mut file = pool_file();
        file.bins[0].x_amount = Some(Amount("-5".into()));
        file.bins[1].y_amount = Some(Amount("1.5".into()));
        file.bins[2].y_amount = Some(Amount("18446744073709551616".into()));
        file.bins[3].price = Some("2.0".into());
        let err = validate_snapshot(&file.pool, &file.bins, 100).expect_err("invalid");
        let fields: Vec<_> = err.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "bins[0].x_amount",
                "bins[1].y_amount",
                "bins[2].y_amount",
                "bins[3].price"
            ],
            "{err}"
        );
    }

    #[test]
    fn display_prices_per_raw_unit_or_per_token() {
        let file = pool_file();
        let mut pool = validate_snapshot(&file.pool, &file.bins, 100)
            .expect("valid")
            .pool;
        let q = math::bin_price(-1, 25).expect("price");
        assert!(price_agrees(
            "0.9975062344139650872361022027057231298386",
            q,
            &pool
        ));
        assert!(
            price_agrees("0.997506234", q, &pool),
            "9 significant digits are enough"
        );
        assert!(!price_agrees("0.9975", q, &pool), "4 are not");
        assert!(!price_agrees("1e3", q, &pool));
        // A power of ten that wraps must not make 0 agree (issue #18).
        let zeros = format!("0.{}", "0".repeat(300));
        assert!(!price_agrees(&zeros, q, &pool));
        assert!(!price_agrees(&format!("0.{}1", "0".repeat(300)), q, &pool));
        pool.token_x_decimals = Some(8);
        pool.token_y_decimals = Some(6);
        assert!(
            price_agrees("99.75062344139650872", q, &pool),
            "per whole token"
        );
    }
}
