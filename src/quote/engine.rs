//! Quotes: route search over the token graph and exact swaps along it.
//!
//! The route graph (which pools join which tokens) is cached and rebuilt
//! when the pool-set version in Redis moves: every hop read returns the
//! version it saw, so a quote that raced a new or changed pool notices and
//! starts again on a fresh graph. Bins are never cached: each quote reads
//! each (pool, direction) it needs once, as one consistent snapshot.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use ethnum::U256;

pub use super::error::QuoteError;
use super::{
    math::{self, BinReserve, HopFill, MathError, PoolParams},
    model::Pool,
    store::{HopSnapshot, QuoteStore},
};

/// Most pools on a route a caller may ask for.
pub const MAX_HOPS_LIMIT: u32 = 4;
/// Pools on a route when the caller does not say.
pub const DEFAULT_MAX_HOPS: u32 = 3;
/// Most candidate routes evaluated per quote: bounds the work (and Redis
/// reads) a dense token graph could otherwise demand.
pub const MAX_ROUTES: usize = 64;
/// Most edges one route search may follow: bounds the work a dense token
/// graph (hub tokens with hundreds of pools) can demand of one quote.
pub const MAX_SEARCH_STEPS: usize = 20_000;
/// Bins read per hop at first: most swaps cross few bins, and every bin read
/// costs Redis time and parsing; a longer walk reads 4x more each time.
const FIRST_BIN_PAGE: usize = 16;
/// Most bins a single hop may walk; a swap needing more is refused as
/// insufficient liquidity rather than reading unbounded data.
pub const MAX_BINS_PER_HOP: usize = 4096;
/// Times a quote restarts because the pool set changed under it.
const VERSION_RETRIES: usize = 3;

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
}

/// Pools keyed by token: what the route search walks.
#[derive(Debug, Default)]
pub struct RouteGraph {
    /// Version of the pool set it was built from.
    pub version: u64,
    edges: HashMap<String, Vec<Edge>>,
}

#[derive(Debug, Clone)]
struct Edge {
    pool_id: String,
    to: String,
    swap_for_y: bool,
}

impl RouteGraph {
    fn build(version: u64, pools: &[Pool]) -> Self {
        let mut edges: HashMap<String, Vec<Edge>> = HashMap::new();
        for p in pools {
            edges.entry(p.token_x.clone()).or_default().push(Edge {
                pool_id: p.pool_id.clone(),
                to: p.token_y.clone(),
                swap_for_y: true,
            });
            edges.entry(p.token_y.clone()).or_default().push(Edge {
                pool_id: p.pool_id.clone(),
                to: p.token_x.clone(),
                swap_for_y: false,
            });
        }
        Self { version, edges }
    }

    fn knows(&self, token: &str) -> bool {
        self.edges.contains_key(token)
    }

    /// Routes of at most `max_hops` pools, no pool twice, shortest first:
    /// all 1-pool routes, then all 2-pool routes, and so on (iterative
    /// deepening), so a dense part of the graph can never crowd out a
    /// shorter route elsewhere. Stops at [`MAX_ROUTES`] routes or
    /// [`MAX_SEARCH_STEPS`] edges followed, whichever comes first.
    fn routes(&self, from: &str, to: &str, max_hops: u32) -> Vec<Vec<Edge>> {
        let mut found = self.run_search(from, to, max_hops).found;
        found.truncate(MAX_ROUTES);
        found
    }

    fn run_search(&self, from: &str, to: &str, max_hops: u32) -> Search {
        let mut search = Search {
            found: Vec::new(),
            steps: 0,
            path: Vec::new(),
        };
        for depth in 1..=max_hops as usize {
            self.search(from, to, depth, &mut search);
            if search.exhausted() {
                break;
            }
        }
        search
    }

    /// Routes of exactly `depth` more pools from `at` to `to`.
    fn search(&self, at: &str, to: &str, depth: usize, search: &mut Search) {
        for edge in self.edges.get(at).into_iter().flatten() {
            if search.exhausted() {
                return;
            }
            search.steps += 1;
            if search.path.iter().any(|e| e.pool_id == edge.pool_id) {
                continue;
            }
            search.path.push(edge.clone());
            if depth == 1 {
                if edge.to == to {
                    search.found.push(search.path.clone());
                }
            } else if edge.to != to {
                // A path through `to` is found at its own, shorter depth.
                self.search(&edge.to, to, depth - 1, search);
            }
            search.path.pop();
        }
    }
}

