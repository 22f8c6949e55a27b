//! Proto <-> domain for PledgeService: every input check, and every
//! record's translation to its message.

use std::{sync::Arc, time::Duration};

use rust_decimal::Decimal;

use super::model::{
    NewVaultOp, PledgeRecord, PledgeStatus, ReleaseRecord, ReleaseStatus, VaultBalance, VaultEvent,
    VaultOpKind,
};
use crate::{
    amount,
    credit::model::{NewCreditRequest, Purpose},
    proto::pledge::v1 as pb,
    redis::page::{self, PageToken},
    streams::{Entry, watch::Filter},
    time::timestamp_ms,
    validate::FieldViolations,
};

/// Most ListPledges entries per page, and the default.
const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;
/// Longest custody address and transaction id accepted.
const MAX_TEXT_LEN: usize = 1024;

/// The shared checks of an operation's fields.
fn common(
    v: &mut FieldViolations,
    request_id: &str,
    user_id: &str,
    asset: &str,
    amount_text: &str,
) -> Decimal {
    v.check_id("request_id", request_id);
    v.check_id("user_id", user_id);
    v.check_id("asset", asset);
    amount::parse_positive(amount_text).unwrap_or_else(|e| {
        v.add("amount", e.to_string());
        Decimal::ZERO
    })
}

/// Checks a chain and a custody address, both required.
fn custody(v: &mut FieldViolations, chain: &str, address: &str) {
    v.check_id("chain", chain);
    v.check_text("address", address, MAX_TEXT_LEN, true);
    if address.chars().any(char::is_whitespace) {
        v.add("address", "must not contain spaces");
    }
}

/// A RecordDeposit or RecordWithdrawal call.
#[allow(clippy::too_many_arguments)]
pub fn vault_op(
    kind: VaultOpKind,
    request_id: String,
    user_id: String,
    asset: String,
    amount_text: &str,
    chain: String,
    address: String,
    tx_id: String,
) -> Result<NewVaultOp, FieldViolations> {
    let mut v = FieldViolations::default();
    let amount = common(&mut v, &request_id, &user_id, &asset, amount_text);
    custody(&mut v, &chain, &address);
    v.check_text("tx_id", &tx_id, MAX_TEXT_LEN, false);
    v.into_result()?;
    Ok(NewVaultOp {
        request_id,
        kind,
        uid: user_id,
        asset,
        amount,
        chain,
        address,
        tx_id,
    })
}

/// The wait a call asked for.
fn wait(v: &mut FieldViolations, wait: Option<prost_types::Duration>) -> Duration {
    match wait {
        None => Duration::ZERO,
        Some(w) => Duration::try_from(w).unwrap_or_else(|_| {
            v.add("wait", "must be a non-negative duration");
            Duration::ZERO
        }),
    }
}

/// A CreatePledge call: the credit increase it sends, and its wait.
pub fn pledge(r: pb::CreatePledgeRequest) -> Result<(NewCreditRequest, Duration), FieldViolations> {
    let mut v = FieldViolations::default();
    let amount = common(&mut v, &r.request_id, &r.user_id, &r.asset, &r.amount);
    custody(&mut v, &r.chain, &r.address);
    let wait = wait(&mut v, r.wait);
    v.into_result()?;
    Ok((
        NewCreditRequest {
            request_id: r.request_id,
            uid: r.user_id,
            asset: r.asset,
            change: amount,
            chain: r.chain,
            address: r.address,
            purpose: Purpose::Pledge,
        },
        wait,
    ))
}

/// A ReleasePledge call: the credit decrease it sends, and its wait.
pub fn release(
    r: pb::ReleasePledgeRequest,
) -> Result<(NewCreditRequest, Duration), FieldViolations> {
    let mut v = FieldViolations::default();
    let amount = common(&mut v, &r.request_id, &r.user_id, &r.asset, &r.amount);
    let wait = wait(&mut v, r.wait);
    v.into_result()?;
    Ok((
        NewCreditRequest {
            request_id: r.request_id,
            uid: r.user_id,
            asset: r.asset,
            change: -amount,
            chain: String::new(),
            address: String::new(),
            purpose: Purpose::Release,
        },
        wait,
    ))
}

/// A ListPledges call: (filter, page token, page size).
#[allow(clippy::type_complexity)]
pub fn list(
    r: &pb::ListPledgesRequest,
) -> Result<
    (
        impl Fn(&PledgeRecord) -> bool + use<>,
        Option<PageToken>,
        usize,
    ),
    FieldViolations,
> {
    let mut v = FieldViolations::default();
    v.check_id("user_id", &r.user_id);
    v.check_optional_id("asset", &r.asset);
    let size = v.page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    let status = match pb::PledgeStatus::try_from(r.status) {
        Ok(pb::PledgeStatus::Unspecified) => None,
        Ok(pb::PledgeStatus::Pending) => Some(PledgeStatus::Pending),
        Ok(pb::PledgeStatus::Active) => Some(PledgeStatus::Active),
        Ok(pb::PledgeStatus::Rejected) => Some(PledgeStatus::Rejected),
        Ok(pb::PledgeStatus::Released) => Some(PledgeStatus::Released),
        Ok(pb::PledgeStatus::Settled) => Some(PledgeStatus::Settled),
        Err(_) => {
            v.add("status", format!("unknown value {}", r.status));
            None
        }
    };
    let token = if r.page_token.is_empty() {
        None
    } else {
        let parsed = page::parse_token(&r.page_token);
        if parsed.is_none() {
            v.add("page_token", "is not a next_page_token of this RPC");
        }
        parsed
    };
    v.into_result()?;
    let asset = r.asset.clone();
    let filter = move |p: &PledgeRecord| {
        (asset.is_empty() || p.asset == asset) && status.is_none_or(|s| p.status == s)
    };
    Ok((filter, token, size))
}

