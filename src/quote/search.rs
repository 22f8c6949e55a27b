//! The route search: the best route among every route of at most
//! `max_hops` pools (no pool twice), priced exactly, within bounded work.
//!
//! Candidates are every sequence of distinct pools that chains `token_in`
//! to `token_out` (the spec's definition; a route may pass through any
//! token, the target included). The search prices them hop by hop, sharing
//! prefixes, by iterative deepening: every 1-pool route, then every 2-pool
//! route, and so on, so a shorter route is never crowded out by longer ones.
//! At each step it prices every pool that can still lead to the target
//! within the hops left (a breadth-first distance from the target prunes
//! dead ends before any read) and follows the best priced prefixes first.
//! Pools whose swap runs dry are dropped at that step, so junk pools holding
//! 1 raw unit cost one read each and hide nothing.
//!
//! Nothing depends on pool names but the final tie-break. When every
//! candidate fits in the work bounds ([`QuoteLimits`]) the answer is the
//! exact best; when a bound stops the search the quote says so
//! (`search_limit`) and is the best of the candidates priced, which are the
//! best-looking prefixes at every length, never the first by name.
//!
//! Pricing is the pure math of [`super::math`] over bins from a
//! [`PoolSource`]; each (pool, direction) is read at most a few times per
//! quote (a first page, then longer pages while a walk needs them) and the
//! reads are one consistent snapshot each.

use std::{
    cmp::Ordering,
    collections::{HashMap, HashSet},
};

use ethnum::U256;

use super::{
    error::{QuoteError, StoreError},
    graph::{Edge, RouteGraph},
    math::{self, HopFill, MathError, PoolParams},
    store::HopSnapshot,
};
use crate::config::QuoteConfig;

/// Most pools on a route a caller may ask for.
pub const MAX_HOPS_LIMIT: u32 = 4;
/// Pools on a route when the caller does not say.
pub const DEFAULT_MAX_HOPS: u32 = 3;
/// Bins read per hop at first: most swaps cross few bins, and every bin read
/// costs Redis time and parsing; a longer walk reads 4x more each time.
const FIRST_BIN_PAGE: usize = 16;
/// Most tokens a watcher remembers as "near" its route (to know which new
/// pools could open a better one); a larger neighbourhood means any new
/// pool wakes it. Bounds a watcher's memory.
pub const MAX_WATCH_TOKENS: usize = 1024;

/// Where the bins of a pool come from: the store, or an in-memory set of
/// pools in tests and differential checks.
pub trait PoolSource: Sync {
    /// The pool's configuration and up to `limit` non-empty bins from the
    /// active bin in the swap's direction, with the pool-set version seen;
    /// `None` if the pool does not exist.
    fn read_hop(
        &self,
        pool_id: &str,
        swap_for_y: bool,
        limit: usize,
    ) -> impl Future<Output = Result<(u64, Option<HopSnapshot>), StoreError>> + Send;
}

/// Bounds of one quote's work. Each, when reached, stops the search; the
/// quote then names it in `search_limit` (or, if nothing was priced,
/// fails with QUOTE_WORK_LIMIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteLimits {
    /// Reads of a pool's bins (Redis round trips).
    pub max_pool_reads: usize,
    /// Swaps priced (one per hop of every route prefix).
    pub max_swaps: usize,
    /// Bins read from Redis plus bins walked by the swap math.
    pub max_bins: usize,
    /// Most bins one hop may walk; a swap needing more is refused as
    /// insufficient liquidity at that pool.
    pub max_bins_per_hop: usize,
}

impl From<&QuoteConfig> for QuoteLimits {
    fn from(c: &QuoteConfig) -> Self {
        Self {
            max_pool_reads: c.max_pool_reads_per_quote,
            max_swaps: c.max_swaps_per_quote,
            max_bins: c.max_bins_per_quote,
            max_bins_per_hop: c.max_bins_per_hop,
        }
    }
}

