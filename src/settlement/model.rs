//! Settlement reports, verdicts and cycles as the domain sees them, and the
//! one place their rules live: a report is checked here whether it comes
//! through SubmitSettlementReport or raw from R (the exchange is another
//! company; [`Incoming::parse`] reads its entries field by field, bounded),
//! and its standard `data` JSON, its digest and its Merkle leaf are made
//! here, so both sides of the link compute the same bytes.

use std::collections::BTreeMap;

use ring::digest::{SHA256, digest};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use crate::{
    amount,
    crypto::{jcs, merkle::Hash},
    streams::{Entry, Fields},
    time::datetime,
    validate::{FieldViolations, ID_RULE, cut, echo, has_invisible, is_valid_id},
};

/// Most legs per side, and net positions, in one report.
pub const MAX_LINES: usize = 256;
/// Longest address, dispute reason or verdict reason accepted.
pub const MAX_TEXT_LEN: usize = 1024;
/// Longest refusal or anomaly reason recorded (it quotes what was seen).
const MAX_REASON_LEN: usize = 1024;

/// One side of a user's trading in an asset during a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// Asset symbol.
    pub asset: String,
    /// Positive amount bought or sold.
    pub amount: Decimal,
    /// Average price; display and audit only, not checked against anything.
    pub price: Decimal,
}

/// Where assets move to settle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instructions {
    /// Where the user deposits what they owe.
    pub deposit_address: String,
    /// Where the user receives what they are owed.
    pub withdrawal_address: String,
}

/// What an exchange reports for one user and cycle: the standard report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Unique id; the idempotency key.
    pub report_id: String,
    /// The user.
    pub uid: String,
    /// The cycle.
    pub cycle_id: String,
    /// End of the trading day, unix ms.
    pub eod_ms: i64,
    /// Bought, one leg per asset.
    pub bought: Vec<Leg>,
    /// Sold, one leg per asset.
    pub sold: Vec<Leg>,
    /// Net change per asset (bought minus sold), by asset.
    pub net: BTreeMap<String, Decimal>,
    /// Where assets move.
    pub instructions: Instructions,
    /// The disputed report this one corrects ("" if none).
    pub supersedes: String,
}

/// How a report's fields are named in its violations: as the gRPC request
/// names them, or as the standard `data` JSON does.
#[derive(Clone, Copy)]
pub enum Names {
    /// `bought[0].amount`, `net_positions[1].net`.
    Api,
    /// `data.assets.bought[0].amount`, `data.net_position.USDT`.
    Wire,
}

impl Names {
    fn leg(self, side: &str, i: usize, field: &str) -> String {
        match self {
            Self::Api => format!("{side}[{i}].{field}"),
            Self::Wire => {
                let field = if field == "asset" { "asset_id" } else { field };
                format!("data.assets.{side}[{i}].{field}")
            }
        }
    }

    fn net(self, asset: &str) -> String {
        match self {
            Self::Api => format!("net_positions[{asset}]"),
            Self::Wire => format!("data.net_position.{asset}"),
        }
    }

    fn field(self, api: &str, wire: &str) -> String {
        match self {
            Self::Api => api.to_string(),
            Self::Wire => wire.to_string(),
        }
    }
}

/// Parses a net position: a signed decimal (`+0.5`, `-67500.00`), or zero
/// with or without a sign.
pub fn parse_net(text: &str) -> Result<Decimal, String> {
    let value = amount::parse(text).map_err(|e| e.to_string())?;
    if value.is_zero() || text.starts_with(['+', '-']) {
        Ok(value)
    } else {
        Err("must carry its sign, e.g. +0.5 or -67500.00".into())
    }
}

/// A net position as the protocol writes it: `+0.5`, `-67500`, `0`.
pub fn format_net(value: Decimal) -> String {
    if value.is_zero() {
        "0".into()
    } else {
        amount::format_change(value)
    }
}

/// Checks an address or reason: at most [`MAX_TEXT_LEN`] bytes, no control
/// or invisible formatting characters (they would hide what a person sees).
pub fn check_text(v: &mut FieldViolations, field: &str, text: &str) {
    if text.len() > MAX_TEXT_LEN || text.chars().any(char::is_control) || has_invisible(text) {
        v.add(
            field,
            format!(
                "must be at most {MAX_TEXT_LEN} bytes, without control or invisible formatting characters"
            ),
        );
    }
}

