//! Proto <-> domain for QuoteService: every input check, and every
//! result's translation to its message.

use super::{
    model::{self, Amount, Bin, BinInput, Pool, PoolInput},
    search::{DEFAULT_MAX_HOPS, MAX_HOPS_LIMIT, Quote, QuoteRequest, SwapMode},
};
use crate::{
    proto::quote::v1 as pb,
    time::{timestamp_ms, timestamp_now},
    validate::FieldViolations,
};

/// Most pools per ListPools page, and the default.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Pools per ListPools page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: usize = 100;

// === proto -> domain ===

/// A GetQuote (or WatchQuote) call.
pub fn quote_request(r: pb::GetQuoteRequest) -> Result<QuoteRequest, FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("token_in", &r.token_in);
    v.check_id("token_out", &r.token_out);
    if !r.token_in.is_empty() && r.token_in == r.token_out {
        v.add("token_out", "must differ from token_in");
    }
    let amount = match model::parse_u64(&r.amount) {
        Ok(0) => {
            v.add("amount", "must be positive");
            0
        }
        Ok(a) => a,
        Err(e) => {
            v.add("amount", e);
            0
        }
    };
    let mode = match pb::SwapMode::try_from(r.swap_mode) {
        Ok(pb::SwapMode::Unspecified | pb::SwapMode::ExactIn) => SwapMode::ExactIn,
        Ok(pb::SwapMode::ExactOut) => SwapMode::ExactOut,
        Err(_) => {
            v.add("swap_mode", format!("unknown value {}", r.swap_mode));
            SwapMode::ExactIn
        }
    };
    if r.slippage_bps > 10_000 {
        v.add("slippage_bps", "must be at most 10000");
    }
    let max_hops = match r.max_hops {
        0 => DEFAULT_MAX_HOPS,
        n if n > MAX_HOPS_LIMIT => {
            v.add("max_hops", format!("must be at most {MAX_HOPS_LIMIT}"));
            n
        }
        n => n,
    };
    if r.allow_partial_fill && mode == SwapMode::ExactOut {
        v.add("allow_partial_fill", "applies to EXACT_IN only");
    }
    v.into_result()?;
    Ok(QuoteRequest {
        token_in: r.token_in,
        token_out: r.token_out,
        amount,
        mode,
        slippage_bps: r.slippage_bps,
        max_hops,
        allow_partial_fill: r.allow_partial_fill,
    })
}

/// Bins per GetPool page when the caller does not say.
pub const DEFAULT_BINS_PAGE_SIZE: usize = 1000;
/// Most bins per GetPool page: about 1 MB of message.
pub const MAX_BINS_PAGE_SIZE: usize = 10_000;

/// A GetPool call's bins page: `None` if bins were not asked for, else
/// (bins after this id, page size).
pub fn bins_page(r: &pb::GetPoolRequest) -> Result<Option<(Option<i32>, usize)>, FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("pool_id", &r.pool_id);
    let size = match r.bins_page_size {
        n if n < 0 => {
            v.add("bins_page_size", "must not be negative");
            0
        }
        0 => DEFAULT_BINS_PAGE_SIZE,
        n => (n as usize).min(MAX_BINS_PAGE_SIZE),
    };
    let after = if r.bins_page_token.is_empty() {
        None
    } else {
        match r.bins_page_token.parse::<i32>() {
            Ok(id) => Some(id),
            Err(_) => {
                v.add(
                    "bins_page_token",
                    "is not a next_bins_page_token this server gave",
                );
                None
            }
        }
    };
    v.into_result()?;
    Ok(r.include_bins.then_some((after, size)))
}

/// A pool as given, unchecked.
pub fn pool_input(p: pb::Pool) -> PoolInput {
    PoolInput {
        pool_id: p.pool_id,
        token_x: p.token_x,
        token_y: p.token_y,
        bin_step: Some(i64::from(p.bin_step)),
        active_bin_id: Some(i64::from(p.active_bin_id)),
        base_factor: Some(i64::from(p.base_factor)),
        variable_fee_control: Some(i64::from(p.variable_fee_control)),
        max_volatility_accumulator: Some(i64::from(p.max_volatility_accumulator)),
        protocol_share_bps: Some(i64::from(p.protocol_share_bps)),
        status: (!p.status.is_empty()).then_some(p.status),
        token_x_decimals: p.token_x_decimals.map(i64::from),
        token_y_decimals: p.token_y_decimals.map(i64::from),
        unknown: Default::default(),
    }
}