impl Default for QuoteLimits {
    fn default() -> Self {
        Self::from(&QuoteConfig::default())
    }
}

/// Which side of the swap is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapMode {
    /// The input amount is fixed.
    ExactIn,
    /// The output amount is fixed.
    ExactOut,
}

/// A validated quote request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteRequest {
    /// Token sold.
    pub token_in: String,
    /// Token bought.
    pub token_out: String,
    /// Input (exact-in) or output (exact-out), raw units.
    pub amount: u64,
    /// Exact-in or exact-out.
    pub mode: SwapMode,
    /// Slippage tolerance, basis points.
    pub slippage_bps: u32,
    /// Most pools on a route.
    pub max_hops: u32,
    /// Exact-in: fill what the first pool can instead of failing.
    pub allow_partial_fill: bool,
}

/// One hop of a priced route.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The pool.
    pub pool_id: String,
    /// Token sold into it.
    pub token_in: String,
    /// Token bought from it.
    pub token_out: String,
    /// X->Y.
    pub swap_for_y: bool,
    /// The exact fill.
    pub fill: HopFill,
    /// The pool's parameters when read.
    pub params: PoolParams,
}

/// A priced route.
#[derive(Debug, Clone)]
pub struct Quote {
    /// The request it answers.
    pub request: QuoteRequest,
    /// Input consumed.
    pub amount_in: u64,
    /// Output received.
    pub amount_out: u64,
    /// Exact-in: least output at the slippage tolerance.
    pub min_amount_out: Option<u64>,
    /// Exact-out: most input at the slippage tolerance.
    pub max_amount_in: Option<u64>,
    /// Price impact, percent, decimal string.
    pub price_impact: String,
    /// True if only part of the amount could be filled.
    pub partial_fill: bool,
    /// The hops, in order.
    pub hops: Vec<Hop>,
    /// The work bound that stopped the search, if one did (the quote is
    /// then the best of the routes priced).
    pub search_limit: Option<&'static str>,
}

/// What a quote looked at: a watcher recomputes when one of these changes.
#[derive(Debug, Clone, Default)]
pub struct Considered {
    /// Pools whose state was read.
    pub pools: HashSet<String>,
    /// Tokens near the route (within max_hops - 1 pools of either end): a
    /// new pool touching one may open a better route. `None`: too many to
    /// keep, any new pool may matter.
    pub tokens: Option<HashSet<String>>,
}

/// Names of the bounds, as the quote and its errors say them.
pub mod limit {
    /// `quote.max_pool_reads_per_quote`.
    pub const POOL_READS: &str = "quote.max_pool_reads_per_quote";
    /// `quote.max_swaps_per_quote`.
    pub const SWAPS: &str = "quote.max_swaps_per_quote";
    /// `quote.max_bins_per_quote`.
    pub const BINS: &str = "quote.max_bins_per_quote";
}

/// What the search met besides priced routes, to say why there is none.
#[derive(Debug, Default)]
struct Seen {
    /// An amount beyond u64 (exact-in output, exact-out input).
    overflow: bool,
    /// A pool ran dry.
    insufficient: bool,
    /// A route gave 0.
    zero: bool,
    /// A pool's data could not be priced (corrupt, unpriceable bin).
    broken: Option<QuoteError>,
    /// Some pool could be on a route (the tokens are joined within
    /// max_hops).
    candidates: bool,
}

/// A complete route priced, hops in swap order.
struct Candidate {
    hops: Vec<Hop>,
    partial: bool,
}

/// The outcome of one search.
pub struct Outcome {
    /// The best quote, or why there is none.
    pub result: Result<Quote, QuoteError>,
    /// What it looked at.
    pub considered: Considered,
    /// True if a read saw another pool-set version than the graph's.
    pub stale: bool,
    /// Pools skipped because their data could not be priced.
    pub broken_pools: Vec<String>,
}