impl Report {
    /// Every rule of a report, each broken one a violation named as
    /// `names` says: ids; legs present, at most [`MAX_LINES`] a side, one
    /// per asset and side, positive amounts, prices at least zero; a net
    /// position for every asset of the legs and none other; and each net
    /// equal, exactly, to that asset's bought minus sold.
    pub fn check(&self, names: Names, v: &mut FieldViolations) {
        v.check_id(&names.field("report_id", "report_id"), &self.report_id);
        v.check_id(&names.field("user_id", "data.user_id"), &self.uid);
        v.check_id(&names.field("cycle_id", "data.cycle_id"), &self.cycle_id);
        v.check_optional_id(&names.field("supersedes", "supersedes"), &self.supersedes);
        if !self.supersedes.is_empty() && self.supersedes == self.report_id {
            v.add(
                names.field("supersedes", "supersedes"),
                "a report cannot supersede itself",
            );
        }
        check_text(
            v,
            &names.field(
                "instructions.deposit_address",
                "data.settlement_instructions.deposit_address",
            ),
            &self.instructions.deposit_address,
        );
        check_text(
            v,
            &names.field(
                "instructions.withdrawal_address",
                "data.settlement_instructions.withdrawal_address",
            ),
            &self.instructions.withdrawal_address,
        );
        if self.bought.is_empty() && self.sold.is_empty() {
            v.add(
                names.field("bought", "data.assets"),
                "a report needs at least one bought or sold leg",
            );
        }
        let mut legs: BTreeMap<&str, Decimal> = BTreeMap::new();
        for (side, list, sign) in [
            ("bought", &self.bought, Decimal::ONE),
            ("sold", &self.sold, Decimal::NEGATIVE_ONE),
        ] {
            if list.len() > MAX_LINES {
                v.add(
                    names.field(side, &format!("data.assets.{side}")),
                    format!("at most {MAX_LINES} legs"),
                );
                continue;
            }
            let mut seen = std::collections::HashSet::new();
            for (i, leg) in list.iter().enumerate() {
                if !is_valid_id(&leg.asset) {
                    v.add(names.leg(side, i, "asset"), ID_RULE);
                    continue;
                }
                if !seen.insert(leg.asset.as_str()) {
                    v.add(
                        names.leg(side, i, "asset"),
                        format!(
                            "{} appears twice in {side}: one leg per asset",
                            echo(&leg.asset)
                        ),
                    );
                    continue;
                }
                if leg.amount <= Decimal::ZERO {
                    v.add(names.leg(side, i, "amount"), "must be greater than zero");
                }
                if leg.price < Decimal::ZERO {
                    v.add(names.leg(side, i, "price"), "must not be negative");
                }
                let sum = legs.entry(&leg.asset).or_default();
                match amount::add(*sum, sign * leg.amount) {
                    Ok(total) => *sum = total,
                    Err(e) => v.add(names.leg(side, i, "amount"), e.to_string()),
                }
            }
        }
        if self.net.len() > MAX_LINES {
            v.add(
                names.field("net_positions", "data.net_position"),
                format!("at most {MAX_LINES} net positions"),
            );
            return;
        }
        for (asset, net) in &self.net {
            if !is_valid_id(asset) {
                v.add(names.net(&cut(asset, 64)), ID_RULE);
                continue;
            }
            match legs.get(asset.as_str()) {
                None => v.add(
                    names.net(asset),
                    format!("{asset} is in no bought or sold leg"),
                ),
                Some(expected) if expected != net => v.add(
                    names.net(asset),
                    format!(
                        "the net position of {asset} is {} but bought minus sold is {}",
                        format_net(*net),
                        format_net(*expected)
                    ),
                ),
                Some(_) => {}
            }
        }
        for asset in legs.keys() {
            if !self.net.contains_key(*asset) {
                v.add(
                    names.net(asset),
                    format!("{asset} has legs but no net position"),
                );
            }
        }
    }

    /// The standard `data` JSON, amounts in canonical form.
    pub fn data_json(&self) -> Value {
        let legs = |list: &[Leg]| -> Value {
            list.iter()
                .map(|l| {
                    json!({
                        "asset_id": l.asset,
                        "amount": amount::format(l.amount),
                        "price": amount::format(l.price),
                    })
                })
                .collect()
        };
        json!({
            "user_id": self.uid,
            "cycle_id": self.cycle_id,
            "eod_time": datetime::format_xsd(self.eod_ms),
            "assets": { "bought": legs(&self.bought), "sold": legs(&self.sold) },
            "net_position": self.net_json(),
            "settlement_instructions": {
                "deposit_address": self.instructions.deposit_address,
                "withdrawal_address": self.instructions.withdrawal_address,
            },
        })
    }

