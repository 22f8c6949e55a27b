//! Differential tests of the quote engine against a straightforward
//! reference written here, from `shared/docs/dlmm-quote-spec.md` alone (it
//! shares no code with `src/quote/`): thousands of random pools, amounts
//! at the u64 edges, and random token graphs whose best route the reference
//! finds by brute force over every route.
//!
//! Seeded and reproducible: the seed is printed; `QUOTE_DIFF_SEED=<n>`
//! replays one, `QUOTE_DIFF_SCALE=<k>` runs k times as many cases.

use std::collections::HashMap;

use ethnum::U256;
use openoes::quote::{
    error::{QuoteError, StoreError},
    graph::RouteGraph,
    math::{self, BinReserve, MathError, PoolParams},
    model::Pool,
    search::{self, PoolSource, QuoteLimits, QuoteRequest, SwapMode},
    store::HopSnapshot,
};

// === the reference, from the spec ===

const ONE: u128 = 1 << 64;

/// `pow(base, id)`, the spec's algorithm, on U256.
fn ref_price(id: i32, bin_step: u16) -> Option<U256> {
    let one = U256::from(ONE);
    let base = one + (U256::from(bin_step) << 64u32) / 10_000u128;
    if id == 0 {
        return Some(one);
    }
    let mut invert = id < 0;
    let e = id.unsigned_abs();
    if e >= 0x80000 {
        return None;
    }
    let (mut sq, mut res) = (base, one);
    if sq >= res {
        sq = U256::from(u128::MAX) / sq;
        invert = !invert;
    }
    let mut bit = 1u32;
    while bit <= 0x40000 {
        if e & bit != 0 {
            res = (res * sq) >> 64u32;
        }
        sq = (sq * sq) >> 64u32;
        bit <<= 1;
    }
    if res == U256::ZERO {
        return None;
    }
    Some(if invert {
        U256::from(u128::MAX) / res
    } else {
        res
    })
}

fn ceil_div(a: U256, b: U256) -> U256 {
    (a + b - 1u128) / b
}

#[derive(Debug, Clone)]
struct RefPool {
    id: String,
    x: String,
    y: String,
    bin_step: u16,
    active: i32,
    base_factor: u16,
    vfc: u32,
    max_va: u32,
    share: u16,
    /// Every bin, any order, empty ones included.
    bins: Vec<(i32, u64, u64)>,
}

impl RefPool {
    fn rate(&self, bin_id: i32) -> U256 {
        let step = U256::from(self.bin_step);
        let va =
            (U256::from(self.active.abs_diff(bin_id)) * 10_000u128).min(U256::from(self.max_va));
        let base = U256::from(self.base_factor) * step * 10u128;
        let variable = if self.vfc == 0 {
            U256::ZERO
        } else {
            let s = va * step;
            ceil_div(U256::from(self.vfc) * s * s, U256::from(100_000_000_000u64))
        };
        (base + variable).min(U256::from(100_000_000u32))
    }

