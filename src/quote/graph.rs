//! The route graph: which pools join which tokens, indexed by token pair.
//!
//! A route search walks *tokens* (each token's neighbours, each pair's
//! pools), so a hub with 20,000 pools to 20,000 dead-end tokens costs one
//! distance look-up per neighbour, not a walk of every pool behind it
//! (issue #18, item 4). The graph holds topology only (a pool's id and its
//! two tokens, which never change once written): configuration and bins are
//! read live by each quote. It is updated in place, one pool at a time, from
//! the change stream; a full rebuild is needed only when that stream may
//! have been missed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::model::Pool;

/// Pools keyed by token and token pair: what the route search walks.
#[derive(Debug, Default, Clone)]
pub struct RouteGraph {
    /// Version of the pool set (`quote:pools:version`) this graph holds at
    /// least: every pool created up to it is in the graph.
    pub version: u64,
    /// Each pool's tokens (x, y).
    pools: HashMap<String, (String, String)>,
    /// token -> neighbour token -> ids of the pools of that pair, sorted.
    adjacency: HashMap<String, BTreeMap<String, BTreeSet<String>>>,
}

/// One pool a hop may use: its id and direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    /// The pool.
    pub pool_id: String,
    /// The token received.
    pub to: String,
    /// X->Y (the token sold is the pool's token X).
    pub swap_for_y: bool,
}

impl RouteGraph {
    /// A graph of `pools` at pool-set `version`.
    pub fn build(version: u64, pools: &[Pool]) -> Self {
        let mut graph = Self {
            version,
            ..Self::default()
        };
        for p in pools {
            graph.upsert(&p.pool_id, &p.token_x, &p.token_y);
        }
        graph
    }

    /// Number of pools.
    pub fn len(&self) -> usize {
        self.pools.len()
    }

    /// True if there is no pool.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// Adds a pool, or moves it if its tokens differ from what the graph
    /// held (which the store refuses; a foreign writer might not).
    pub fn upsert(&mut self, pool_id: &str, token_x: &str, token_y: &str) {
        if let Some((x, y)) = self.pools.get(pool_id) {
            if x == token_x && y == token_y {
                return;
            }
            self.remove(pool_id);
        }
        self.pools
            .insert(pool_id.to_string(), (token_x.into(), token_y.into()));
        for (a, b) in [(token_x, token_y), (token_y, token_x)] {
            self.adjacency
                .entry(a.to_string())
                .or_default()
                .entry(b.to_string())
                .or_default()
                .insert(pool_id.to_string());
        }
    }

    /// Removes a pool if present.
    pub fn remove(&mut self, pool_id: &str) {
        let Some((x, y)) = self.pools.remove(pool_id) else {
            return;
        };
        for (a, b) in [(&x, &y), (&y, &x)] {
            if let Some(neighbours) = self.adjacency.get_mut(a) {
                if let Some(ids) = neighbours.get_mut(b) {
                    ids.remove(pool_id);
                    if ids.is_empty() {
                        neighbours.remove(b);
                    }
                }
                if neighbours.is_empty() {
                    self.adjacency.remove(a);
                }
            }
        }
    }

    /// True if some pool trades `token`.
    pub fn knows(&self, token: &str) -> bool {
        self.adjacency.contains_key(token)
    }

    /// The tokens of a pool.
    pub fn tokens_of(&self, pool_id: &str) -> Option<(&str, &str)> {
        self.pools
            .get(pool_id)
            .map(|(x, y)| (x.as_str(), y.as_str()))
    }

    /// `token`'s neighbours and the pools to each, in token then id order.
    pub fn neighbours<'a>(
        &'a self,
        token: &str,
    ) -> impl Iterator<Item = (&'a str, &'a BTreeSet<String>)> + 'a {
        self.adjacency
            .get(token)
            .into_iter()
            .flatten()
            .map(|(n, ids)| (n.as_str(), ids))
    }

    /// The hops from `from` to `to` through one pool each, direction set.
    pub fn edges<'a>(&'a self, from: &str, to: &'a str) -> impl Iterator<Item = Edge> + 'a {
        let from = from.to_string();
        self.adjacency
            .get(from.as_str())
            .and_then(|n| n.get(to))
            .into_iter()
            .flatten()
            .map(move |id| Edge {
                pool_id: id.clone(),
                to: to.to_string(),
                swap_for_y: self.pools.get(id).is_some_and(|(x, _)| *x == from),
            })
    }

    /// Tokens within `radius` pools of `from`, with their distance
    /// (breadth-first; `from` is at 0). Stops adding tokens past `cap`
    /// (`None` then): a caller that needs the whole ball learns it is
    /// too big rather than paying for it.
    pub fn ball(&self, from: &str, radius: u32, cap: usize) -> Option<HashMap<&str, u32>> {
        let mut dist: HashMap<&str, u32> = HashMap::new();
        let Some((start, _)) = self.adjacency.get_key_value(from) else {
            return Some(dist);
        };
        dist.insert(start.as_str(), 0);
        let mut queue = VecDeque::from([(start.as_str(), 0u32)]);
        while let Some((token, d)) = queue.pop_front() {
            if d == radius {
                continue;
            }
            for (n, _) in self.neighbours(token) {
                if !dist.contains_key(n) {
                    if dist.len() >= cap {
                        return None;
                    }
                    dist.insert(n, d + 1);
                    queue.push_back((n, d + 1));
                }
            }
        }
        Some(dist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_indexed_by_pair_and_updated_in_place() {
        let mut g = RouteGraph::default();
        g.upsert("p1", "A", "B");
        g.upsert("p2", "B", "A");
        g.upsert("p3", "B", "C");
        let ab: Vec<Edge> = g.edges("A", "B").collect();
        assert_eq!(
            ab.iter()
                .map(|e| (e.pool_id.as_str(), e.swap_for_y))
                .collect::<Vec<_>>(),
            [("p1", true), ("p2", false)]
        );
        let ball = g.ball("A", 2, 100).expect("small");
        assert_eq!((ball["A"], ball["B"], ball["C"]), (0, 1, 2));
        g.remove("p3");
        assert!(!g.knows("C"));
        assert_eq!(g.ball("A", 1, 1), None, "capped");
        g.upsert("p1", "A", "D"); // moved by a foreign writer
        assert_eq!(g.edges("A", "B").count(), 1);
        assert_eq!(g.edges("A", "D").count(), 1);
        assert_eq!(g.len(), 2);
    }
}