    fn net_json(&self) -> Value {
        Value::Object(
            self.net
                .iter()
                .map(|(asset, net)| (asset.clone(), Value::String(format_net(*net))))
                .collect(),
        )
    }

    /// What identifies the report's content: SHA-256 (hex) of the RFC 8785
    /// form of its id, `data` and `supersedes`. The same report, however
    /// its amounts were written (`10.0`, `10`), has one digest.
    pub fn digest(&self) -> String {
        let doc = json!({
            "report_id": self.report_id,
            "data": self.data_json(),
            "supersedes": self.supersedes,
        });
        // Our own document of strings and objects: JCS cannot fail on it.
        let bytes = jcs::canonicalize(&doc).unwrap_or_default();
        hex(digest(&SHA256, &bytes).as_ref())
    }

    /// The report's Merkle leaf: the RFC 8785 canonical JSON of its cycle,
    /// user, id, net positions (strings) and `salt`.
    pub fn leaf(&self, salt: &str) -> Vec<u8> {
        let doc = json!({
            "cycle_id": self.cycle_id,
            "user_id": self.uid,
            "report_id": self.report_id,
            "net_position": self.net_json(),
            "salt": salt,
        });
        jcs::canonicalize(&doc).unwrap_or_default()
    }

    /// Reads the standard `data` JSON (our own record's, or an entry's):
    /// every field typed and bounded, amounts as strings only (a JSON
    /// number is a float to most parsers, and money is never one). The
    /// rules are [`Report::check`]'s, applied after.
    pub fn from_data(
        report_id: &str,
        supersedes: &str,
        data: &Value,
        v: &mut FieldViolations,
    ) -> Option<Self> {
        let Some(obj) = data.as_object() else {
            v.add("data", "must be a JSON object");
            return None;
        };
        let text = |v: &mut FieldViolations, o: &Map<String, Value>, key: &str, at: &str| match o
            .get(key)
        {
            Some(Value::String(s)) => s.clone(),
            None => {
                v.add(at, "is required");
                String::new()
            }
            Some(_) => {
                v.add(at, "must be a string");
                String::new()
            }
        };
        let uid = text(v, obj, "user_id", "data.user_id");
        let cycle_id = text(v, obj, "cycle_id", "data.cycle_id");
        let eod = text(v, obj, "eod_time", "data.eod_time");
        let eod_ms = if eod.is_empty() {
            0
        } else {
            datetime::parse_iso8601(&eod).unwrap_or_else(|why| {
                v.add("data.eod_time", why);
                0
            })
        };
        let decimal = |v: &mut FieldViolations, o: &Map<String, Value>, key: &str, at: &str| {
            let t = text(v, o, key, at);
            if t.is_empty() {
                return Decimal::ZERO;
            }
            amount::parse(&t).unwrap_or_else(|e| {
                v.add(at, e.to_string());
                Decimal::ZERO
            })
        };
        let mut sides = [Vec::new(), Vec::new()];
        match obj.get("assets") {
            Some(Value::Object(assets)) => {
                for (n, side) in ["bought", "sold"].iter().enumerate() {
                    match assets.get(*side) {
                        None | Some(Value::Null) => {}
                        Some(Value::Array(list)) if list.len() > MAX_LINES => v.add(
                            format!("data.assets.{side}"),
                            format!("at most {MAX_LINES} legs"),
                        ),
                        Some(Value::Array(list)) => {
                            for (i, leg) in list.iter().enumerate() {
                                let at = |f: &str| format!("data.assets.{side}[{i}].{f}");
                                let Some(leg) = leg.as_object() else {
                                    v.add(format!("data.assets.{side}[{i}]"), "must be an object");
                                    continue;
                                };
                                sides[n].push(Leg {
                                    asset: text(v, leg, "asset_id", &at("asset_id")),
                                    amount: decimal(v, leg, "amount", &at("amount")),
                                    price: decimal(v, leg, "price", &at("price")),
                                });
                            }
                        }
                        Some(_) => v.add(format!("data.assets.{side}"), "must be an array"),
                    }
                }
            }
            None => v.add("data.assets", "is required"),
            Some(_) => v.add("data.assets", "must be an object"),
        }
        let mut net = BTreeMap::new();
        match obj.get("net_position") {
            Some(Value::Object(map)) if map.len() > MAX_LINES => v.add(
                "data.net_position",
                format!("at most {MAX_LINES} net positions"),
            ),
            Some(Value::Object(map)) => {
                for (asset, value) in map {
                    let at = format!("data.net_position.{}", cut(asset, 64));
                    match value {
                        Value::String(t) => match parse_net(t) {
                            Ok(n) => {
                                net.insert(asset.clone(), n);
                            }
                            Err(e) => v.add(at, e),
                        },
                        _ => v.add(at, "must be a decimal string"),
                    }
                }
            }
            None => v.add("data.net_position", "is required"),
            Some(_) => v.add("data.net_position", "must be an object"),
        }
        let mut instructions = Instructions::default();
        match obj.get("settlement_instructions") {
            None | Some(Value::Null) => {}
            Some(Value::Object(i)) => {
                for (key, slot) in [
                    ("deposit_address", &mut instructions.deposit_address),
                    ("withdrawal_address", &mut instructions.withdrawal_address),
                ] {
                    match i.get(key) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) => slot.clone_from(s),
                        Some(_) => v.add(
                            format!("data.settlement_instructions.{key}"),
                            "must be a string",
                        ),
                    }
                }
            }
            Some(_) => v.add("data.settlement_instructions", "must be an object"),
        }
        let [bought, sold] = sides;
        Some(Self {
            report_id: report_id.to_string(),
            uid,
            cycle_id,
            eod_ms,
            bought,
            sold,
            net,
            instructions,
            supersedes: supersedes.to_string(),
        })
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A report entry read from R, after every check: what the WSP records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The report.
    pub report: Report,
    /// Its leaf salt, 64 hex characters ("" if the exchange sent none).
    pub salt: String,
    /// Its standard `timestamp`, unix seconds.
    pub timestamp: u64,
}

