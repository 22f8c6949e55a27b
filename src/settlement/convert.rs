//! Proto <-> domain for SettlementService: every input check, and every
//! record's translation to its message.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use rust_decimal::Decimal;

use super::{
    cycle::Proof,
    model::{
        CycleRecord, CycleStatus, DisputedLine, EventKind, Instructions, Leg, Names, Report,
        ReportRecord, ReportStatus, SettlementEvent, check_text, format_net, parse_net,
    },
    store::{Decision, ListFilter},
};
use crate::{
    amount,
    crypto::merkle::Hash,
    proto::settlement::v1 as pb,
    redis::page::{self, PageToken},
    streams::{Entry, watch::Filter},
    time::timestamp_ms,
    validate::{FieldViolations, echo},
};

/// Most ListSettlementReports entries per page, and the default.
const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;

// === proto -> domain ===

fn wait(v: &mut FieldViolations, wait: Option<prost_types::Duration>) -> Duration {
    match wait {
        None => Duration::ZERO,
        Some(w) => Duration::try_from(w).unwrap_or_else(|_| {
            v.add("wait", "must be a non-negative duration");
            Duration::ZERO
        }),
    }
}

fn legs(v: &mut FieldViolations, side: &str, legs: Vec<pb::TradeLeg>) -> Vec<Leg> {
    legs.into_iter()
        .enumerate()
        .map(|(i, l)| {
            let amount = amount::parse_positive(&l.amount).unwrap_or_else(|e| {
                v.add(format!("{side}[{i}].amount"), e.to_string());
                Decimal::ONE
            });
            let price = if l.price.is_empty() {
                v.add(format!("{side}[{i}].price"), "is required");
                Decimal::ZERO
            } else {
                amount::parse(&l.price).unwrap_or_else(|e| {
                    v.add(format!("{side}[{i}].price"), e.to_string());
                    Decimal::ZERO
                })
            };
            Leg {
                asset: l.asset,
                amount,
                price,
            }
        })
        .collect()
}

/// A SubmitSettlementReport call: the report (every rule of
/// [`Report::check`]) and the wait it asked for.
pub fn submit(r: pb::SubmitSettlementReportRequest) -> Result<(Report, Duration), FieldViolations> {
    let mut v = FieldViolations::default();
    let eod_ms = match r.eod_time {
        None => {
            v.add("eod_time", "is required");
            0
        }
        Some(t) if !(0..1_000_000_000).contains(&t.nanos) || t.seconds < 0 => {
            v.add("eod_time", "must be a valid time after 1970");
            0
        }
        Some(t) => t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000),
    };
    let bought = legs(&mut v, "bought", r.bought);
    let sold = legs(&mut v, "sold", r.sold);
    let mut net = BTreeMap::new();
    if r.net_positions.is_empty() {
        v.add("net_positions", "at least one net position is required");
    }
    for (i, p) in r.net_positions.into_iter().enumerate() {
        match parse_net(&p.net) {
            Ok(n) => {
                if net.insert(p.asset.clone(), n).is_some() {
                    v.add(
                        format!("net_positions[{i}].asset"),
                        format!(
                            "{} appears twice: one net position per asset",
                            echo(&p.asset)
                        ),
                    );
                }
            }
            Err(e) => v.add(format!("net_positions[{i}].net"), e),
        }
    }
    let instructions = r.instructions.unwrap_or_default();
    let report = Report {
        report_id: r.report_id,
        uid: r.user_id,
        cycle_id: r.cycle_id,
        eod_ms,
        bought,
        sold,
        net,
        instructions: Instructions {
            deposit_address: instructions.deposit_address,
            withdrawal_address: instructions.withdrawal_address,
        },
        supersedes: r.supersedes,
    };
    let wait = wait(&mut v, r.wait);
    report.check(Names::Api, &mut v);
    v.into_result()?;
    Ok((report, wait))
}

