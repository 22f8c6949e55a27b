//! # openoes
//!
//! A gRPC gateway for the OpenOES off-exchange settlement standard (formerly
//! "Redis Mirror"): a custodian (WSP) and an exchange share a user's Credit
//! Inventory through a Redis master (M, the WSP's) and a stream-writeable
//! replica of it (R, at the exchange). openoes speaks that Redis protocol on
//! one side and gRPC on the other, and runs two more engines on the same
//! Redis-streams machinery: DLMM swap quotes and signed attestations.
//!
//! ## Layout
//!
//! Shared machinery, below every domain and importing none of them (a test,
//! `layout_has_no_cycles`, checks it):
//!
//! - [`validate`]: a leaf: field violations, the protocol's id rule, page
//!   sizes, how much of a bad value an error may echo.
//! - [`error`]: [`error::RpcError`], which every error type implements to
//!   say its own gRPC code and `ErrorInfo` reason, the one conversion to
//!   `tonic::Status`, and [`error::reason`], the one registry of reasons.
//! - [`config`]: the one typed [`config::Config`]: defaults, then a TOML
//!   file, then `OPENOES__*` environment variables.
//! - [`amount`]: money as the protocol writes it: exact decimal strings in
//!   and out, `rust_decimal` inside, never a float.
//! - [`time`]: unix seconds, milliseconds and protobuf timestamps.
//! - [`crypto`]: offline, standard signatures others verify with their own
//!   tools: RFC 9162 Merkle trees, C2SP signed notes, checkpoints and tlog
//!   proofs, W3C Data Integrity `eddsa-jcs-2022` with `did:key`, Bitstring
//!   Status Lists, and the server's Ed25519 key file. A leaf.
//! - [`redis`]: connections to M and R: a pool for short commands, dedicated
//!   connections (a separate type) for blocking stream reads,
//!   [`redis::script`] (one struct per Lua script), and [`redis::process`]
//!   to run real local `redis-server`s for `dev` and tests.
//! - [`metrics`]: Prometheus metrics: the one registry per server, the
//!   `/metrics` listener, and the sampler of the link's gauges (replication,
//!   heartbeat, consumer lag, dead letters) with the probes domains register.
//! - [`streams`]: the bridge from Redis streams to gRPC server streams:
//!   fan-out watches, consumer groups, entry parsing, and the one pump that
//!   serves every streaming RPC.
//! - [`server`]: the [`server::Context`] every service is built from, the
//!   plug-in shape ([`server::PlugIn`]), health that follows Redis,
//!   reflection, deadline and drain layers, graceful shutdown, and
//!   [`server::auth`]: principals (tokens, client certificates), the one
//!   policy table of who may call which RPC, shared rate limits, the audit
//!   trail; [`server::transport`]: the listener's bounds (connection cap,
//!   handshake deadline, message sizes per RPC class).
//! - [`shutdown`]: the stop signal (SIGINT, SIGTERM).
//! - [`proto`]: code generated from `proto/`.
//!
//! One folder per domain, all of the same shape (`src/README.md` has the
//! template and the checklist for adding a service):
//!
//! - [`credit`]: credit requests WSP -> exchange, decisions, Credit Inventory;
//!   the WSP role on M and the exchange role on R, one file each.
//! - [`pledge`]: custody vault, pledge and release.
//! - [`settlement`]: settlement reports, confirmations, disputes.
//! - [`quote`]: exact DLMM (Liquidity Book) swap quotes and routing.
//! - [`attestation`]: verification results turned into signed attestations.
//!
//! On top: [`services`] (the list of services and `run`), [`dev`]
//! (`openoes dev`, the whole link on one machine), [`acl`] (the link's
//! Redis ACL rules) and [`doctor`] (`openoes doctor`: a deployment checked
//! from the outside). `src/main.rs` is the command line (`serve`, `dev`,
//! `acl apply`, `pools load`, `bench`, `config`); the load tools of
//! `openoes bench` live beside it in `src/bench/`, and the progress both
//! show on stderr in `src/progress.rs`, outside the library.

#![warn(missing_docs)]

pub mod acl;
pub mod amount;
pub mod attestation;
pub mod config;
pub mod credit;
pub mod crypto;
pub mod dev;
pub mod doctor;
pub mod error;
pub mod metrics;
pub mod pledge;
pub mod proto;
pub mod quote;
pub mod redis;
pub mod server;
pub mod services;
pub mod settlement;
pub mod shutdown;
pub mod streams;
pub mod time;
pub mod validate;

#[cfg(test)]
mod layout_tests {
    //! The import picture: shared machinery never imports a domain, and
    //! the modules form no cycle.

    use std::{
        collections::{BTreeMap, BTreeSet},
        path::Path,
    };

    const DOMAINS: [&str; 5] = ["credit", "pledge", "settlement", "quote", "attestation"];
    const SHARED: [&str; 11] = [
        "validate", "error", "config", "amount", "time", "crypto", "redis", "metrics", "streams",
        "server", "shutdown",
    ];

    /// The top-level modules named by `crate::` paths in code (not in
    /// comments): `crate::a::b`, `crate::{a, b::c}`, `$crate::a`.
    fn crate_paths(text: &str) -> BTreeSet<String> {
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let ident = |s: &str| -> String {
            s.trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        let mut found = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Items at depth 1 of the braced group.
                let (mut depth, mut item_start) = (0usize, 0usize);
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            found.insert(ident(&group[item_start..i]));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            found.insert(ident(&group[item_start..i]));
                            item_start = i + 1;
                        }
                        _ => {}
                    }
                }
            } else {
                found.insert(ident(rest));
            }
        }
        found.remove("");
        found
    }

    /// Top-level modules each top-level module refers to.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let rel = path.strip_prefix(&src).expect("under src");
                let top = rel
                    .components()
                    .next()
                    .and_then(|c| c.as_os_str().to_str())
                    .unwrap_or_default()
                    .trim_end_matches(".rs")
                    .to_string();
                if ["lib", "main", "bench", "progress", "proto"].contains(&top.as_str()) {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read file");
                let used = graph.entry(top.clone()).or_default();
                for module in crate_paths(&text) {
                    if module != top {
                        used.insert(module);
                    }
                }
            }
        }
        graph
    }

    #[test]
    fn layout_has_no_cycles() {
        let graph = imports();
        // The parser sees what is there (else this test could not fail).
        assert!(graph["credit"].contains("streams"), "{graph:?}");
        assert!(graph["server"].contains("redis"), "{graph:?}");
        assert!(graph["services"].contains("credit"), "{graph:?}");
        for shared in SHARED {
            let bad: Vec<_> = graph
                .get(shared)
                .into_iter()
                .flatten()
                .filter(|m| {
                    DOMAINS.contains(&m.as_str())
                        || ["services", "dev", "acl"].contains(&m.as_str())
                })
                .collect();
            assert!(bad.is_empty(), "shared module {shared} imports {bad:?}");
        }
        // Depth-first search for a cycle.
        fn visit<'a>(
            graph: &'a BTreeMap<String, BTreeSet<String>>,
            node: &'a str,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if done.contains(node) {
                return;
            }
            if let Some(i) = path.iter().position(|n| *n == node) {
                panic!("import cycle: {:?}", &path[i..]);
            }
            path.push(node);
            for next in graph.get(node).into_iter().flatten() {
                visit(graph, next, path, done);
            }
            path.pop();
            done.insert(node);
        }
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            visit(&graph, node, &mut Vec::new(), &mut done);
        }
    }
}