/// Bins read so far in one quote, per (pool, direction), with the work
/// counters.
struct Reads<'s, S> {
    source: &'s S,
    snapshots: HashMap<(String, bool), (HopSnapshot, bool)>,
    graph_version: u64,
    stale: bool,
    reads: usize,
    bins: usize,
    swaps: usize,
    limits: QuoteLimits,
    /// Hops priced, by (pool, direction, amount, exact-in).
    memo: HashMap<(String, bool, u64, bool), (PoolParams, HopFill)>,
}

/// A hop priced, or why not.
enum Priced {
    Fill(PoolParams, HopFill),
    /// The pool is gone (removed since the graph was built).
    Gone,
}

impl<S: PoolSource> Reads<'_, S> {
    /// The bound reached, if any.
    fn limit_hit(&self) -> Option<&'static str> {
        if self.swaps >= self.limits.max_swaps {
            Some(limit::SWAPS)
        } else if self.reads >= self.limits.max_pool_reads {
            Some(limit::POOL_READS)
        } else if self.bins >= self.limits.max_bins {
            Some(limit::BINS)
        } else {
            None
        }
    }

    /// Prices one hop of `amount` (exact-in: sold; exact-out: wanted) over
    /// the pool's bins, reading a longer page while the walk runs out of
    /// bins and more exist. The same hop of the same amount is priced once
    /// per quote (iterative deepening meets each prefix again).
    async fn price(
        &mut self,
        pool_id: &str,
        swap_for_y: bool,
        amount: u64,
        exact_in: bool,
    ) -> Result<Priced, QuoteError> {
        let memo_key = (pool_id.to_string(), swap_for_y, amount, exact_in);
        if let Some((params, fill)) = self.memo.get(&memo_key) {
            return Ok(Priced::Fill(*params, fill.clone()));
        }
        let walk = |p: &PoolParams, bins: &[math::BinReserve]| {
            if exact_in {
                math::swap_exact_in(p, bins, amount, swap_for_y)
            } else {
                math::swap_exact_out(p, bins, amount, swap_for_y)
            }
        };
        let key = (pool_id.to_string(), swap_for_y);
        let mut limit = FIRST_BIN_PAGE.min(self.limits.max_bins_per_hop);
        self.swaps += 1;
        loop {
            if let Some((snapshot, complete)) = self.snapshots.get(&key) {
                let params = snapshot.pool.params();
                let fill = walk(&params, &snapshot.bins)?;
                self.bins += fill.bins.len();
                let longest = snapshot.bins.len() >= self.limits.max_bins_per_hop;
                // Without budget for a longer page, it is priced as far as
                // read (and so runs dry here).
                if !fill.exhausted || *complete || longest || self.limit_hit().is_some() {
                    self.memo.insert(memo_key, (params, fill.clone()));
                    return Ok(Priced::Fill(params, fill));
                }
                limit = (snapshot.bins.len() * 4).min(self.limits.max_bins_per_hop);
            }
            self.reads += 1;
            let (version, snapshot) = self.source.read_hop(pool_id, swap_for_y, limit).await?;
            self.stale |= version != self.graph_version;
            let Some(snapshot) = snapshot else {
                return Ok(Priced::Gone);
            };
            self.bins += snapshot.bins.len();
            let complete = snapshot.bins.len() < limit;
            self.snapshots.insert(key.clone(), (snapshot, complete));
        }
    }
}

/// A priced hop leading on from a prefix.
struct Child {
    edge: Edge,
    params: PoolParams,
    fill: HopFill,
    /// Exact-in: the hop's output; exact-out: its input.
    amount: u64,
    partial: bool,
}

/// A prefix being extended (exact-in: from token_in forwards; exact-out:
/// from token_out backwards).
struct Frame {
    /// The token reached.
    token: String,
    /// Hops so far, in search order.
    hops: Vec<Hop>,
    partial: bool,
    children: std::vec::IntoIter<Child>,
}