/// A report entry the WSP does not record as a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The report id it names, if a valid one (then the refusal is recorded
    /// under it, visible to the exchange; else only as an event).
    pub report_id: String,
    /// What is wrong, bounded, quoting what was seen.
    pub reason: String,
    /// The digest of what it holds, when it could be read that far.
    pub digest: String,
    /// The user it names, if a valid id.
    pub uid: String,
    /// The cycle it names, if a valid id.
    pub cycle_id: String,
}

impl Refusal {
    /// Something on the stream that names no report: recorded as an
    /// anomaly event.
    pub fn anomaly(reason: impl Into<String>) -> Self {
        Self::new("", reason)
    }

    fn new(report_id: &str, reason: impl Into<String>) -> Self {
        Self {
            report_id: if is_valid_id(report_id) {
                report_id.to_string()
            } else {
                String::new()
            },
            reason: cut(&reason.into(), MAX_REASON_LEN),
            digest: String::new(),
            uid: String::new(),
            cycle_id: String::new(),
        }
    }
}

impl Incoming {
    /// Reads one entry of the report stream, as the other party wrote it:
    /// at most `max_bytes` in all; `type` = `settlement`; a valid
    /// `report_id`; `timestamp` in unix seconds; `data` the standard JSON
    /// by every rule of [`Report::check`]; our extensions `salt` (64 hex),
    /// `supersedes` (an id) and `v` (`1`) optional.
    pub fn parse(entry: &Entry, max_bytes: usize) -> Result<Self, Refusal> {
        let f = &entry.fields;
        let report_id = f.get("report_id").unwrap_or_default();
        if f.byte_len() > max_bytes {
            return Err(Refusal::new(
                report_id,
                format!(
                    "the entry is {} bytes, more than the {max_bytes} a report may have: {}",
                    f.byte_len(),
                    f.describe(256)
                ),
            ));
        }
        if !is_valid_id(report_id) {
            return Err(Refusal::new(
                "",
                format!("report_id: {ID_RULE}: {}", f.describe(256)),
            ));
        }
        let shape = |why: String| Refusal::new(report_id, why);
        // Every name and value text, no name twice: Redis keeps every pair,
        // and a reader that picks another of a repeated name (most take the
        // last) would see another report than the one recorded here.
        let mut names = std::collections::HashSet::new();
        for (name, value) in f.pairs() {
            let shown =
                || String::from_utf8_lossy(&name.escape_ascii().collect::<Vec<u8>>()).into_owned();
            let why = if std::str::from_utf8(name).is_err() || std::str::from_utf8(value).is_err() {
                format!("field {} is not UTF-8 text", shown())
            } else if !names.insert(name) {
                format!("field {} appears more than once", shown())
            } else {
                continue;
            };
            let id = if name == b"report_id" { "" } else { report_id };
            return Err(Refusal::new(id, format!("{why}: {}", f.describe(256))));
        }
        match f.get("type") {
            Some("settlement") => {}
            _ => {
                return Err(shape(format!(
                    "type must be \"settlement\": {}",
                    f.describe(256)
                )));
            }
        }
        let timestamp = f
            .get("timestamp")
            .filter(|t| !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                shape(format!(
                    "timestamp must be unix seconds, got {}",
                    echo(f.text("timestamp"))
                ))
            })?;
        if let Some(version) = f.get("v")
            && version != "1"
        {
            return Err(shape(format!(
                "v {} is not a version this WSP reads",
                echo(version)
            )));
        }
        let salt = f.text("salt");
        if f.raw("salt").is_some()
            && !(salt.len() == 64 && salt.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(shape(format!(
                "salt must be 32 bytes in hex, got {}",
                echo(salt)
            )));
        }
        let supersedes = f.text("supersedes");
        if f.raw("supersedes").is_some() && !supersedes.is_empty() && !is_valid_id(supersedes) {
            return Err(shape(format!("supersedes: {ID_RULE}")));
        }
        let data: Value = match f.get("data").map(serde_json::from_str) {
            Some(Ok(data)) => data,
            Some(Err(e)) => return Err(shape(format!("data is not JSON: {e}"))),
            None => return Err(shape("data is missing or not UTF-8 text".into())),
        };
        let mut v = FieldViolations::default();
        let report = Report::from_data(report_id, supersedes, &data, &mut v);
        let refusal = |v: FieldViolations, report: Option<&Report>| {
            let mut r = shape(v.to_string());
            if let Some(report) = report {
                r.digest = report.digest();
                if is_valid_id(&report.uid) {
                    r.uid.clone_from(&report.uid);
                }
                if is_valid_id(&report.cycle_id) {
                    r.cycle_id.clone_from(&report.cycle_id);
                }
            }
            r
        };
        let Some(report) = report else {
            return Err(refusal(v, None));
        };
        report.check(Names::Wire, &mut v);
        if !v.is_empty() {
            return Err(refusal(v, Some(&report)));
        }
        Ok(Self {
            report,
            salt: salt.to_ascii_lowercase(),
            timestamp,
        })
    }

    /// The fields of the standard entry for `report` (what our exchange
    /// XADDs), in the protocol page's order, with our extensions.
    pub fn entry_fields(report: &Report, salt: &str, now_s: u64) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("type", "settlement".to_string()),
            ("report_id", report.report_id.clone()),
            ("timestamp", now_s.to_string()),
            ("data", report.data_json().to_string()),
            ("salt", salt.to_string()),
        ];
        if !report.supersedes.is_empty() {
            fields.push(("supersedes", report.supersedes.clone()));
        }
        fields.push(("v", "1".to_string()));
        fields
    }
}