/// A ConfirmSettlement call: (report_id, decision).
pub fn confirm(r: pb::ConfirmSettlementRequest) -> Result<(String, Decision), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("report_id", &r.report_id);
    let decision = match pb::SettlementOutcome::try_from(r.outcome) {
        Ok(pb::SettlementOutcome::Completed) => {
            if !r.reason.is_empty() {
                check_text(&mut v, "reason", &r.reason);
            }
            Decision::Complete
        }
        Ok(pb::SettlementOutcome::Failed) => {
            if r.reason.is_empty() {
                v.add("reason", "is required for FAILED");
            }
            check_text(&mut v, "reason", &r.reason);
            Decision::Fail(r.reason)
        }
        _ => {
            v.add(
                "outcome",
                "must be SETTLEMENT_OUTCOME_COMPLETED or SETTLEMENT_OUTCOME_FAILED",
            );
            Decision::Complete
        }
    };
    v.into_result()?;
    Ok((r.report_id, decision))
}

/// A DisputeSettlement call: (report_id, lines, reason). Whether each line
/// is in the report is checked against it ([`lines_in_report`]).
pub fn dispute(
    r: pb::DisputeSettlementRequest,
) -> Result<(String, Vec<DisputedLine>, String), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("report_id", &r.report_id);
    if r.reason.is_empty() {
        v.add("reason", "is required");
    }
    check_text(&mut v, "reason", &r.reason);
    let mut lines: Vec<DisputedLine> = Vec::new();
    let mut add = |v: &mut FieldViolations, field: String, line: DisputedLine| {
        if lines.iter().any(|l| l.asset == line.asset) {
            v.add(field, format!("{} is named twice", echo(&line.asset)));
        } else {
            lines.push(line);
        }
    };
    for (i, asset) in r.assets.into_iter().enumerate() {
        v.check_id(&format!("assets[{i}]"), &asset);
        let line = DisputedLine {
            asset,
            expected_net: None,
            reason: r.reason.clone(),
        };
        add(&mut v, format!("assets[{i}]"), line);
    }
    for (i, l) in r.lines.into_iter().enumerate() {
        v.check_id(&format!("lines[{i}].asset"), &l.asset);
        let expected_net = if l.expected_net.is_empty() {
            None
        } else {
            parse_net(&l.expected_net)
                .map_err(|e| v.add(format!("lines[{i}].expected_net"), e))
                .ok()
        };
        check_text(&mut v, &format!("lines[{i}].reason"), &l.reason);
        let line = DisputedLine {
            asset: l.asset,
            expected_net,
            reason: if l.reason.is_empty() {
                r.reason.clone()
            } else {
                l.reason
            },
        };
        add(&mut v, format!("lines[{i}].asset"), line);
    }
    if lines.is_empty() {
        v.add("lines", "name at least one disputed line (assets or lines)");
    }
    v.into_result()?;
    Ok((r.report_id, lines, r.reason))
}

/// INVALID_ARGUMENT unless every disputed line is one of `report`'s.
pub fn lines_in_report(lines: &[DisputedLine], report: &Report) -> Result<(), FieldViolations> {
    let mut v = FieldViolations::default();
    for (i, line) in lines.iter().enumerate() {
        if !report.net.contains_key(&line.asset) {
            v.add(
                format!("lines[{i}].asset"),
                format!(
                    "{} is not a line of report {}",
                    echo(&line.asset),
                    report.report_id
                ),
            );
        }
    }
    v.into_result()
}

/// A ListSettlementReports call: (filter, after, page size).
pub fn list(
    r: &pb::ListSettlementReportsRequest,
) -> Result<(ListFilter, Option<PageToken>, usize), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_optional_id("user_id", &r.user_id);
    v.check_optional_id("cycle_id", &r.cycle_id);
    if r.user_id.is_empty() && r.cycle_id.is_empty() {
        v.add("user_id", "user_id or cycle_id (or both) is required");
    }
    let size = v.page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    let token = if r.page_token.is_empty() {
        None
    } else {
        let token = page::parse_token(&r.page_token);
        if token.is_none() {
            v.add("page_token", "is not a next_page_token of this RPC");
        }
        token
    };
    v.into_result()?;
    Ok((
        ListFilter {
            uid: r.user_id.clone(),
            cycle_id: r.cycle_id.clone(),
        },
        token,
        size,
    ))
}