/// The state of one route search.
struct Search {
    found: Vec<Vec<Edge>>,
    steps: usize,
    path: Vec<Edge>,
}

impl Search {
    fn exhausted(&self) -> bool {
        self.found.len() >= MAX_ROUTES || self.steps >= MAX_SEARCH_STEPS
    }
}

/// Prices swaps over the pools in one Redis.
pub struct QuoteEngine {
    store: QuoteStore,
    /// The cached route graph; `None` until built or after invalidation.
    graph: RwLock<Option<Arc<RouteGraph>>>,
}

/// Bins read so far in one quote, per (pool, direction): each is read once
/// (more only if a walk needs a longer page).
struct Reads<'a> {
    store: &'a QuoteStore,
    snapshots: HashMap<(String, bool), (HopSnapshot, bool)>,
    /// Version of the route graph in use.
    graph_version: u64,
    /// Set when a read saw another pool-set version (newer, or older after
    /// Redis restarted empty): the graph is stale.
    stale: bool,
}

impl<'a> Reads<'a> {
    fn new(store: &'a QuoteStore, graph: &RouteGraph) -> Self {
        Self {
            store,
            snapshots: HashMap::new(),
            graph_version: graph.version,
            stale: false,
        }
    }
}

impl Reads<'_> {
    /// Runs `walk` over the pool's bins in the swap's direction, reading a
    /// longer page while the walk runs out of bins and more exist. Returns
    /// the pool's parameters and the fill; `None` if the pool is gone.
    async fn walk(
        &mut self,
        pool_id: &str,
        swap_for_y: bool,
        walk: impl Fn(&PoolParams, &[BinReserve]) -> Result<HopFill, MathError>,
    ) -> Result<Option<(PoolParams, HopFill)>, QuoteError> {
        let key = (pool_id.to_string(), swap_for_y);
        let mut limit = FIRST_BIN_PAGE;
        loop {
            if let Some((snapshot, complete)) = self.snapshots.get(&key) {
                let params = snapshot.pool.params();
                let fill = walk(&params, &snapshot.bins)?;
                if !fill.exhausted || *complete || snapshot.bins.len() >= MAX_BINS_PER_HOP {
                    return Ok(Some((params, fill)));
                }
                limit = (snapshot.bins.len() * 4).min(MAX_BINS_PER_HOP);
            }
            let (version, snapshot) = self.store.read_hop(pool_id, swap_for_y, limit).await?;
            self.stale |= version != self.graph_version;
            let Some(snapshot) = snapshot else {
                return Ok(None);
            };
            let complete = snapshot.bins.len() < limit;
            self.snapshots.insert(key.clone(), (snapshot, complete));
        }
    }
}

impl QuoteEngine {
    /// An engine over `store`.
    pub fn new(store: QuoteStore) -> Self {
        Self {
            store,
            graph: RwLock::new(None),
        }
    }

    /// The store, for ingest and pool reads.
    pub fn store(&self) -> &QuoteStore {
        &self.store
    }

    /// Forgets the route graph: the next quote rebuilds it.
    pub fn invalidate_routes(&self) {
        if let Ok(mut graph) = self.graph.write() {
            *graph = None;
        }
    }

    /// The cached graph, or a fresh one if there is none or `rebuild`.
    async fn graph(&self, rebuild: bool) -> Result<Arc<RouteGraph>, QuoteError> {
        let cached = self.graph.read().ok().and_then(|g| g.clone());
        if let Some(graph) = cached.filter(|_| !rebuild) {
            return Ok(graph);
        }
        let (version, pools) = self.store.all_pools().await?;
        let fresh = Arc::new(RouteGraph::build(version, &pools));
        if let Ok(mut graph) = self.graph.write() {
            *graph = Some(Arc::clone(&fresh));
        }
        Ok(fresh)
    }