/// A WatchPledgeEvents call: (resume cursor, filter).
pub fn watch(r: pb::WatchPledgeEventsRequest) -> Result<(String, Filter), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_optional_id("user_id", &r.user_id);
    v.check_optional_id("asset", &r.asset);
    v.into_result()?;
    let (user, asset) = (r.user_id, r.asset);
    let filter = Arc::new(move |e: &Entry| {
        (user.is_empty() || e.field("uid") == user)
            && (asset.is_empty() || e.field("asset") == asset)
    });
    Ok((r.start_after_event_id, filter))
}

// === domain -> proto ===

/// A vault balance as the API shows it.
pub fn balance_to_proto(b: &VaultBalance) -> pb::VaultBalance {
    pb::VaultBalance {
        user_id: b.uid.clone(),
        asset: b.asset.clone(),
        total: amount::format(b.vault.total),
        locked: amount::format(b.vault.locked),
        available: amount::format(b.vault.available()),
        version: b.vault.version,
        updated_at: b.vault.updated_ms.map(timestamp_ms),
        pledged: amount::format(b.vault.pledged),
    }
}

/// A pledge as the API shows it.
pub fn pledge_to_proto(p: &PledgeRecord) -> pb::Pledge {
    pb::Pledge {
        pledge_id: p.pledge_id.clone(),
        user_id: p.uid.clone(),
        asset: p.asset.clone(),
        amount: p.amount.clone(),
        remaining: p.remaining.clone(),
        status: match p.status {
            PledgeStatus::Pending => pb::PledgeStatus::Pending,
            PledgeStatus::Active => pb::PledgeStatus::Active,
            PledgeStatus::Rejected => pb::PledgeStatus::Rejected,
            PledgeStatus::Released => pb::PledgeStatus::Released,
            PledgeStatus::Settled => pb::PledgeStatus::Settled,
        } as i32,
        credit_request_id: p.credit_request_id.clone(),
        reject_reason: p.reject_reason.clone(),
        created_at: p.created_ms.map(timestamp_ms),
        updated_at: p.updated_ms.map(timestamp_ms),
        settlement_report_id: p.settlement_report_id.clone(),
    }
}

/// A release as the API shows it.
pub fn release_to_proto(r: &ReleaseRecord) -> pb::PledgeRelease {
    pb::PledgeRelease {
        release_id: r.release_id.clone(),
        user_id: r.uid.clone(),
        asset: r.asset.clone(),
        amount: r.amount.clone(),
        status: match r.status {
            ReleaseStatus::Pending => pb::ReleaseStatus::Pending,
            ReleaseStatus::Completed => pb::ReleaseStatus::Completed,
            ReleaseStatus::Rejected => pb::ReleaseStatus::Rejected,
        } as i32,
        credit_request_id: r.credit_request_id.clone(),
        reject_reason: r.reject_reason.clone(),
        unlocks: r
            .unlocks
            .iter()
            .map(|(pledge_id, amount)| pb::PledgeUnlock {
                pledge_id: pledge_id.clone(),
                amount: amount.clone(),
            })
            .collect(),
        created_at: r.created_ms.map(timestamp_ms),
    }
}

/// A vault event as the API shows it.
pub fn event_to_proto(e: &VaultEvent) -> pb::PledgeEvent {
    use pb::PledgeEventType as T;
    let kind = match e.kind.as_str() {
        "deposit_recorded" => T::DepositRecorded,
        "withdrawal_recorded" => T::WithdrawalRecorded,
        "pledge_requested" => T::PledgeRequested,
        "pledge_active" => T::PledgeActive,
        "pledge_rejected" => T::PledgeRejected,
        "release_requested" => T::ReleaseRequested,
        "release_completed" => T::ReleaseCompleted,
        "release_rejected" => T::ReleaseRejected,
        "settled" => T::Settled,
        _ => T::Unspecified,
    };
    let total = amount::parse(&e.total).unwrap_or_default();
    let locked = amount::parse(&e.locked).unwrap_or_default();
    pb::PledgeEvent {
        event_id: e.event_id.clone(),
        r#type: kind as i32,
        user_id: e.uid.clone(),
        asset: e.asset.clone(),
        amount: e.amount.clone(),
        reference_id: e.reference_id.clone(),
        balance: Some(pb::VaultBalance {
            user_id: e.uid.clone(),
            asset: e.asset.clone(),
            total: e.total.clone(),
            locked: e.locked.clone(),
            available: amount::format(total - locked),
            version: e.version,
            updated_at: e.at_ms.map(timestamp_ms),
            pledged: e.pledged.clone(),
        }),
        occurred_at: e.at_ms.map(timestamp_ms),
    }
}