/// Where a report stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStatus {
    /// Published on R, not recorded by the WSP yet (exchange side only).
    Submitted,
    /// Recorded by the WSP; awaiting a verdict.
    Reported,
    /// Applied.
    Completed,
    /// Could not settle; nothing applied.
    Failed,
    /// Lines disputed; nothing applied.
    Disputed,
    /// Replaced by a corrected report.
    Superseded,
    /// Not recorded as a report (malformed, unknown user, closed cycle).
    Refused,
}

impl ReportStatus {
    /// The record's `status` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Reported => "reported",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Disputed => "disputed",
            Self::Superseded => "superseded",
            Self::Refused => "refused",
        }
    }

    /// From the record's `status` field.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "submitted" => Self::Submitted,
            "reported" => Self::Reported,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "disputed" => Self::Disputed,
            "superseded" => Self::Superseded,
            "refused" => Self::Refused,
            _ => return None,
        })
    }
}

/// One disputed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputedLine {
    /// Its asset.
    pub asset: String,
    /// The net the WSP expected, if it says.
    pub expected_net: Option<Decimal>,
    /// Why.
    pub reason: String,
}

impl DisputedLine {
    /// As the record and the confirmation's `details` write it.
    pub fn to_json(&self) -> Value {
        json!({
            "asset": self.asset,
            "expected_net": self.expected_net.map(format_net).unwrap_or_default(),
            "reason": self.reason,
        })
    }

    fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            asset: value.get("asset")?.as_str()?.to_string(),
            expected_net: value
                .get("expected_net")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .and_then(|s| parse_net(s).ok()),
            reason: value
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }
}

/// The WSP's record of a report (`mirror:settlement:report:<id>`), or the
/// exchange's of one it published and the WSP has not recorded yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    /// The report; `None` for a refused entry whose data could not be read.
    pub report: Option<Report>,
    /// Its id.
    pub report_id: String,
    /// Where it stands.
    pub status: ReportStatus,
    /// Why it FAILED, was DISPUTED or REFUSED.
    pub reason: String,
    /// The disputed lines.
    pub disputed: Vec<DisputedLine>,
    /// What COMPLETED applied, per asset.
    pub applied: Vec<(String, Decimal)>,
    /// The report that corrected this one.
    pub superseded_by: String,
    /// Its leaf salt.
    pub salt: String,
    /// Its content digest ([`Report::digest`]).
    pub digest: String,
    /// Unix ms it was recorded (or published, while SUBMITTED).
    pub reported_ms: Option<i64>,
    /// Unix ms of the verdict.
    pub decided_ms: Option<i64>,
}

impl ReportRecord {
    /// Parses a report hash (ours: a field out of shape is a corruption,
    /// said by the caller); `None` if the hash is empty.
    pub fn parse(f: &Fields) -> Result<Option<Self>, String> {
        if f.is_empty() {
            return Ok(None);
        }
        let status = ReportStatus::parse(f.text("status"))
            .ok_or_else(|| format!("status {}", echo(f.text("status"))))?;
        let report = match f.get("data").filter(|d| !d.is_empty()) {
            None => None,
            Some(data) => {
                let data: Value = serde_json::from_str(data).map_err(|e| format!("data: {e}"))?;
                let mut v = FieldViolations::default();
                let report =
                    Report::from_data(f.text("report_id"), f.text("supersedes"), &data, &mut v);
                if !v.is_empty() && status != ReportStatus::Refused {
                    return Err(format!("data: {v}"));
                }
                report
            }
        };
        let json_list = |name: &str| -> Vec<Value> {
            f.get(name)
                .filter(|t| !t.is_empty())
                .and_then(|t| serde_json::from_str::<Vec<Value>>(t).ok())
                .unwrap_or_default()
        };
        Ok(Some(Self {
            report,
            report_id: f.text("report_id").to_string(),
            status,
            reason: f.text("reason").to_string(),
            disputed: json_list("disputed")
                .iter()
                .filter_map(DisputedLine::from_json)
                .collect(),
            applied: json_list("applied")
                .iter()
                .filter_map(|pair| {
                    let asset = pair.get(0)?.as_str()?;
                    let net = parse_net(pair.get(1)?.as_str()?).ok()?;
                    Some((asset.to_string(), net))
                })
                .collect(),
            superseded_by: f.text("superseded_by").to_string(),
            salt: f.text("salt").to_string(),
            digest: f.text("digest").to_string(),
            reported_ms: f.text("reported_ms").parse().ok(),
            decided_ms: f.text("decided_ms").parse().ok(),
        }))
    }
}

/// Where a cycle stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleStatus {
    /// Reports are being recorded.
    Open,
    /// The exchange published its summary; the WSP has not recorded it.
    Closing,
    /// Closed, root and signature verified by the WSP.
    Verified,
    /// Closed, but not what the WSP recorded.
    Mismatch,
    /// Verified, every report decided, countersigned.
    Cosigned,
}

impl CycleStatus {
    /// The record's `status` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closing => "closing",
            Self::Verified => "verified",
            Self::Mismatch => "mismatch",
            Self::Cosigned => "cosigned",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "closing" => Self::Closing,
            "verified" => Self::Verified,
            "mismatch" => Self::Mismatch,
            "cosigned" => Self::Cosigned,
            _ => Self::Open,
        }
    }

    /// True once the WSP recorded the cycle's close.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Verified | Self::Mismatch | Self::Cosigned)
    }
}

/// A cycle (`mirror:settlement:cycle:<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleRecord {
    /// The cycle.
    pub cycle_id: String,
    /// Where it stands.
    pub status: CycleStatus,
    /// Leaves in the tree.
    pub size: u64,
    /// The tree's root, once closed.
    pub root: Option<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: String,
    /// The checkpoint's origin line.
    pub origin: String,
    /// Reports recorded in it.
    pub reports: u64,
    /// Of those, still REPORTED.
    pub undecided: u64,
    /// Why MISMATCH.
    pub reason: String,
    /// Unix ms the close was recorded.
    pub closed_ms: Option<i64>,
    /// Unix ms of the countersignature.
    pub cosigned_ms: Option<i64>,
}