    /// Bins in walk order for the direction.
    fn walk(&self, swap_for_y: bool) -> Vec<(i32, u64, u64)> {
        let mut bins: Vec<_> = self
            .bins
            .iter()
            .copied()
            .filter(|b| {
                if swap_for_y {
                    b.0 <= self.active
                } else {
                    b.0 >= self.active
                }
            })
            .collect();
        bins.sort_by_key(|b| b.0);
        if swap_for_y {
            bins.reverse();
        }
        bins
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefErr {
    Insufficient,
    TooLarge,
}

/// A hop's result: (input, output, fee, protocol fee, bins crossed).
type RefHop = (u64, u64, u64, u64, Vec<i32>);

const PRECISION: u64 = 1_000_000_000;

/// Exact-in through one pool; `Ok((hop, exhausted))`.
fn ref_in(p: &RefPool, amount: u64, swap_for_y: bool) -> Result<(RefHop, bool), RefErr> {
    let prec = U256::from(PRECISION);
    let mut left = U256::from(amount);
    let (mut used_total, mut out_total, mut fee_total, mut proto_total) =
        (U256::ZERO, U256::ZERO, U256::ZERO, U256::ZERO);
    let mut crossed = Vec::new();
    for (id, x, y) in p.walk(swap_for_y) {
        if left == U256::ZERO {
            break;
        }
        let reserve = U256::from(if swap_for_y { y } else { x });
        if reserve == U256::ZERO {
            continue;
        }
        let price = ref_price(id, p.bin_step).expect("priceable");
        let r = p.rate(id);
        let fee = ceil_div(left * r, prec);
        let ex = left - fee;
        let max_in = if swap_for_y {
            ceil_div(reserve << 64u32, price)
        } else {
            ceil_div(reserve * price, U256::from(ONE))
        };
        let (used, out, fee) = if ex >= max_in {
            let fee = ceil_div(max_in * r, prec - r);
            (max_in + fee, reserve, fee)
        } else {
            let out = if swap_for_y {
                (ex * price) >> 64u32
            } else {
                (ex << 64u32) / price
            };
            (left, out, fee)
        };
        left -= used;
        used_total += used;
        out_total += out;
        fee_total += fee;
        proto_total += fee * U256::from(p.share) / 10_000u128;
        crossed.push(id);
        if out_total > U256::from(u64::MAX) {
            return Err(RefErr::TooLarge);
        }
    }
    Ok((
        (
            used_total.as_u64(),
            out_total.as_u64(),
            fee_total.as_u64(),
            proto_total.as_u64(),
            crossed,
        ),
        left > U256::ZERO,
    ))
}

/// Exact-out through one pool.
fn ref_out(p: &RefPool, amount: u64, swap_for_y: bool) -> Result<RefHop, RefErr> {
    let prec = U256::from(PRECISION);
    let mut want = U256::from(amount);
    let (mut total_in, mut fee_total, mut proto_total) = (U256::ZERO, U256::ZERO, U256::ZERO);
    let mut crossed = Vec::new();
    for (id, x, y) in p.walk(swap_for_y) {
        if want == U256::ZERO {
            break;
        }
        let reserve = U256::from(if swap_for_y { y } else { x });
        if reserve == U256::ZERO {
            continue;
        }
        let price = ref_price(id, p.bin_step).expect("priceable");
        let r = p.rate(id);
        let take = want.min(reserve);
        let in_ex = if swap_for_y {
            ceil_div(take << 64u32, price)
        } else {
            ceil_div(take * price, U256::from(ONE))
        };
        let fee = ceil_div(in_ex * r, prec - r);
        total_in += in_ex + fee;
        fee_total += fee;
        proto_total += fee * U256::from(p.share) / 10_000u128;
        want -= take;
        crossed.push(id);
        if total_in > U256::from(u64::MAX) {
            return Err(RefErr::TooLarge);
        }
    }
    if want > U256::ZERO {
        return Err(RefErr::Insufficient);
    }
    Ok((
        total_in.as_u64(),
        amount,
        fee_total.as_u64(),
        proto_total.as_u64(),
        crossed,
    ))
}

/// The reference's answer: the route (pool ids, hops) or why none.
#[derive(Debug, PartialEq, Eq)]
enum RefAnswer {
    Route {
        partial: bool,
        pools: Vec<String>,
        hops: Vec<RefHop>,
    },
    NoRoute,
    Insufficient,
    TooSmall,
    TooLarge,
}

/// Brute force: every sequence of distinct pools from token_in to
/// token_out of at most max_hops, priced, the best kept by the spec's
/// order (full before partial, most output / least input, fewest hops,
/// then pool ids).
fn ref_best(pools: &[RefPool], r: &QuoteRequest) -> RefAnswer {
    let mut routes: Vec<Vec<(usize, bool)>> = Vec::new();
    fn extend(
        pools: &[RefPool],
        at: &str,
        to: &str,
        left: u32,
        path: &mut Vec<(usize, bool)>,
        out: &mut Vec<Vec<(usize, bool)>>,
    ) {
        if left == 0 {
            return;
        }
        for (i, p) in pools.iter().enumerate() {
            if path.iter().any(|(j, _)| *j == i) {
                continue;
            }
            let (next, swap_for_y) = if p.x == at {
                (&p.y, true)
            } else if p.y == at {
                (&p.x, false)
            } else {
                continue;
            };
            path.push((i, swap_for_y));
            if next == to {
                out.push(path.clone());
            }
            extend(pools, next, to, left - 1, path, out);
            path.pop();
        }
    }
    extend(
        pools,
        &r.token_in,
        &r.token_out,
        r.max_hops,
        &mut Vec::new(),
        &mut routes,
    );
    if routes.is_empty() {
        return RefAnswer::NoRoute;
    }
    let (mut overflow, mut insufficient, mut zero) = (false, false, false);
    let mut best: Option<(bool, Vec<String>, Vec<RefHop>)> = None;
    for route in &routes {
        let priced = match r.mode {
            SwapMode::ExactIn => {
                let mut amount = r.amount;
                let mut hops = Vec::new();
                let mut partial = false;
                let mut failed = None;
                for (k, (i, dir)) in route.iter().enumerate() {
                    match ref_in(&pools[*i], amount, *dir) {
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                        Ok((hop, exhausted)) => {
                            if exhausted {
                                if r.allow_partial_fill && k == 0 && hop.0 > 0 {
                                    partial = true;
                                } else {
                                    failed = Some(RefErr::Insufficient);
                                    break;
                                }
                            }
                            amount = hop.1;
                            hops.push(hop);
                            if amount == 0 {
                                break;
                            }
                        }
                    }
                }
                match failed {
                    Some(RefErr::TooLarge) => {
                        overflow = true;
                        None
                    }
                    Some(RefErr::Insufficient) => {
                        insufficient = true;
                        None
                    }
                    None if amount == 0 => {
                        zero = true;
                        None
                    }
                    None => Some((partial, hops)),
                }
            }
            SwapMode::ExactOut => {
                let mut want = r.amount;
                let mut hops = Vec::new();
                let mut failed = None;
                for (i, dir) in route.iter().rev() {
                    match ref_out(&pools[*i], want, *dir) {
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                        Ok(hop) => {
                            want = hop.0;
                            hops.push(hop);
                        }
                    }
                }
                hops.reverse();
                match failed {
                    Some(RefErr::TooLarge) => {
                        overflow = true;
                        None
                    }
                    Some(RefErr::Insufficient) => {
                        insufficient = true;
                        None
                    }
                    None => Some((false, hops)),
                }
            }
        };
        let Some((partial, hops)) = priced else {
            continue;
        };
        let ids: Vec<String> = route.iter().map(|(i, _)| pools[*i].id.clone()).collect();
        let key = |partial: bool, hops: &[RefHop], ids: &[String]| {
            let value = match r.mode {
                SwapMode::ExactIn => u64::MAX - hops.last().map_or(0, |h| h.1),
                SwapMode::ExactOut => hops.first().map_or(0, |h| h.0),
            };
            (partial, value, hops.len(), ids.to_vec())
        };
        if best
            .as_ref()
            .is_none_or(|(bp, bi, bh)| key(partial, &hops, &ids) < key(*bp, bh, bi))
        {
            best = Some((partial, ids, hops));
        }
    }
    if overflow && r.mode == SwapMode::ExactIn {
        return RefAnswer::TooLarge;
    }
    match best {
        Some((partial, pools, hops)) => RefAnswer::Route {
            partial,
            pools,
            hops,
        },
        None if overflow => RefAnswer::TooLarge,
        None if zero => RefAnswer::TooSmall,
        None if insufficient => RefAnswer::Insufficient,
        None => RefAnswer::Insufficient,
    }
}

// === the engine, over the same pools in memory ===

struct Memory(HashMap<String, RefPool>);

impl Memory {
    fn pool(p: &RefPool) -> Pool {
        Pool {
            pool_id: p.id.clone(),
            token_x: p.x.clone(),
            token_y: p.y.clone(),
            bin_step: p.bin_step,
            active_bin_id: p.active,
            base_factor: p.base_factor,
            variable_fee_control: p.vfc,
            max_volatility_accumulator: p.max_va,
            protocol_share_bps: p.share,
            status: String::new(),
            token_x_decimals: None,
            token_y_decimals: None,
            created_at: None,
            last_updated: None,
            bins_gen: None,
        }
    }
}

impl PoolSource for Memory {
    async fn read_hop(
        &self,
        pool_id: &str,
        swap_for_y: bool,
        limit: usize,
    ) -> Result<(u64, Option<HopSnapshot>), StoreError> {
        let Some(p) = self.0.get(pool_id) else {
            return Ok((1, None));
        };
        // What the store keeps: non-empty bins only, in walk order.
        let bins = p
            .walk(swap_for_y)
            .into_iter()
            .filter(|(_, x, y)| *x != 0 || *y != 0)
            .take(limit)
            .map(|(bin_id, x, y)| BinReserve { bin_id, x, y })
            .collect();
        Ok((
            1,
            Some(HopSnapshot {
                version: 1,
                pool: Self::pool(p),
                bins,
            }),
        ))
    }
}

/// What the engine answered, in the reference's terms.
fn engine_answer(result: Result<search::Quote, QuoteError>) -> RefAnswer {
    match result {
        Ok(q) => RefAnswer::Route {
            partial: q.partial_fill,
            pools: q.hops.iter().map(|h| h.pool_id.clone()).collect(),
            hops: q
                .hops
                .iter()
                .map(|h| {
                    (
                        h.fill.amount_in,
                        h.fill.amount_out,
                        h.fill.total_fee,
                        h.fill.protocol_fee,
                        h.fill.bins.iter().map(|b| b.bin_id).collect(),
                    )
                })
                .collect(),
        },
        Err(QuoteError::NoRoute { .. }) => RefAnswer::NoRoute,
        Err(QuoteError::InsufficientLiquidity(_)) => RefAnswer::Insufficient,
        Err(QuoteError::AmountTooSmall) => RefAnswer::TooSmall,
        Err(QuoteError::Math(MathError::InputOverflow | MathError::OutputOverflow)) => {
            RefAnswer::TooLarge
        }
        Err(e) => panic!("unexpected engine error: {e:?}"),
    }
}

// === random cases ===

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An amount, often at an edge: 0, 1, u64::MAX, powers of two, or
    /// anything in between.
    fn amount(&mut self, scale: u64) -> u64 {
        match self.below(10) {
            0 => u64::MAX,
            1 => u64::MAX - self.below(1000),
            2 => 1 << self.below(64),
            3 => self.below(4),
            4 => self.next(),
            _ => self.below(scale.max(1)) + 1,
        }
    }
}

fn seed() -> u64 {
    let seed = std::env::var("QUOTE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x18_2026);
    eprintln!("QUOTE_DIFF_SEED={seed}");
    seed
}

fn scale() -> usize {
    std::env::var("QUOTE_DIFF_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn random_pool(rng: &mut Rng, id: String, x: String, y: String) -> RefPool {
    let bin_step = rng.pick(&[1u16, 2, 5, 10, 25, 50, 100, 200]);
    let active = rng.below(401) as i32 - 200;
    let depth = rng.pick(&[1_000u64, 1_000_000, 1_000_000_000_000, u64::MAX / 4]);
    let n = rng.below(12) as i32 + 1;
    let mut bins = Vec::new();
    for offset in -n..=n {
        if rng.below(5) == 0 {
            continue; // a gap
        }
        let mut amount = || match rng.below(8) {
            0 => u64::MAX,
            1 => 0,
            2 => 1,
            _ => rng.below(depth) + 1,
        };
        let (bx, by) = match offset {
            0 => (amount(), amount()),
            o if o < 0 => (0, amount()),
            _ => (amount(), 0),
        };
        bins.push((active + offset, bx, by));
    }
    RefPool {
        id,
        x,
        y,
        bin_step,
        active,
        base_factor: rng.pick(&[0u16, 100, 5_000, 10_000, 20_000]),
        vfc: rng.pick(&[0u32, 7_500, 40_000, 2_000_000]),
        max_va: rng.pick(&[0u32, 100_000, 350_000]),
        share: rng.below(2501) as u16,
        bins,
    }
}

const UNBOUNDED: QuoteLimits = QuoteLimits {
    max_pool_reads: usize::MAX,
    max_swaps: usize::MAX,
    max_bins: usize::MAX,
    max_bins_per_hop: 4096,
};

#[test]
fn single_pool_swaps_equal_the_reference() {
    let mut rng = Rng(seed());
    let cases = 3_000 * scale();
    let (mut filled, mut overflowed) = (0, 0);
    for case in 0..cases {
        let p = random_pool(&mut rng, "P".into(), "X".into(), "Y".into());
        let params = PoolParams {
            bin_step: p.bin_step,
            active_bin_id: p.active,
            base_factor: p.base_factor,
            variable_fee_control: p.vfc,
            max_volatility_accumulator: p.max_va,
            protocol_share_bps: p.share,
        };
        for swap_for_y in [true, false] {
            let bins: Vec<BinReserve> = p
                .walk(swap_for_y)
                .into_iter()
                .map(|(bin_id, x, y)| BinReserve { bin_id, x, y })
                .collect();
            let amount = rng.amount(2_000_000_000_000);
            let ctx = || format!("case {case}: {p:?} swap_for_y {swap_for_y} amount {amount}");
            let got = math::swap_exact_in(&params, &bins, amount, swap_for_y);
            match (ref_in(&p, amount, swap_for_y), got) {
                (Ok((want, exhausted)), Ok(fill)) => {
                    let crossed: Vec<i32> = fill.bins.iter().map(|b| b.bin_id).collect();
                    assert_eq!(
                        (
                            fill.amount_in,
                            fill.amount_out,
                            fill.total_fee,
                            fill.protocol_fee,
                            crossed
                        ),
                        want,
                        "{}",
                        ctx()
                    );
                    assert_eq!(fill.exhausted, exhausted, "{}", ctx());
                    filled += 1;
                }
                (Err(RefErr::TooLarge), Err(MathError::OutputOverflow)) => overflowed += 1,
                (want, got) => panic!("{}: reference {want:?}, engine {got:?}", ctx()),
            }
            let amount = rng.amount(2_000_000_000_000).max(1);
            let got = math::swap_exact_out(&params, &bins, amount, swap_for_y);
            match (ref_out(&p, amount, swap_for_y), got) {
                (Ok(want), Ok(fill)) if !fill.exhausted => {
                    let crossed: Vec<i32> = fill.bins.iter().map(|b| b.bin_id).collect();
                    assert_eq!(
                        (
                            fill.amount_in,
                            fill.amount_out,
                            fill.total_fee,
                            fill.protocol_fee,
                            crossed
                        ),
                        want,
                        "{}",
                        ctx()
                    );
                }
                (Err(RefErr::Insufficient), Ok(fill)) if fill.exhausted => {}
                (Err(RefErr::TooLarge), Err(MathError::InputOverflow)) => overflowed += 1,
                (want, got) => panic!("{} (exact out): reference {want:?}, engine {got:?}", ctx()),
            }
        }
    }
    eprintln!("{cases} pools: {filled} exact-in fills compared, {overflowed} beyond u64");
    assert!(
        filled > cases / 2 && overflowed > 10,
        "the cases reach both sides"
    );
}

#[tokio::test]
async fn the_best_route_on_random_graphs_equals_a_brute_force_search() {
    let mut rng = Rng(seed() ^ 0xA5A5);
    let graphs = 400 * scale();
    let mut answers: HashMap<&'static str, usize> = HashMap::new();
    for g in 0..graphs {
        let tokens: Vec<String> = (0..5).map(|i| format!("T{i}")).collect();
        let mut pools = Vec::new();
        for i in 0..rng.below(7) + 2 {
            let a = rng.below(5) as usize;
            let b = (a + 1 + rng.below(4) as usize) % 5;
            pools.push(random_pool(
                &mut rng,
                format!("p{i}"),
                tokens[a].clone(),
                tokens[b].clone(),
            ));
        }
        let graph = RouteGraph::build(1, &pools.iter().map(Memory::pool).collect::<Vec<_>>());
        let memory = Memory(pools.iter().map(|p| (p.id.clone(), p.clone())).collect());
        for _ in 0..4 {
            let from = rng.below(5) as usize;
            let to = (from + 1 + rng.below(4) as usize) % 5;
            let mode = if rng.below(2) == 0 {
                SwapMode::ExactIn
            } else {
                SwapMode::ExactOut
            };
            let request = QuoteRequest {
                token_in: tokens[from].clone(),
                token_out: tokens[to].clone(),
                amount: rng.amount(5_000_000_000).max(1),
                mode,
                slippage_bps: 0,
                max_hops: rng.below(4) as u32 + 1,
                allow_partial_fill: mode == SwapMode::ExactIn && rng.below(3) == 0,
            };
            let known = |t: &str| pools.iter().any(|p| p.x == t || p.y == t);
            if !known(&request.token_in) || !known(&request.token_out) {
                continue; // UNKNOWN_TOKEN: nothing to compare
            }
            let want = ref_best(&pools, &request);
            let outcome = search::search(&graph, &memory, &request, UNBOUNDED).await;
            assert!(outcome.broken_pools.is_empty());
            let got = engine_answer(outcome.result);
            assert_eq!(got, want, "graph {g}: {request:?}\npools {pools:#?}");
            *answers
                .entry(match want {
                    RefAnswer::Route { ref pools, .. } if pools.len() > 1 => "multi-hop route",
                    RefAnswer::Route { .. } => "one-pool route",
                    RefAnswer::NoRoute => "no route",
                    RefAnswer::Insufficient => "insufficient",
                    RefAnswer::TooSmall => "too small",
                    RefAnswer::TooLarge => "too large",
                })
                .or_default() += 1;
        }
    }
    eprintln!("{graphs} graphs: {answers:?}");
    assert!(
        answers.get("multi-hop route").copied().unwrap_or(0) > graphs / 4,
        "multi-hop routes are exercised: {answers:?}"
    );
}

#[tokio::test]
async fn many_routes_with_parallel_pools_still_find_the_best() {
    // 5 tokens, 8 pools, every pair reachable: at max_hops 4 there are
    // well over 100 candidate routes, and the best one must win however
    // the pools are named.
    let mut rng = Rng(seed() ^ 0x5151);
    let tokens: Vec<String> = (0..5).map(|i| format!("T{i}")).collect();
    let pairs = [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 4),
        (0, 2),
        (1, 3),
        (2, 4),
        (0, 4),
    ];
    for round in 0..50 * scale() {
        let pools: Vec<RefPool> = pairs
            .iter()
            .enumerate()
            .map(|(i, (a, b))| {
                let mut p = random_pool(
                    &mut rng,
                    format!("q{i}"),
                    tokens[*a].clone(),
                    tokens[*b].clone(),
                );
                // Deep enough that most routes fill.
                for bin in &mut p.bins {
                    bin.1 = bin.1.max(1_000_000_000);
                    bin.2 = bin.2.max(1_000_000_000);
                }
                p
            })
            .collect();
        let graph = RouteGraph::build(1, &pools.iter().map(Memory::pool).collect::<Vec<_>>());
        let memory = Memory(pools.iter().map(|p| (p.id.clone(), p.clone())).collect());
        let request = QuoteRequest {
            token_in: "T0".into(),
            token_out: "T4".into(),
            amount: 1_000_000 + rng.below(1_000_000),
            mode: SwapMode::ExactIn,
            slippage_bps: 0,
            max_hops: 4,
            allow_partial_fill: false,
        };
        let want = ref_best(&pools, &request);
        let outcome = search::search(&graph, &memory, &request, QuoteLimits::default()).await;
        let got = engine_answer(outcome.result);
        assert_eq!(got, want, "round {round}");
    }
}

#[tokio::test]
async fn a_dense_graph_is_searched_within_the_bounds_and_says_so() {
    // A complete graph of 12 tokens, two pools per pair (132 pools): at 4
    // hops, millions of routes.
    let mut rng = Rng(seed() ^ 0xD0D0);
    let tokens: Vec<String> = (0..12).map(|i| format!("K{i:02}")).collect();
    let mut pools = Vec::new();
    for (i, a) in tokens.iter().enumerate() {
        for b in &tokens[i + 1..] {
            for k in 0..2 {
                let mut p = random_pool(&mut rng, format!("{a}-{b}-{k}"), a.clone(), b.clone());
                for bin in &mut p.bins {
                    bin.1 = bin.1.max(1_000_000_000);
                    bin.2 = bin.2.max(1_000_000_000);
                }
                pools.push(p);
            }
        }
    }
    pools.push(random_pool(&mut rng, "far".into(), "T".into(), "U".into()));
    let graph = RouteGraph::build(1, &pools.iter().map(Memory::pool).collect::<Vec<_>>());
    let memory = Memory(pools.iter().map(|p| (p.id.clone(), p.clone())).collect());
    let limits = QuoteLimits {
        max_swaps: 3_000,
        ..QuoteLimits::default()
    };
    let mut request = QuoteRequest {
        token_in: "K00".into(),
        token_out: "K11".into(),
        amount: 1_000_000,
        mode: SwapMode::ExactIn,
        slippage_bps: 0,
        max_hops: 4,
        allow_partial_fill: false,
    };
    let outcome = search::search(&graph, &memory, &request, limits).await;
    let q = outcome.result.expect("a quote");
    assert_eq!(q.search_limit, Some(search::limit::SWAPS));
    // Every direct and 2-pool route was priced before the bound: the quote
    // is at least as good as the best of those.
    let mut short = request.clone();
    short.max_hops = 2;
    let RefAnswer::Route { hops, .. } = ref_best(&pools, &short) else {
        panic!("short routes exist");
    };
    assert!(q.amount_out >= hops.last().expect("hop").1);

    // An unreachable token answers NO_ROUTE at once: dead ends are pruned
    // by distance before anything is priced.
    request.token_out = "T".into();
    let outcome = search::search(&graph, &memory, &request, limits).await;
    assert!(
        matches!(outcome.result, Err(QuoteError::NoRoute { .. })),
        "{:?}",
        outcome.result.err()
    );
    assert!(outcome.considered.pools.is_empty(), "nothing was read");
}