    /// Prices `request` along its best route. Also returns the pools the
    /// search considered, so a watcher knows which changes matter.
    pub async fn quote(&self, request: &QuoteRequest) -> Result<(Quote, Vec<String>), QuoteError> {
        let mut rebuild = false;
        for _ in 0..VERSION_RETRIES {
            let graph = self.graph(rebuild).await?;
            let mut reads = Reads::new(&self.store, &graph);
            let result = self.quote_on(&graph, &mut reads, request).await;
            // A read saw another pool set, or the graph does not know the
            // tokens and may be stale: check before answering.
            let unknown = matches!(
                result,
                Err(QuoteError::UnknownToken(_) | QuoteError::NoRoute { .. })
            );
            let stale = reads.stale || (unknown && self.store.version().await? != graph.version);
            if !stale {
                return result;
            }
            rebuild = true;
        }
        // The pool set keeps changing under us: answer from a fresh graph.
        let graph = self.graph(true).await?;
        self.quote_on(&graph, &mut Reads::new(&self.store, &graph), request)
            .await
    }

    async fn quote_on(
        &self,
        graph: &RouteGraph,
        reads: &mut Reads<'_>,
        request: &QuoteRequest,
    ) -> Result<(Quote, Vec<String>), QuoteError> {
        for token in [&request.token_in, &request.token_out] {
            if !graph.knows(token) {
                return Err(QuoteError::UnknownToken(token.clone()));
            }
        }
        let routes = graph.routes(&request.token_in, &request.token_out, request.max_hops);
        if routes.is_empty() {
            return Err(QuoteError::NoRoute {
                from: request.token_in.clone(),
                to: request.token_out.clone(),
                max_hops: request.max_hops,
            });
        }
        let mut considered: Vec<String> =
            routes.iter().flatten().map(|e| e.pool_id.clone()).collect();
        considered.sort();
        considered.dedup();

        let mut best: Option<Quote> = None;
        for route in &routes {
            let priced = match request.mode {
                SwapMode::ExactIn => price_exact_in(reads, route, request).await?,
                SwapMode::ExactOut => price_exact_out(reads, route, request).await?,
            };
            let Some(candidate) = priced else { continue };
            if best
                .as_ref()
                .is_none_or(|b| better(request.mode, &candidate, b))
            {
                best = Some(candidate);
            }
        }
        let quote = best.ok_or(QuoteError::InsufficientLiquidity(request.amount))?;
        if quote.amount_out == 0 {
            return Err(QuoteError::AmountTooSmall);
        }
        Ok((quote, considered))
    }
}

/// True if `a` is a better quote than `b`: full fills beat partial ones;
/// then more output (exact-in) or less input (exact-out); then fewer hops.
fn better(mode: SwapMode, a: &Quote, b: &Quote) -> bool {
    if a.partial_fill != b.partial_fill {
        return !a.partial_fill;
    }
    let (a_key, b_key) = match mode {
        SwapMode::ExactIn => (
            u128::MAX - u128::from(a.amount_out),
            u128::MAX - u128::from(b.amount_out),
        ),
        SwapMode::ExactOut => (u128::from(a.amount_in), u128::from(b.amount_in)),
    };
    (a_key, a.hops.len()) < (b_key, b.hops.len())
}

async fn price_exact_in(
    reads: &mut Reads<'_>,
    route: &[Edge],
    request: &QuoteRequest,
) -> Result<Option<Quote>, QuoteError> {
    let mut hops = Vec::with_capacity(route.len());
    let mut amount = request.amount;
    let mut token_in = request.token_in.clone();
    let mut partial = false;
    for (i, edge) in route.iter().enumerate() {
        let walk = |pool: &PoolParams, bins: &[BinReserve]| {
            math::swap_exact_in(pool, bins, amount, edge.swap_for_y)
        };
        let Some((params, fill)) = reads.walk(&edge.pool_id, edge.swap_for_y, walk).await? else {
            return Ok(None); // pool removed since the graph was built
        };
        if fill.exhausted {
            // Only the first hop may fill partly: later, the unused output of
            // earlier hops would make the consumed input ambiguous.
            if !(request.allow_partial_fill && i == 0) || fill.amount_in == 0 {
                return Ok(None);
            }
            partial = true;
        }
        amount = fill.amount_out;
        hops.push(Hop {
            pool_id: edge.pool_id.clone(),
            token_in: std::mem::replace(&mut token_in, edge.to.clone()),
            token_out: edge.to.clone(),
            swap_for_y: edge.swap_for_y,
            params,
            fill,
        });
    }
    finish(request, hops, partial).map(Some)
}