/// Finds and prices the best route for `request` over `graph`.
pub async fn search<S: PoolSource>(
    graph: &RouteGraph,
    source: &S,
    request: &QuoteRequest,
    limits: QuoteLimits,
) -> Outcome {
    let mut reads = Reads {
        source,
        snapshots: HashMap::new(),
        graph_version: graph.version,
        stale: false,
        reads: 0,
        bins: 0,
        swaps: 0,
        limits,
        memo: HashMap::new(),
    };
    let mut seen = Seen::default();
    let mut broken_pools = Vec::new();
    let (result, tokens) = run(graph, &mut reads, request, &mut seen, &mut broken_pools).await;
    let pools = reads.snapshots.keys().map(|(id, _)| id.clone()).collect();
    Outcome {
        result,
        considered: Considered { pools, tokens },
        stale: reads.stale,
        broken_pools,
    }
}

async fn run<S: PoolSource>(
    graph: &RouteGraph,
    reads: &mut Reads<'_, S>,
    request: &QuoteRequest,
    seen: &mut Seen,
    broken_pools: &mut Vec<String>,
) -> (Result<Quote, QuoteError>, Option<HashSet<String>>) {
    for token in [&request.token_in, &request.token_out] {
        if !graph.knows(token) {
            return (
                Err(QuoteError::UnknownToken(token.clone())),
                Some(HashSet::new()),
            );
        }
    }
    let radius = request.max_hops.saturating_sub(1);
    let exact_in = request.mode == SwapMode::ExactIn;
    // Exact-in walks forwards and needs each token's distance to the
    // target; exact-out walks backwards and needs the distance from the
    // source. The distance bounds the hops still needed, so dead ends are
    // never read. (Unbounded: the ball has at most every token.)
    let (start, goal) = if exact_in {
        (&request.token_in, &request.token_out)
    } else {
        (&request.token_out, &request.token_in)
    };
    let dist = graph.ball(goal, radius, usize::MAX).unwrap_or_default();
    let near = near_tokens(graph, start, &dist, radius);

    let mut best: Option<Candidate> = None;
    let mut truncated = None;
    'depths: for depth in 1..=request.max_hops as usize {
        let mut stack = Vec::new();
        let root = match expand(
            graph,
            reads,
            request,
            &dist,
            start,
            request.amount,
            0,
            depth,
            &[],
            seen,
            broken_pools,
        )
        .await
        {
            Ok(children) => children,
            Err(e) => return (Err(e), near),
        };
        stack.push(Frame {
            token: start.clone(),
            hops: Vec::new(),
            partial: false,
            children: root.into_iter(),
        });
        while let Some(frame) = stack.last_mut() {
            let Some(child) = frame.children.next() else {
                stack.pop();
                continue;
            };
            let mut hops = frame.hops.clone();
            let partial = frame.partial || child.partial;
            let token_in = frame.token.clone();
            hops.push(Hop {
                pool_id: child.edge.pool_id.clone(),
                token_in: if exact_in {
                    token_in.clone()
                } else {
                    child.edge.to.clone()
                },
                token_out: if exact_in {
                    child.edge.to.clone()
                } else {
                    token_in.clone()
                },
                swap_for_y: child.edge.swap_for_y,
                fill: child.fill,
                params: child.params,
            });
            let level = hops.len();
            if level == depth {
                if child.edge.to == *goal {
                    let mut route = hops;
                    if !exact_in {
                        route.reverse();
                    }
                    consider(
                        &mut best,
                        Candidate {
                            hops: route,
                            partial,
                        },
                        request.mode,
                    );
                }
                continue;
            }
            if let Some(hit) = reads.limit_hit() {
                truncated = Some(hit);
                break 'depths;
            }
            let used: Vec<&str> = hops.iter().map(|h| h.pool_id.as_str()).collect();
            let children = match expand(
                graph,
                reads,
                request,
                &dist,
                &child.edge.to,
                child.amount,
                level,
                depth,
                &used,
                seen,
                broken_pools,
            )
            .await
            {
                Ok(children) => children,
                Err(e) => return (Err(e), near),
            };
            stack.push(Frame {
                token: child.edge.to.clone(),
                hops,
                partial,
                children: children.into_iter(),
            });
        }
        if let Some(hit) = reads.limit_hit() {
            truncated = Some(hit);
            break;
        }
    }
    (answer(request, best, seen, truncated), near)
}

