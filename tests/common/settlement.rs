//! Helpers of the settlement tests: keys, reports, pledged users, and the
//! completed nets the books' invariant adds to accepted credit changes.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    time::Duration,
};

use openoes::{
    config::Config,
    crypto::keys::ServerKey,
    proto::{
        pledge::v1::{self as ppb, pledge_service_client::PledgeServiceClient},
        settlement::v1::{
            self as pb, settlement_service_client::SettlementServiceClient as Client,
        },
    },
};
use redis::aio::MultiplexedConnection;
use rust_decimal::Decimal;
use tonic::transport::Channel;

use super::Link;

/// Fresh exchange and WSP key files in `dir`, named in `config`.
pub fn with_keys(mut config: Config, dir: &Path) -> Config {
    for (file, name) in [
        ("exchange.key", "exchange.test/settlement"),
        ("wsp.key", "wsp.test/settlement"),
    ] {
        let path = dir.join(file);
        if !path.exists() {
            ServerKey::generate(name)
                .expect("key")
                .write(&path)
                .expect("write key");
        }
    }
    config.settlement.exchange_key_file = dir.join("exchange.key").display().to_string();
    config.settlement.wsp_key_file = dir.join("wsp.key").display().to_string();
    config.settlement.sweep_interval = Duration::from_millis(200);
    config
}

/// A secured link's config with both roles' settlement keys.
pub fn config(link: &Link, dir: &Path) -> Config {
    with_keys(link.secured_config(), dir)
}

pub fn leg(asset: &str, amount: &str, price: &str) -> pb::TradeLeg {
    pb::TradeLeg {
        asset: asset.into(),
        amount: amount.into(),
        price: price.into(),
    }
}

pub fn net(asset: &str, net: &str) -> pb::NetPosition {
    pb::NetPosition {
        asset: asset.into(),
        net: net.into(),
    }
}

pub fn wait(ms: u64) -> Option<prost_types::Duration> {
    (ms > 0).then(|| prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    })
}

/// 2025-04-04T17:00:00Z.
pub fn eod() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: 1_743_786_000,
        nanos: 0,
    }
}

/// A report of `user` in `cycle`: `bought` and `sold` as (asset, amount,
/// price), nets computed exactly as bought minus sold.
pub fn report(
    id: &str,
    user: &str,
    cycle: &str,
    bought: &[(&str, &str, &str)],
    sold: &[(&str, &str, &str)],
) -> pb::SubmitSettlementReportRequest {
    let mut nets: BTreeMap<String, Decimal> = BTreeMap::new();
    for (a, n, _) in bought {
        *nets.entry(a.to_string()).or_default() += n.parse::<Decimal>().expect("amount");
    }
    for (a, n, _) in sold {
        *nets.entry(a.to_string()).or_default() -= n.parse::<Decimal>().expect("amount");
    }
    pb::SubmitSettlementReportRequest {
        report_id: id.into(),
        user_id: user.into(),
        cycle_id: cycle.into(),
        eod_time: Some(eod()),
        bought: bought.iter().map(|(a, n, p)| leg(a, n, p)).collect(),
        sold: sold.iter().map(|(a, n, p)| leg(a, n, p)).collect(),
        net_positions: nets
            .iter()
            .map(|(a, n)| {
                let text = n.normalize().to_string();
                net(
                    a,
                    &if n.is_sign_negative() || n.is_zero() {
                        text
                    } else {
                        format!("+{text}")
                    },
                )
            })
            .collect(),
        instructions: Some(pb::SettlementInstructions {
            deposit_address: "0xdeposit".into(),
            withdrawal_address: "0xwithdraw".into(),
        }),
        supersedes: String::new(),
        wait: wait(10_000),
    }
}

/// The protocol page's worked example, as written there.
pub fn worked_example(id: &str, user: &str, cycle: &str) -> pb::SubmitSettlementReportRequest {
    pb::SubmitSettlementReportRequest {
        net_positions: vec![
            net("BTC", "+0.5"),
            net("ETH", "+10.0"),
            net("USDT", "-67500.00"),
        ],
        ..report(
            id,
            user,
            cycle,
            &[("BTC", "0.5", "65000.00"), ("ETH", "10.0", "3500.00")],
            &[("USDT", "67500.00", "1.00")],
        )
    }
}