/// A WatchSettlements call: (resume cursor, filter).
pub fn watch(r: pb::WatchSettlementsRequest) -> Result<(String, Filter), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_optional_id("user_id", &r.user_id);
    v.check_optional_id("cycle_id", &r.cycle_id);
    v.into_result()?;
    let (user, cycle) = (r.user_id, r.cycle_id);
    let filter = Arc::new(move |e: &Entry| {
        (user.is_empty() || e.field("uid") == user)
            && (cycle.is_empty() || e.field("cycle_id") == cycle)
    });
    Ok((r.start_after_event_id, filter))
}

/// A CloseSettlementCycle call: (cycle_id, wait).
pub fn close(r: pb::CloseSettlementCycleRequest) -> Result<(String, Duration), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("cycle_id", &r.cycle_id);
    let wait = wait(&mut v, r.wait);
    v.into_result()?;
    Ok((r.cycle_id, wait))
}

// === domain -> proto ===

fn legs_to_proto(legs: &[Leg]) -> Vec<pb::TradeLeg> {
    legs.iter()
        .map(|l| pb::TradeLeg {
            asset: l.asset.clone(),
            amount: amount::format(l.amount),
            price: amount::format(l.price),
        })
        .collect()
}

fn nets_to_proto<'a>(
    nets: impl IntoIterator<Item = (&'a String, &'a Decimal)>,
) -> Vec<pb::NetPosition> {
    nets.into_iter()
        .map(|(asset, net)| pb::NetPosition {
            asset: asset.clone(),
            net: format_net(*net),
        })
        .collect()
}

fn status_to_proto(status: ReportStatus) -> pb::SettlementStatus {
    use pb::SettlementStatus as S;
    match status {
        ReportStatus::Submitted => S::Submitted,
        ReportStatus::Reported => S::Reported,
        ReportStatus::Completed => S::Completed,
        ReportStatus::Failed => S::Failed,
        ReportStatus::Disputed => S::Disputed,
        ReportStatus::Superseded => S::Superseded,
        ReportStatus::Refused => S::Refused,
    }
}

fn lines_to_proto(lines: &[DisputedLine]) -> Vec<pb::DisputedLine> {
    lines
        .iter()
        .map(|l| pb::DisputedLine {
            asset: l.asset.clone(),
            expected_net: l.expected_net.map(format_net).unwrap_or_default(),
            reason: l.reason.clone(),
        })
        .collect()
}

/// A report's record as the API shows it.
pub fn report_to_proto(r: &ReportRecord) -> pb::SettlementReport {
    let mut out = pb::SettlementReport {
        report_id: r.report_id.clone(),
        status: status_to_proto(r.status) as i32,
        reason: r.reason.clone(),
        disputed_assets: r.disputed.iter().map(|l| l.asset.clone()).collect(),
        disputed_lines: lines_to_proto(&r.disputed),
        applied: nets_to_proto(r.applied.iter().map(|(a, n)| (a, n))),
        superseded_by: r.superseded_by.clone(),
        reported_at: r.reported_ms.map(timestamp_ms),
        decided_at: r.decided_ms.map(timestamp_ms),
        ..Default::default()
    };
    if let Some(p) = &r.report {
        out.user_id.clone_from(&p.uid);
        out.cycle_id.clone_from(&p.cycle_id);
        out.eod_time = Some(timestamp_ms(p.eod_ms));
        out.bought = legs_to_proto(&p.bought);
        out.sold = legs_to_proto(&p.sold);
        out.net_positions = nets_to_proto(&p.net);
        out.instructions = Some(pb::SettlementInstructions {
            deposit_address: p.instructions.deposit_address.clone(),
            withdrawal_address: p.instructions.withdrawal_address.clone(),
        });
        out.supersedes.clone_from(&p.supersedes);
    }
    out
}

/// A delivery as the API shows it.
pub fn delivery_to_proto(d: super::exchange::Delivery) -> i32 {
    match d {
        super::exchange::Delivery::Pending => pb::Delivery::Pending as i32,
        super::exchange::Delivery::Recorded => pb::Delivery::Recorded as i32,
    }
}