impl CycleRecord {
    /// Parses a cycle hash; `None` if empty.
    pub fn parse(cycle_id: &str, f: &Fields) -> Option<Self> {
        if f.is_empty() {
            return None;
        }
        let root = f.get("root").and_then(|r| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(r)
                .ok()
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
        });
        Some(Self {
            cycle_id: cycle_id.to_string(),
            status: CycleStatus::parse(f.text("status")),
            size: f.text("size").parse().unwrap_or(0),
            root,
            checkpoint: f.text("checkpoint").to_string(),
            origin: f.text("origin").to_string(),
            reports: f.text("reports").parse().unwrap_or(0),
            undecided: f.text("undecided").parse().unwrap_or(0),
            reason: f.text("reason").to_string(),
            closed_ms: f.text("closed_ms").parse().ok(),
            cosigned_ms: f.text("cosigned_ms").parse().ok(),
        })
    }
}

/// The kind of a settlement event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A report was recorded.
    Reported,
    /// Applied.
    Completed,
    /// Failed.
    Failed,
    /// Disputed.
    Disputed,
    /// Replaced by a corrected report.
    Superseded,
    /// Refused.
    Refused,
    /// A cycle closed and verified.
    CycleVerified,
    /// A cycle closed and did not verify.
    CycleMismatch,
    /// A cycle countersigned.
    CycleCosigned,
    /// Something on R that is neither a report nor a summary.
    Anomaly,
    /// A type this version does not know.
    Unknown,
}

impl EventKind {
    fn parse(text: &str) -> Self {
        match text {
            "reported" => Self::Reported,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "disputed" => Self::Disputed,
            "superseded" => Self::Superseded,
            "refused" => Self::Refused,
            "cycle_verified" => Self::CycleVerified,
            "cycle_mismatch" => Self::CycleMismatch,
            "cycle_cosigned" => Self::CycleCosigned,
            "anomaly" => Self::Anomaly,
            _ => Self::Unknown,
        }
    }

    /// True for the events of a cycle.
    pub fn is_cycle(self) -> bool {
        matches!(
            self,
            Self::CycleVerified | Self::CycleMismatch | Self::CycleCosigned
        )
    }
}

/// One entry of the settlement event log. A REPORTED event carries the
/// report's `data`; verdict events carry the verdict's fields (the record
/// has the rest), so the log stays bounded by the report size limit.
#[derive(Debug, Clone, PartialEq)]
pub struct SettlementEvent {
    /// The entry id.
    pub event_id: String,
    /// What happened.
    pub kind: EventKind,
    /// The report's fields as a record, for report events.
    pub record: Fields,
    /// Unix ms.
    pub at_ms: Option<i64>,
}

impl SettlementEvent {
    /// Parses an event log entry.
    pub fn parse(entry: &Entry) -> Self {
        Self {
            event_id: entry.id.to_string(),
            kind: EventKind::parse(entry.field("type")),
            record: entry.fields.clone(),
            at_ms: entry.field("at_ms").parse().ok(),
        }
    }

    /// True for the events a submitting exchange waits for: the WSP
    /// recorded (or refused) a report.
    pub fn is_recorded(entry: &Entry) -> bool {
        matches!(entry.field("type"), "reported" | "refused")
    }