/// A bin as given, unchecked.
pub fn bin_input(b: pb::Bin) -> BinInput {
    BinInput {
        bin_id: Some(i64::from(b.bin_id)),
        x_amount: Some(Amount(b.x_amount)),
        y_amount: Some(Amount(b.y_amount)),
        price: (!b.price.is_empty()).then_some(b.price),
        unknown: Default::default(),
    }
}

// === domain -> proto ===

/// A pool as the API shows it.
pub fn pool_to_proto(p: &Pool) -> pb::Pool {
    pb::Pool {
        pool_id: p.pool_id.clone(),
        token_x: p.token_x.clone(),
        token_y: p.token_y.clone(),
        bin_step: u32::from(p.bin_step),
        active_bin_id: p.active_bin_id,
        base_factor: u32::from(p.base_factor),
        variable_fee_control: p.variable_fee_control,
        max_volatility_accumulator: p.max_volatility_accumulator,
        protocol_share_bps: u32::from(p.protocol_share_bps),
        status: p.status.clone(),
        token_x_decimals: p.token_x_decimals.map(u32::from),
        token_y_decimals: p.token_y_decimals.map(u32::from),
        created_at: p.created_at.map(timestamp_ms),
        last_updated: p.last_updated.map(timestamp_ms),
    }
}

/// A bin as the API shows it.
pub fn bin_to_proto(b: &Bin) -> pb::Bin {
    pb::Bin {
        bin_id: b.bin_id,
        x_amount: b.x_amount.to_string(),
        y_amount: b.y_amount.to_string(),
        price: b.price.clone(),
    }
}

/// A quote as the API shows it.
pub fn quote_to_proto(q: &Quote) -> pb::Quote {
    let first = q.hops.first();
    pb::Quote {
        swap_mode: match q.request.mode {
            SwapMode::ExactIn => pb::SwapMode::ExactIn,
            SwapMode::ExactOut => pb::SwapMode::ExactOut,
        } as i32,
        token_in: q.request.token_in.clone(),
        token_out: q.request.token_out.clone(),
        amount_in: q.amount_in.to_string(),
        amount_out: q.amount_out.to_string(),
        min_amount_out: q.min_amount_out.map(|a| a.to_string()).unwrap_or_default(),
        max_amount_in: q.max_amount_in.map(|a| a.to_string()).unwrap_or_default(),
        total_fee: first
            .map(|h| h.fill.total_fee)
            .unwrap_or_default()
            .to_string(),
        protocol_fee: first
            .map(|h| h.fill.protocol_fee)
            .unwrap_or_default()
            .to_string(),
        lp_fee: first
            .map(|h| h.fill.lp_fee())
            .unwrap_or_default()
            .to_string(),
        price_impact: q.price_impact.clone(),
        partial_fill: q.partial_fill,
        search_limit: q.search_limit.unwrap_or_default().to_string(),
        hops: q
            .hops
            .iter()
            .map(|h| pb::QuoteHop {
                pool_id: h.pool_id.clone(),
                token_in: h.token_in.clone(),
                token_out: h.token_out.clone(),
                amount_in: h.fill.amount_in.to_string(),
                amount_out: h.fill.amount_out.to_string(),
                total_fee: h.fill.total_fee.to_string(),
                protocol_fee: h.fill.protocol_fee.to_string(),
                lp_fee: h.fill.lp_fee().to_string(),
                bins: h
                    .fill
                    .bins
                    .iter()
                    .map(|b| pb::BinFill {
                        bin_id: b.bin_id,
                        amount_in: b.amount_in.to_string(),
                        amount_out: b.amount_out.to_string(),
                        fee: b.fee.to_string(),
                        protocol_fee: b.protocol_fee.to_string(),
                        fee_rate: b.fee_rate,
                    })
                    .collect(),
            })
            .collect(),
        quoted_at: Some(timestamp_now()),
    }
}
