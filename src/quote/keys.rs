//! Every Redis key of quote data (the seed's layout, made exact; ids are
//! the `[A-Za-z0-9._@-]` ids).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `pool:<pool_id>` | string | pool configuration, JSON ([`Pool`](super::model::Pool)) |
//! | `bin:<pool_id>:<bin_id>` | string | one non-empty bin, JSON ([`Bin`](super::model::Bin)), amounts as strings |
//! | `pool:<pool_id>:bins` | sorted set | ids of the non-empty bins (score = id): the walk's index |
//! | `pairs:<token_x>:<token_y>`, `tokens:<token>` | set | pool ids (seed indexes) |
//! | `quote:pools` | set | every pool id |
//! | `quote:pools:version` | string | +1 when a pool is created: route graphs learn of new pools |
//! | `quote:events` | stream | `pool_id`, `kind` (`pool` or `bins`), `version`, `created` (`pool` only) per write that changed something |

/// The change stream of pools and bins.
pub const EVENTS_KEY: &str = "quote:events";
/// Every pool id.
pub const POOLS_KEY: &str = "quote:pools";
/// The pool-set version.
pub const VERSION_KEY: &str = "quote:pools:version";

/// The last bins generation handed out (`INCR`).
pub const BINS_GEN_KEY: &str = "quote:bins:gen";
/// Old generations of pools' bins still to delete.
pub const PURGE_KEY: &str = "quote:purge";

/// `pool:<id>:bins:g<g>` and its `:data` hash: generation `g` of a pool's
/// bins.
pub fn generation(id: &str, g: u64) -> (String, String) {
    let index = format!("pool:{id}:bins:g{g}");
    let data = format!("{index}:data");
    (index, data)
}

/// `pool:<id>`: a pool's configuration.
pub fn pool_key(id: &str) -> String {
    format!("pool:{id}")
}

/// `pool:<id>:bins`: the index of a pool's non-empty bins.
pub fn index_key(id: &str) -> String {
    format!("pool:{id}:bins")
}

/// `bin:<id>:`: the prefix of a pool's bin keys.
pub fn bin_prefix(id: &str) -> String {
    format!("bin:{id}:")
}

/// `tokens:<token>`: pools trading a token.
pub fn tokens(token: &str) -> String {
    format!("tokens:{token}")
}

/// `pairs:<x>:<y>`: pools of a pair.
pub fn pair(x: &str, y: &str) -> String {
    format!("pairs:{x}:{y}")
}