    /// True for the events a closing exchange waits for.
    pub fn is_cycle_recorded(entry: &Entry) -> bool {
        matches!(entry.field("type"), "cycle_verified" | "cycle_mismatch")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::StreamId;

    fn d(text: &str) -> Decimal {
        amount::parse(text).expect("decimal")
    }

    /// The protocol page's worked example.
    pub(crate) fn worked_example() -> Report {
        Report {
            report_id: "rep-1".into(),
            uid: "alice".into(),
            cycle_id: "2025-04-04".into(),
            eod_ms: datetime::parse_iso8601("2025-04-04T17:00:00Z").expect("time"),
            bought: vec![
                Leg {
                    asset: "BTC".into(),
                    amount: d("0.5"),
                    price: d("65000.00"),
                },
                Leg {
                    asset: "ETH".into(),
                    amount: d("10.0"),
                    price: d("3500.00"),
                },
            ],
            sold: vec![Leg {
                asset: "USDT".into(),
                amount: d("67500.00"),
                price: d("1.00"),
            }],
            net: [("BTC", "+0.5"), ("ETH", "+10.0"), ("USDT", "-67500.00")]
                .into_iter()
                .map(|(a, n)| (a.to_string(), parse_net(n).expect("net")))
                .collect(),
            instructions: Instructions {
                deposit_address: "0xdeposit".into(),
                withdrawal_address: "0xwithdraw".into(),
            },
            supersedes: String::new(),
        }
    }

    #[test]
    fn the_worked_example_balances_and_a_wrong_net_is_named() {
        let mut v = FieldViolations::default();
        worked_example().check(Names::Api, &mut v);
        assert!(v.is_empty(), "{v}");
        let mut wrong = worked_example();
        wrong.net.insert("USDT".into(), d("-67000"));
        let mut v = FieldViolations::default();
        wrong.check(Names::Api, &mut v);
        let text = v.to_string();
        assert!(
            text.contains("net_positions[USDT]") && text.contains("-67500"),
            "{text}"
        );
    }

    #[test]
    fn the_entry_our_exchange_writes_is_read_back_identically() {
        let report = worked_example();
        let salt = "ab".repeat(32);
        let fields = Incoming::entry_fields(&report, &salt, 1_743_786_000);
        let entry = Entry {
            id: StreamId::default(),
            fields: Fields::from_pairs(fields),
        };
        let incoming = Incoming::parse(&entry, 64 * 1024).expect("valid");
        // Canonical amounts: the same report, the same digest and leaf.
        assert_eq!(incoming.report.digest(), report.digest());
        assert_eq!(incoming.report.leaf(&salt), report.leaf(&salt));
        assert_eq!(
            String::from_utf8(report.leaf("00")).expect("utf8"),
            r#"{"cycle_id":"2025-04-04","net_position":{"BTC":"+0.5","ETH":"+10","USDT":"-67500"},"report_id":"rep-1","salt":"00","user_id":"alice"}"#
        );
        assert_eq!(
            report.data_json()["eod_time"],
            Value::String("2025-04-04T17:00:00Z".into())
        );
    }

    #[test]
    fn hostile_entries_are_refused_with_a_reason_never_a_panic() {
        let base = Incoming::entry_fields(&worked_example(), &"cd".repeat(32), 1);
        let with = |name: &str, value: &str| {
            let mut pairs: Vec<(String, String)> = base
                .iter()
                .filter(|(n, _)| *n != name)
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect();
            pairs.push((name.to_string(), value.to_string()));
            Entry {
                id: StreamId::default(),
                fields: Fields::from_pairs(pairs),
            }
        };
        let cases = [
            ("type", "credit", "type must be"),
            ("report_id", "a b", "report_id"),
            ("timestamp", "soon", "timestamp"),
            ("salt", "xyz", "salt"),
            ("data", "{not json", "not JSON"),
            ("data", "[]", "JSON object"),
            (
                "data",
                r#"{"user_id":"u","cycle_id":"c","eod_time":"2025-04-04T17:00:00Z","assets":{"bought":[{"asset_id":"BTC","amount":0.5,"price":"1"}]},"net_position":{"BTC":"+0.5"}}"#,
                "must be a string",
            ),
            (
                "data",
                r#"{"user_id":"u","cycle_id":"c","eod_time":"2025-04-04T17:00:00Z","assets":{"bought":[{"asset_id":"BTC","amount":"0.5","price":"1"}]},"net_position":{"BTC":"+0.6"}}"#,
                "bought minus sold is +0.5",
            ),
            (
                "data",
                r#"{"user_id":"u","cycle_id":"c","eod_time":"yesterday","assets":{"sold":[]},"net_position":{}}"#,
                "eod_time",
            ),
            ("v", "2", "version"),
        ];
        for (name, value, want) in cases {
            let refusal = Incoming::parse(&with(name, value), 64 * 1024).expect_err(name);
            assert!(
                refusal.reason.contains(want),
                "{name}={value}: {}",
                refusal.reason
            );
            assert!(refusal.reason.len() <= MAX_REASON_LEN);
        }
        let huge = with("data", &"x".repeat(100_000));
        let refusal = Incoming::parse(&huge, 64 * 1024).expect_err("huge");
        assert!(refusal.reason.contains("more than"), "{}", refusal.reason);
        assert_eq!(refusal.report_id, "rep-1");
    }
}