async fn price_exact_out(
    reads: &mut Reads<'_>,
    route: &[Edge],
    request: &QuoteRequest,
) -> Result<Option<Quote>, QuoteError> {
    // Walk backwards: each hop must deliver what the next one needs.
    let mut hops = Vec::with_capacity(route.len());
    let mut want = request.amount;
    for edge in route.iter().rev() {
        let walk = |pool: &PoolParams, bins: &[BinReserve]| {
            math::swap_exact_out(pool, bins, want, edge.swap_for_y)
        };
        let (params, fill) = match reads.walk(&edge.pool_id, edge.swap_for_y, walk).await {
            Ok(Some((params, fill))) if !fill.exhausted => (params, fill),
            Ok(_) | Err(QuoteError::Math(MathError::InputOverflow)) => return Ok(None),
            Err(e) => return Err(e),
        };
        want = fill.amount_in;
        hops.push(Hop {
            pool_id: edge.pool_id.clone(),
            token_in: String::new(),
            token_out: edge.to.clone(),
            swap_for_y: edge.swap_for_y,
            params,
            fill,
        });
    }
    hops.reverse();
    let mut token_in = request.token_in.clone();
    for hop in &mut hops {
        hop.token_in = std::mem::replace(&mut token_in, hop.token_out.clone());
    }
    finish(request, hops, false).map(Some)
}

fn finish(request: &QuoteRequest, hops: Vec<Hop>, partial_fill: bool) -> Result<Quote, QuoteError> {
    let (Some(first), Some(last)) = (hops.first(), hops.last()) else {
        return Err(QuoteError::InsufficientLiquidity(request.amount));
    };
    let amount_in = first.fill.amount_in;
    let amount_out = last.fill.amount_out;
    let bps = u128::from(request.slippage_bps);
    let (min_amount_out, max_amount_in) = match request.mode {
        SwapMode::ExactIn => (
            Some((u128::from(amount_out) * (10_000 - bps) / 10_000) as u64),
            None,
        ),
        SwapMode::ExactOut => {
            let max = u128::from(amount_in) * (10_000 + bps) / 10_000;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(id: &str, x: &str, y: &str) -> Pool {
        Pool {
            pool_id: id.into(),
            token_x: x.into(),
            token_y: y.into(),
            bin_step: 10,
            active_bin_id: 0,
            base_factor: 10_000,
            variable_fee_control: 0,
            max_volatility_accumulator: 0,
            protocol_share_bps: 0,
            status: String::new(),
            token_x_decimals: None,
            token_y_decimals: None,
            created_at: None,
            last_updated: None,
        }
    }

    #[test]
    fn a_dense_hub_never_crowds_out_a_shorter_route() {
        // From A, the first neighbour H leads to T through very many 3-pool
        // routes; a later neighbour B reaches T in 2 pools.
        let mut pools = vec![pool("a-h", "A", "H")];
        for i in 0..200 {
            pools.push(pool(&format!("h-m{i}"), "H", &format!("M{i}")));
            pools.push(pool(&format!("m{i}-t"), &format!("M{i}"), "T"));
        }
        pools.push(pool("a-b", "A", "B"));
        pools.push(pool("b-t", "B", "T"));
        let graph = RouteGraph::build(1, &pools);
        let routes = graph.routes("A", "T", 3);
        let first: Vec<&str> = routes[0].iter().map(|e| e.pool_id.as_str()).collect();
        assert_eq!(first, ["a-b", "b-t"], "the 2-pool route comes first");
        assert!(
            routes.windows(2).all(|w| w[0].len() <= w[1].len()),
            "shortest first"
        );
        assert!(routes.len() <= MAX_ROUTES);
    }

    #[test]
    fn the_search_work_is_bounded_on_a_dense_graph() {
        // A complete graph of 40 tokens (780 pools) where T is unreachable:
        // unbounded, 4-pool search would walk hundreds of millions of paths.
        let tokens: Vec<String> = (0..40).map(|i| format!("K{i}")).collect();
        let mut pools = Vec::new();
        for (i, a) in tokens.iter().enumerate() {
            for b in &tokens[i + 1..] {
                pools.push(pool(&format!("{a}-{b}"), a, b));
            }
        }
        pools.push(pool("t-u", "T", "U"));
        let graph = RouteGraph::build(1, &pools);
        let search = graph.run_search("K0", "T", 4);
        assert!(search.found.is_empty());
        assert_eq!(search.steps, MAX_SEARCH_STEPS, "stopped at the budget");
    }
}
