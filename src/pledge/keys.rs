//! Every Redis key of the custody vault. They are the credit flow's keys
//! as much as PledgeService's (a pledge's decision and its custody effect
//! are one step: see [`crate::credit::custody`]), so they are defined in
//! [`crate::credit::keys`]; this is the domain's view of them.
//!
//! | key | type | on | holds |
//! |---|---|---|---|
//! | `mirror:vault:<uid>:<asset>` | hash | M | `total`, `locked`, `pledged`, `version`, `updated_ms` |
//! | `mirror:vault-op:<request_id>` | hash | M | a deposit's or withdrawal's record and its result |
//! | `mirror:pledge:<pledge_id>` | hash | M | a pledge |
//! | `mirror:release:<release_id>` | hash | M | a release and its unlocks |
//! | `mirror:pledges:<uid>` | sorted set | M | a user's pledges by creation ms |
//! | `mirror:pledges-active:<uid>:<asset>` | sorted set | M | active pledges, oldest first |
//! | `mirror:vault-events` | stream | M | the vault event log |
//!
//! None of them is on the exchange's side: it sees only the standard
//! credit requests a pledge or a release sends, and its ACL user cannot
//! read these (tests/acl.rs).

pub use crate::credit::keys::{
    VAULT_EVENTS, active_pledges, pledge, release, user_pledges, vault, vault_op,
};