pub fn status(r: &pb::SettlementReport) -> pb::SettlementStatus {
    pb::SettlementStatus::try_from(r.status).expect("status")
}

pub async fn submit(
    client: &mut Client<Channel>,
    request: pb::SubmitSettlementReportRequest,
) -> Result<(pb::SettlementReport, pb::Delivery), tonic::Status> {
    let r = client.submit_settlement_report(request).await?.into_inner();
    Ok((
        r.report.expect("report"),
        pb::Delivery::try_from(r.delivery).expect("delivery"),
    ))
}

pub async fn confirm(
    client: &mut Client<Channel>,
    id: &str,
) -> Result<pb::SettlementReport, tonic::Status> {
    Ok(client
        .confirm_settlement(pb::ConfirmSettlementRequest {
            report_id: id.into(),
            outcome: pb::SettlementOutcome::Completed as i32,
            reason: String::new(),
        })
        .await?
        .into_inner()
        .report
        .expect("report"))
}

pub async fn get(
    client: &mut Client<Channel>,
    id: &str,
) -> Result<pb::SettlementReport, tonic::Status> {
    Ok(client
        .get_settlement_report(pb::GetSettlementReportRequest {
            report_id: id.into(),
        })
        .await?
        .into_inner()
        .report
        .expect("report"))
}