/// Tokens within `radius` of either end, for watchers; `None` if too many.
fn near_tokens(
    graph: &RouteGraph,
    start: &str,
    dist: &HashMap<&str, u32>,
    radius: u32,
) -> Option<HashSet<String>> {
    let from_start = graph.ball(start, radius, MAX_WATCH_TOKENS)?;
    let all: HashSet<String> = from_start
        .keys()
        .chain(dist.keys())
        .map(|t| t.to_string())
        .collect();
    (all.len() <= MAX_WATCH_TOKENS).then_some(all)
}

/// Prices every hop from `token` (holding or wanting `amount`) that can
/// still reach the goal within the `depth - level` hops left, without a
/// pool in `used`; returns the usable ones, best first.
#[allow(clippy::too_many_arguments)]
async fn expand<S: PoolSource>(
    graph: &RouteGraph,
    reads: &mut Reads<'_, S>,
    request: &QuoteRequest,
    dist: &HashMap<&str, u32>,
    token: &str,
    amount: u64,
    level: usize,
    depth: usize,
    used: &[&str],
    seen: &mut Seen,
    broken_pools: &mut Vec<String>,
) -> Result<Vec<Child>, QuoteError> {
    let exact_in = request.mode == SwapMode::ExactIn;
    let left_after = (depth - level - 1) as u32;
    let mut children = Vec::new();
    for (neighbour, _) in graph.neighbours(token) {
        if dist.get(neighbour).is_none_or(|d| *d > left_after) {
            continue; // cannot reach the goal in the hops left
        }
        // Exact-in sells `token` for `neighbour`; exact-out walks back:
        // the hop sells `neighbour` for `token`.
        let edges: Vec<Edge> = if exact_in {
            graph.edges(token, neighbour).collect()
        } else {
            graph
                .edges(neighbour, token)
                .map(|e| Edge {
                    to: neighbour.to_string(),
                    ..e
                })
                .collect()
        };
        for edge in edges {
            if used.contains(&edge.pool_id.as_str()) {
                continue;
            }
            if reads.limit_hit().is_some() {
                return Ok(sorted(children, request.mode));
            }
            // Only a hop some route of distinct pools can use is priced:
            // the distance ball ignores distinctness (B -> C -> B through
            // the one B-C pool is no route), and such a hop would cost a
            // read and could report a failure no route has.
            let mut through: Vec<&str> = used.to_vec();
            through.push(&edge.pool_id);
            let mut steps = COMPLETION_STEPS;
            if !completes(graph, dist, &edge.to, left_after, &mut through, &mut steps) {
                continue;
            }
            seen.candidates = true;
            let priced = reads
                .price(&edge.pool_id, edge.swap_for_y, amount, exact_in)
                .await;
            let (params, fill) = match priced {
                Ok(Priced::Fill(params, fill)) => (params, fill),
                Ok(Priced::Gone) => continue,
                Err(QuoteError::Math(MathError::InputOverflow | MathError::OutputOverflow)) => {
                    seen.overflow = true;
                    continue;
                }
                Err(e @ (QuoteError::Math(_) | QuoteError::Store(StoreError::Corrupt { .. }))) => {
                    tracing::warn!(pool = %edge.pool_id, error = %e, "pool skipped: its data cannot be priced");
                    if !broken_pools.contains(&edge.pool_id) {
                        broken_pools.push(edge.pool_id.clone());
                    }
                    seen.broken.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut partial = false;
            if fill.exhausted {
                // Only the first hop of an exact-in route may fill partly:
                // later, the unused output of earlier hops would make the
                // consumed input ambiguous.
                if exact_in && request.allow_partial_fill && level == 0 && fill.amount_in > 0 {
                    partial = true;
                } else {
                    seen.insufficient = true;
                    continue;
                }
            }
            let next = if exact_in {
                fill.amount_out
            } else {
                fill.amount_in
            };
            if next == 0 {
                seen.zero = true;
                continue;
            }
            children.push(Child {
                edge,
                params,
                fill,
                amount: next,
                partial,
            });
        }
    }
    Ok(sorted(children, request.mode))
}

/// Steps a completion check may take before it assumes a route exists
/// (the conservative answer: a failure then counts).
const COMPLETION_STEPS: usize = 4096;

/// True if a route of distinct pools (none in `used`) leads from `token`
/// to the goal (distance 0 in `dist`) within `left` more hops, or `token`
/// is the goal. Topology only, nothing priced; gives up (true) after
/// `steps`.
fn completes<'g>(
    graph: &'g RouteGraph,
    dist: &HashMap<&str, u32>,
    token: &str,
    left: u32,
    used: &mut Vec<&'g str>,
    steps: &mut usize,
) -> bool {
    if dist.get(token) == Some(&0) {
        return true;
    }
    if left == 0 {
        return false;
    }
    for (neighbour, ids) in graph.neighbours(token) {
        if dist.get(neighbour).is_none_or(|d| *d + 1 > left) {
            continue;
        }
        for id in ids {
            if *steps == 0 {
                return true;
            }
            *steps -= 1;
            if used.contains(&id.as_str()) {
                continue;
            }
            used.push(id);
            let found = completes(graph, dist, neighbour, left - 1, used, steps);
            used.pop();
            if found {
                return true;
            }
        }
    }
    false
}

/// Best first: full fills before partial ones, then the most output
/// (exact-in) or least input (exact-out), then pool id.
fn sorted(mut children: Vec<Child>, mode: SwapMode) -> Vec<Child> {
    children.sort_by(|a, b| {
        a.partial
            .cmp(&b.partial)
            .then_with(|| match mode {
                SwapMode::ExactIn => b.amount.cmp(&a.amount),
                SwapMode::ExactOut => a.amount.cmp(&b.amount),
            })
            .then_with(|| a.edge.pool_id.cmp(&b.edge.pool_id))
    });
    children
}

/// Keeps the better of `best` and `candidate`.
fn consider(best: &mut Option<Candidate>, candidate: Candidate, mode: SwapMode) {
    if best
        .as_ref()
        .is_none_or(|b| compare(mode, &candidate, b) == Ordering::Less)
    {
        *best = Some(candidate);
    }
}

/// Orders candidates, better first: full fills before partial ones; then
/// more output (exact-in) or less input (exact-out); then fewer hops; then
/// the pool ids in order (a deterministic tie-break).
fn compare(mode: SwapMode, a: &Candidate, b: &Candidate) -> Ordering {
    let first = |c: &Candidate| c.hops.first().map_or(0, |h| h.fill.amount_in);
    let last = |c: &Candidate| c.hops.last().map_or(0, |h| h.fill.amount_out);
    let ids = |c: &Candidate| c.hops.iter().map(|h| h.pool_id.clone()).collect::<Vec<_>>();
    a.partial
        .cmp(&b.partial)
        .then_with(|| match mode {
            SwapMode::ExactIn => last(b).cmp(&last(a)),
            SwapMode::ExactOut => first(a).cmp(&first(b)),
        })
        .then_with(|| a.hops.len().cmp(&b.hops.len()))
        .then_with(|| ids(a).cmp(&ids(b)))
}

/// The quote for the best candidate, or the reason there is none.
fn answer(
    request: &QuoteRequest,
    best: Option<Candidate>,
    seen: &mut Seen,
    truncated: Option<&'static str>,
) -> Result<Quote, QuoteError> {
    // Exact-in: a route whose amount passed u64 would give more than any
    // other, and cannot be stated: the amount is too large to quote.
    if seen.overflow && request.mode == SwapMode::ExactIn {
        return Err(QuoteError::Math(MathError::OutputOverflow));
    }
    if let Some(best) = best {
        let mut quote = finish(request, best.hops, best.partial)?;
        if quote.amount_out == 0 {
            return Err(QuoteError::AmountTooSmall);
        }
        quote.search_limit = truncated;
        return Ok(quote);
    }
    if seen.overflow {
        return Err(QuoteError::Math(MathError::InputOverflow));
    }
    if seen.zero {
        return Err(QuoteError::AmountTooSmall);
    }
    if seen.insufficient {
        return Err(QuoteError::InsufficientLiquidity(request.amount));
    }
    if let Some(e) = seen.broken.take() {
        return Err(e);
    }
    if let Some(limit) = truncated {
        return Err(QuoteError::WorkLimit(limit));
    }
    if !seen.candidates {
        return Err(QuoteError::NoRoute {
            from: request.token_in.clone(),
            to: request.token_out.clone(),
            max_hops: request.max_hops,
        });
    }
    Err(QuoteError::InsufficientLiquidity(request.amount))
}

fn finish(request: &QuoteRequest, hops: Vec<Hop>, partial_fill: bool) -> Result<Quote, QuoteError> {
    let (Some(first), Some(last)) = (hops.first(), hops.last()) else {
        return Err(QuoteError::InsufficientLiquidity(request.amount));
    };
    let amount_in = first.fill.amount_in;
    let amount_out = last.fill.amount_out;
    let bps = u128::from(request.slippage_bps.min(10_000));
    let (min_amount_out, max_amount_in) = match request.mode {
        SwapMode::ExactIn => (
            // At most amount_out: fits.
            u64::try_from(u128::from(amount_out) * (10_000 - bps) / 10_000).ok(),
            None,
        ),
        SwapMode::ExactOut => {
            let max = u128::from(amount_in) * (10_000 + bps) / 10_000;
            // Beyond u64 a client could not send it anyway: the most it can.
            (None, Some(u64::try_from(max).unwrap_or(u64::MAX)))
        }
    };
    let price_impact = price_impact(&hops)?;
    Ok(Quote {
        request: request.clone(),
        amount_in,
        amount_out,
        min_amount_out,
        max_amount_in,
        price_impact,
        partial_fill,
        hops,
        search_limit: None,
    })
}

/// Single pool: the SDK's formula (see [`math::single_pool_impact`]).
/// Several: Trader Joe's virtual chain, `(v_n - out) / v_n`, where `v_0` is
/// the input and `v_{i+1}` converts `v_i - fee_i` at hop i's active-bin price.
fn price_impact(hops: &[Hop]) -> Result<String, QuoteError> {
    if let [hop] = hops {
        return Ok(
            match math::single_pool_impact(&hop.params, &hop.fill, hop.swap_for_y)? {
                Some((n, d)) => math::percent_string(n, d),
                None => "0".into(),
            },
        );
    }
    let mut v = U256::from(hops.first().map_or(0, |h| h.fill.amount_in));
    for hop in hops {
        let net = v.saturating_sub(U256::from(hop.fill.total_fee));
        let price = math::bin_price(hop.params.active_bin_id, hop.params.bin_step)?;
        v = if net > U256::from(u128::MAX) {
            U256::MAX
        } else {
            math::convert_at_price(net.as_u128(), price, hop.swap_for_y)
        };
    }
    let out = U256::from(hops.last().map_or(0, |h| h.fill.amount_out));
    Ok(if v > out {
        math::percent_string(v - out, v)
    } else if out > v {
        format!("-{}", math::percent_string(out - v, v))
    } else {
        "0".into()
    })
}