/// A cycle as the API shows it.
pub fn cycle_to_proto(c: &CycleRecord) -> pb::SettlementCycle {
    use pb::CycleStatus as S;
    pb::SettlementCycle {
        cycle_id: c.cycle_id.clone(),
        status: match c.status {
            CycleStatus::Open => S::Open,
            CycleStatus::Closing => S::Closing,
            CycleStatus::Verified => S::Verified,
            CycleStatus::Mismatch => S::Mismatch,
            CycleStatus::Cosigned => S::Cosigned,
        } as i32,
        size: c.size,
        root: c.root.map(|r| r.to_vec()).unwrap_or_default(),
        checkpoint: c.checkpoint.clone(),
        origin: c.origin.clone(),
        reports: c.reports,
        undecided: c.undecided,
        reason: c.reason.clone(),
        closed_at: c.closed_ms.map(timestamp_ms),
        cosigned_at: c.cosigned_ms.map(timestamp_ms),
    }
}

/// A proof as the API shows it.
pub fn proof_to_proto(
    record: &ReportRecord,
    cycle: &CycleRecord,
    leaf: Vec<u8>,
    leaf_hash: Hash,
    proof: Proof,
) -> pb::SettlementProof {
    pb::SettlementProof {
        report_id: record.report_id.clone(),
        cycle_id: cycle.cycle_id.clone(),
        leaf: String::from_utf8(leaf).unwrap_or_default(),
        leaf_hash: leaf_hash.to_vec(),
        index: proof.index,
        size: proof.size,
        audit_path: proof.path.iter().map(|h| h.to_vec()).collect(),
        checkpoint: cycle.checkpoint.clone(),
        tlog_proof: proof.tlog_proof,
    }
}

/// An event as the API shows it: the report (complete in REPORTED events,
/// the verdict's fields in the others) or the cycle.
pub fn event_to_proto(e: &SettlementEvent) -> pb::SettlementEvent {
    use pb::SettlementEventType as T;
    let f = &e.record;
    let (kind, status) = match e.kind {
        EventKind::Reported => (T::Reported, Some(ReportStatus::Reported)),
        EventKind::Completed => (T::Completed, Some(ReportStatus::Completed)),
        EventKind::Failed => (T::Failed, Some(ReportStatus::Failed)),
        EventKind::Disputed => (T::Disputed, Some(ReportStatus::Disputed)),
        EventKind::Superseded => (T::Superseded, Some(ReportStatus::Superseded)),
        EventKind::Refused => (T::Refused, Some(ReportStatus::Refused)),
        EventKind::CycleVerified => (T::CycleVerified, None),
        EventKind::CycleMismatch => (T::CycleMismatch, None),
        EventKind::CycleCosigned => (T::CycleCosigned, None),
        EventKind::Anomaly => (T::Anomaly, None),
        EventKind::Unknown => (T::Unspecified, None),
    };
    let report = status.map(|status| {
        // The event's fields read as a record of the report.
        let mut pairs: Vec<(String, String)> = f
            .pairs()
            .filter(|(k, _)| !matches!(*k, b"type" | b"status"))
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        pairs.push(("status".into(), status.as_str().into()));
        let fields = crate::streams::Fields::from_pairs(pairs);
        let record = ReportRecord::parse(&fields).ok().flatten();
        let mut out = record.as_ref().map(report_to_proto).unwrap_or_default();
        out.report_id = f.text("report_id").to_string();
        out.user_id = f.text("uid").to_string();
        out.cycle_id = f.text("cycle_id").to_string();
        out.status = status_to_proto(status) as i32;
        if status != ReportStatus::Reported {
            out.decided_at = e.at_ms.map(timestamp_ms);
        }
        out
    });
    let cycle = e.kind.is_cycle().then(|| pb::SettlementCycle {
        cycle_id: f.text("cycle_id").to_string(),
        status: match e.kind {
            EventKind::CycleVerified => pb::CycleStatus::Verified,
            EventKind::CycleMismatch => pb::CycleStatus::Mismatch,
            _ => pb::CycleStatus::Cosigned,
        } as i32,
        size: f.text("size").parse().unwrap_or(0),
        reason: f.text("reason").to_string(),
        ..Default::default()
    });
    pb::SettlementEvent {
        event_id: e.event_id.clone(),
        r#type: kind as i32,
        report,
        occurred_at: e.at_ms.map(timestamp_ms),
        cycle,
        reason: f.text("reason").to_string(),
    }
}
