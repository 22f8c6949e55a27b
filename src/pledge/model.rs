//! The vault's records, parsed once from Redis into typed structs.

use rust_decimal::Decimal;

use crate::{
    credit::custody::Vault,
    streams::{Entry, Fields},
};

/// A user's custody in one asset, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultBalance {
    /// The user.
    pub uid: String,
    /// The asset.
    pub asset: String,
    /// The vault.
    pub vault: Vault,
}

/// Whether an operation adds or removes custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultOpKind {
    /// Custody arrives.
    Deposit,
    /// Custody leaves (from the available balance only).
    Withdrawal,
}

impl VaultOpKind {
    /// The record's `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deposit => "deposit",
            Self::Withdrawal => "withdrawal",
        }
    }
}

/// A validated deposit or withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVaultOp {
    /// Idempotency key.
    pub request_id: String,
    /// Deposit or withdrawal.
    pub kind: VaultOpKind,
    /// The user.
    pub uid: String,
    /// The asset.
    pub asset: String,
    /// Positive amount.
    pub amount: Decimal,
    /// Chain.
    pub chain: String,
    /// Custody address.
    pub address: String,
    /// On-chain transaction id, for the record.
    pub tx_id: String,
}

/// Where a pledge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PledgeStatus {
    /// Locked, credit increase requested.
    Pending,
    /// Credit granted; `remaining` still locked.
    Active,
    /// Credit refused; unlocked.
    Rejected,
    /// Fully released.
    Released,
    /// Used up by settlements (custody left to settle trades).
    Settled,
}

impl PledgeStatus {
    /// From the record's `status` field.
    pub fn parse(text: &str) -> Self {
        match text {
            "active" => Self::Active,
            "rejected" => Self::Rejected,
            "released" => Self::Released,
            "settled" => Self::Settled,
            _ => Self::Pending,
        }
    }
}

/// A pledge (`mirror:pledge:<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PledgeRecord {
    /// Its id (= its credit request's id).
    pub pledge_id: String,
    /// The user.
    pub uid: String,
    /// The asset.
    pub asset: String,
    /// Amount pledged.
    pub amount: String,
    /// Amount still locked by it.
    pub remaining: String,
    /// Where it stands.
    pub status: PledgeStatus,
    /// Its credit request.
    pub credit_request_id: String,
    /// Why it was refused.
    pub reject_reason: String,
    /// Chain.
    pub chain: String,
    /// Custody address.
    pub address: String,
    /// Unix ms created.
    pub created_ms: Option<i64>,
    /// Unix ms last changed.
    pub updated_ms: Option<i64>,
    /// A settlement lot's report ("" for a CreatePledge).
    pub settlement_report_id: String,
}

impl PledgeRecord {
    /// Parses a pledge hash.
    pub fn parse(f: &Fields) -> Self {
        Self {
            pledge_id: f.text("pledge_id").into(),
            uid: f.text("uid").into(),
            asset: f.text("asset").into(),
            amount: f.text("amount").into(),
            remaining: f.text("remaining").into(),
            status: PledgeStatus::parse(f.text("status")),
            credit_request_id: f.text("credit_request_id").into(),
            reject_reason: f.text("reject_reason").into(),
            chain: f.text("chain").into(),
            address: f.text("address").into(),
            created_ms: f.text("created_ms").parse().ok(),
            updated_ms: f.text("updated_ms").parse().ok(),
            settlement_report_id: f.text("settlement_report_id").into(),
        }
    }
}

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseStatus {
    /// Credit decrease requested.
    Pending,
    /// Credit decreased and the amount unlocked.
    Completed,
    /// Refused; nothing unlocked.
    Rejected,
}

/// A release (`mirror:release:<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    /// Its id (= its credit request's id).
    pub release_id: String,
    /// The user.
    pub uid: String,
    /// The asset.
    pub asset: String,
    /// Amount released.
    pub amount: String,
    /// Where it stands.
    pub status: ReleaseStatus,
    /// Its credit request.
    pub credit_request_id: String,
    /// Why it was refused.
    pub reject_reason: String,
    /// What it unlocked, oldest pledge first: (pledge_id, amount).
    pub unlocks: Vec<(String, String)>,
    /// Unix ms created.
    pub created_ms: Option<i64>,
}

impl ReleaseRecord {
    /// Parses a release hash (`unlocks` is JSON `[[id, amount], ...]`).
    pub fn parse(f: &Fields) -> Self {
        let unlocks =
            serde_json::from_str::<Vec<(String, String)>>(f.text("unlocks")).unwrap_or_default();
        Self {
            release_id: f.text("release_id").into(),
            uid: f.text("uid").into(),
            asset: f.text("asset").into(),
            amount: f.text("amount").into(),
            status: match f.text("status") {
                "completed" => ReleaseStatus::Completed,
                "rejected" => ReleaseStatus::Rejected,
                _ => ReleaseStatus::Pending,
            },
            credit_request_id: f.text("credit_request_id").into(),
            reject_reason: f.text("reject_reason").into(),
            unlocks,
            created_ms: f.text("created_ms").parse().ok(),
        }
    }
}

/// One entry of the vault event log (`mirror:vault-events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultEvent {
    /// The entry id: the `event_id` clients resume after.
    pub event_id: String,
    /// What happened: `deposit_recorded`, `withdrawal_recorded`,
    /// `pledge_requested|active|rejected`, `release_requested|completed|rejected`.
    pub kind: String,
    /// The user.
    pub uid: String,
    /// The asset.
    pub asset: String,
    /// The amount concerned.
    pub amount: String,
    /// The operation, pledge or release.
    pub reference_id: String,
    /// The vault after.
    pub total: String,
    /// Locked after.
    pub locked: String,
    /// Pledged after.
    pub pledged: String,
    /// Vault version after.
    pub version: u64,
    /// Unix ms.
    pub at_ms: Option<i64>,
}

impl VaultEvent {
    /// Parses an event log entry.
    pub fn parse(entry: &Entry) -> Self {
        let f = &entry.fields;
        Self {
            event_id: entry.id.to_string(),
            kind: f.text("type").into(),
            uid: f.text("uid").into(),
            asset: f.text("asset").into(),
            amount: f.text("amount").into(),
            reference_id: f.text("reference_id").into(),
            total: f.text("total").into(),
            locked: f.text("locked").into(),
            pledged: f.text("pledged").into(),
            version: f.text("version").parse().unwrap_or(0),
            at_ms: f.text("at_ms").parse().ok(),
        }
    }
}