/// Polls a report until `done` holds (or panics after 20 s).
pub async fn until(
    client: &mut Client<Channel>,
    id: &str,
    done: impl Fn(&pb::SettlementReport) -> bool,
) -> pb::SettlementReport {
    for _ in 0..400 {
        if let Ok(r) = get(client, id).await
            && done(&r)
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("report {id} never reached the state waited for");
}

/// Polls a cycle until its status is `want` (or panics after 20 s).
pub async fn cycle_until(
    client: &mut Client<Channel>,
    id: &str,
    want: pb::CycleStatus,
) -> pb::SettlementCycle {
    let mut last = None;
    for _ in 0..400 {
        if let Ok(r) = client
            .get_settlement_cycle(pb::GetSettlementCycleRequest {
                cycle_id: id.into(),
            })
            .await
        {
            let c = r.into_inner().cycle.expect("cycle");
            if c.status == want as i32 {
                return c;
            }
            last = Some(c);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cycle {id} never became {want:?}: {last:?}");
}

/// Deposits and pledges `amount` of `asset` for `user` (an exchange backend
/// must be accepting), and waits until the pledge is ACTIVE.
pub async fn pledged(channel: &Channel, user: &str, asset: &str, amount: &str) {
    let mut client = PledgeServiceClient::new(channel.clone());
    client
        .record_deposit(ppb::RecordDepositRequest {
            request_id: format!("dep-{user}-{asset}"),
            user_id: user.into(),
            asset: asset.into(),
            amount: amount.into(),
            chain: "ethereum".into(),
            address: "0xcustody".into(),
            tx_id: format!("tx-{user}-{asset}"),
        })
        .await
        .expect("deposit");
    let id = format!("pl-{user}-{asset}");
    client
        .create_pledge(ppb::CreatePledgeRequest {
            request_id: id.clone(),
            user_id: user.into(),
            asset: asset.into(),
            amount: amount.into(),
            chain: "ethereum".into(),
            address: "0xcustody".into(),
            wait: wait(10_000),
        })
        .await
        .expect("pledge");
    for _ in 0..400 {
        let p = client
            .get_pledge(ppb::GetPledgeRequest {
                pledge_id: id.clone(),
            })
            .await
            .expect("get pledge")
            .into_inner()
            .pledge
            .expect("pledge");
        if p.status == ppb::PledgeStatus::Active as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pledge {id} never active");
}

/// The nets of every COMPLETED report on M, by (user, asset): what the
/// books' invariant adds to accepted credit changes.
pub async fn settled_nets(m: &mut MultiplexedConnection) -> BTreeMap<(String, String), Decimal> {
    let mut nets: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for (_, r) in reports(m).await {
        if r.get("status").map(String::as_str) != Some("completed") {
            continue;
        }
        let applied: Vec<(String, String)> =
            serde_json::from_str(r.get("applied").map_or("[]", String::as_str)).expect("applied");
        for (asset, n) in applied {
            *nets.entry((r["uid"].clone(), asset)).or_default() +=
                n.trim_start_matches('+').parse::<Decimal>().expect("net");
        }
    }
    nets
}

/// Every report record on M, by id.
pub async fn reports(m: &mut MultiplexedConnection) -> HashMap<String, HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("mirror:settlement:report:*")
            .arg("COUNT")
            .arg(1000)
            .query_async(m)
            .await
            .expect("scan");
        for key in keys {
            let h: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(m)
                .await
                .expect("hgetall");
            out.insert(
                key.trim_start_matches("mirror:settlement:report:")
                    .to_string(),
                h,
            );
        }
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// The standard `data` JSON of `r` as a plain exchange writes it: amounts
/// as given, `eod_time` ISO-8601 ([`eod`]).
pub fn std_data(r: &pb::SubmitSettlementReportRequest) -> serde_json::Value {
    use serde_json::{Value, json};
    let legs = |legs: &[pb::TradeLeg]| -> Value {
        legs.iter()
            .map(|l| json!({ "asset_id": l.asset, "amount": l.amount, "price": l.price }))
            .collect()
    };
    let instructions = r.instructions.clone().unwrap_or_default();
    json!({
        "user_id": r.user_id,
        "cycle_id": r.cycle_id,
        "eod_time": "2025-04-04T17:00:00Z",
        "assets": { "bought": legs(&r.bought), "sold": legs(&r.sold) },
        "net_position": r.net_positions.iter()
            .map(|n| (n.asset.clone(), Value::String(n.net.clone())))
            .collect::<serde_json::Map<_, _>>(),
        "settlement_instructions": {
            "deposit_address": instructions.deposit_address,
            "withdrawal_address": instructions.withdrawal_address,
        },
    })
}

/// A stream entry as a plain-Redis exchange writes it with XADD: names and
/// values as bytes, in order (any bytes: the exchange is another company).
#[derive(Debug, Clone, Default)]
pub struct Raw(pub Vec<(Vec<u8>, Vec<u8>)>);

impl Raw {
    /// The standard report entry of `r`: `type`, `report_id`, `timestamp`
    /// (unix seconds) and `data`, none of our extensions (no salt).
    pub fn report(r: &pb::SubmitSettlementReportRequest) -> Self {
        Self::default()
            .set("type", "settlement")
            .set("report_id", &r.report_id)
            .set("timestamp", super::credit::now_s().to_string())
            .set("data", std_data(r).to_string())
    }

    /// `name` set to `value`: in its place if present, else last.
    pub fn set(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        let (name, value) = (name.as_ref().to_vec(), value.as_ref().to_vec());
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(pair) => pair.1 = value,
            None => self.0.push((name, value)),
        }
        self
    }

    /// Without the field `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.0.retain(|(n, _)| n != name.as_bytes());
        self
    }

    /// With its `data` JSON edited.
    pub fn data(self, edit: impl FnOnce(&mut serde_json::Value)) -> Self {
        let (_, data) = self.0.iter().find(|(n, _)| n == b"data").expect("data");
        let mut data: serde_json::Value = serde_json::from_slice(data).expect("data JSON");
        edit(&mut data);
        self.set("data", data.to_string())
    }

    /// XADDs the entry to `stream` at `id` (`*`: the next one); its id.
    pub async fn xadd_at(
        &self,
        conn: &mut MultiplexedConnection,
        stream: &str,
        id: &str,
    ) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream).arg(id);
        for (name, value) in &self.0 {
            cmd.arg(name.as_slice()).arg(value.as_slice());
        }
        cmd.query_async(conn).await.expect("xadd")
    }

    /// XADDs the entry to `stream`; its id.
    pub async fn xadd(&self, conn: &mut MultiplexedConnection, stream: &str) -> String {
        self.xadd_at(conn, stream, "*").await
    }
}
