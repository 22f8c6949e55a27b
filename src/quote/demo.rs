//! The demo pools `openoes dev` loads: BTC/USDC, ETH/USDC and SOL/USDC with
//! Solana token decimals (BTC 8, ETH 8, SOL 9, USDC 6), near-market prices
//! and realistic depth, so `GetQuote` BTC -> ETH routes through USDC out of
//! the box.

use super::{
    math,
    model::{Bin, Pool, PoolSnapshot},
};

/// Bins on each side of the active bin.
const BINS_PER_SIDE: i32 = 30;

struct DemoPool {
    id: &'static str,
    base: (&'static str, u8),
    /// Price of one whole base token in USDC, as a fraction.
    usdc_price: (u128, u128),
    /// Raw base-token amount in each bin above the active bin.
    base_per_bin: u64,
    /// Raw USDC in each bin below the active bin.
    usdc_per_bin: u64,
}

const USDC_DECIMALS: u8 = 6;

const POOLS: [DemoPool; 3] = [
    DemoPool {
        id: "BTC-USDC",
        base: ("BTC", 8),
        usdc_price: (65_000, 1),
        base_per_bin: 4 * 100_000_000,
        usdc_per_bin: 250_000 * 1_000_000,
    },
    DemoPool {
        id: "ETH-USDC",
        base: ("ETH", 8),
        usdc_price: (3_500, 1),
        base_per_bin: 70 * 100_000_000,
        usdc_per_bin: 250_000 * 1_000_000,
    },
    DemoPool {
        id: "SOL-USDC",
        base: ("SOL", 9),
        usdc_price: (150, 1),
        base_per_bin: 650 * 1_000_000_000,
        usdc_per_bin: 100_000 * 1_000_000,
    },
];

/// The demo pools with their bins.
pub fn pools() -> Vec<PoolSnapshot> {
    POOLS.iter().map(snapshot).collect()
}

fn snapshot(demo: &DemoPool) -> PoolSnapshot {
    let bin_step = 10;
    // Raw price: USDC raw units per raw base unit, in Q64.64.
    let (num, den) = demo.usdc_price;
    let scale_up = 10u128.pow(u32::from(USDC_DECIMALS));
    let scale_down = 10u128.pow(u32::from(demo.base.1));
    let target = ((num * scale_up) << 64) / (den * scale_down);
    let active = nearest_bin(target, bin_step);
    let pool = Pool {
        pool_id: demo.id.into(),
        token_x: demo.base.0.into(),
        token_y: "USDC".into(),
        bin_step,
        active_bin_id: active,
        base_factor: 10_000,
        variable_fee_control: 40_000,
        max_volatility_accumulator: 350_000,
        protocol_share_bps: 500,
        status: "active".into(),
        token_x_decimals: Some(demo.base.1),
        token_y_decimals: Some(USDC_DECIMALS),
        created_at: None,
        last_updated: None,
        bins_gen: None,
    };
    let bins = (-BINS_PER_SIDE..=BINS_PER_SIDE)
        .map(|offset| {
            let (x, y) = match offset {
                0 => (demo.base_per_bin / 2, demo.usdc_per_bin / 2),
                o if o < 0 => (0, demo.usdc_per_bin),
                _ => (demo.base_per_bin, 0),
            };
            Bin {
                bin_id: active + offset,
                x_amount: x,
                y_amount: y,
                price: String::new(),
            }
        })
        .collect();
    PoolSnapshot { pool, bins }
}

/// The bin whose exact price is nearest `target` (Q64.64), by bisection
/// over the monotone price function.
fn nearest_bin(target: u128, bin_step: u16) -> i32 {
    let price = |id| math::bin_price(id, bin_step).unwrap_or(if id < 0 { 0 } else { u128::MAX });
    let (mut lo, mut hi) = (
        -(math::MAX_EXPONENT as i32) + 1,
        math::MAX_EXPONENT as i32 - 1,
    );
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if price(mid) <= target {
            lo = mid
        } else {
            hi = mid
        }
    }
    if target - price(lo).min(target) <= price(hi).saturating_sub(target) {
        lo
    } else {
        hi
    }
}

#[cfg(test)]
mod tests {
    use ethnum::U256;

    use super::*;

    #[test]
    fn demo_pools_sit_at_their_market_prices() {
        for (snapshot, market) in pools().iter().zip([65_000u128, 3_500, 150]) {
            let pool = &snapshot.pool;
            let q = math::bin_price(pool.active_bin_id, pool.bin_step).expect("price");
            // Per whole token: q / 2^64 * 10^dx / 10^dy, against the market
            // price, within 0.1%; all in integers.
            let dx = u32::from(pool.token_x_decimals.expect("decimals"));
            let dy = u32::from(pool.token_y_decimals.expect("decimals"));
            let ten = U256::from(10u8);
            let ours = U256::from(q) * ten.pow(dx);
            let theirs = (U256::from(market) * ten.pow(dy)) << 64u32;
            let diff = if ours > theirs {
                ours - theirs
            } else {
                theirs - ours
            };
            assert!(
                diff * 1000 <= theirs,
                "{} active bin off market",
                pool.pool_id
            );
            assert_eq!(snapshot.bins.len(), 61);
            assert!(snapshot.bins.iter().all(|b| !b.is_empty()));
        }
    }
}
