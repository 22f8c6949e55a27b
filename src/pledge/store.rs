//! The vault on M: deposits and withdrawals (`lua/vault_op.lua`), and reads
//! of vaults, pledges and releases. Pledges and releases are written by the
//! credit flow ([`crate::credit::store::CreditStore`]), whose decision
//! script applies their custody effect.

use redis::AsyncCommands;
use rust_decimal::Decimal;

use super::{
    error::PledgeError,
    keys,
    model::{NewVaultOp, PledgeRecord, PledgeStatus, ReleaseRecord, VaultBalance, VaultOpKind},
};
use crate::{
    amount,
    config::Config,
    credit::custody::Vault,
    redis::{
        Durability, RedisEndpoint, RedisError,
        page::{self, PageToken},
        script::lua_script,
    },
    streams::Fields,
    time,
};

/// Times an operation is retried when the vault changed under it.
const MAX_STALE_RETRIES: usize = 8;

lua_script! {
    /// `lua/vault_op.lua`: a deposit or withdrawal, atomically.
    struct VaultOp<'a>(include_str!("lua/vault_op.lua")) {
        keys { op: String, vault: String, events: &'a str }
        args {
            request_id: &'a str, kind: &'a str, uid: &'a str, asset: &'a str, amount: String,
            chain: &'a str, address: &'a str, tx_id: &'a str, version: u64, total_after: String,
            locked_pledged: String, now_ms: u64, events_maxlen: usize,
        }
    }
}

/// The vault data on M.
#[derive(Clone)]
pub struct VaultStore {
    redis: RedisEndpoint,
    events_maxlen: usize,
    durability: Durability,
}

impl VaultStore {
    /// A store on M.
    pub fn new(redis: RedisEndpoint, config: &Config) -> Self {
        Self {
            durability: Durability::new(redis.clone(), &config.redis.durability),
            events_maxlen: config.streams.maxlen_for(keys::VAULT_EVENTS),
            redis,
        }
    }

    fn err(&self, e: redis::RedisError) -> PledgeError {
        PledgeError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    /// Records a deposit or a withdrawal, or returns the first result of
    /// the same operation made before. The balance is the one right after
    /// the operation.
    pub async fn vault_op(&self, op: &NewVaultOp) -> Result<VaultBalance, PledgeError> {
        let vault_key = keys::vault(&op.uid, &op.asset);
        for _ in 0..MAX_STALE_RETRIES {
            let vault = self.vault(&op.uid, &op.asset).await?;
            let total = match self.total_after(op, &vault) {
                Ok(total) => total,
                // An existing record for this id wins over the check: a
                // retry of a withdrawal that was fine then returns it.
                Err(e) => match self.op_record(&op.request_id).await? {
                    Some(record) => return self.same_or_reused(op, &record),
                    None => return Err(e),
                },
            };
            let mut conn = self.durability.conn(&self.redis).await?;
            let reply: redis::RedisResult<(String, Fields)> = VaultOp {
                op: keys::vault_op(&op.request_id),
                vault: vault_key.clone(),
                events: keys::VAULT_EVENTS,
                request_id: &op.request_id,
                kind: op.kind.as_str(),
                uid: &op.uid,
                asset: &op.asset,
                amount: amount::format(op.amount),
                chain: &op.chain,
                address: &op.address,
                tx_id: &op.tx_id,
                version: vault.version,
                total_after: amount::format(total),
                locked_pledged: format!(
                    "{}/{}",
                    amount::format(vault.locked),
                    amount::format(vault.pledged)
                ),
                now_ms: time::now().ms,
                events_maxlen: self.events_maxlen,
            }
            .invoke(&mut *conn)
            .await;
            let (verdict, record) = match reply {
                Ok(reply) => reply,
                Err(e) if e.code() == Some("REQUEST_ID_REUSED") => {
                    return Err(PledgeError::RequestIdReused(op.request_id.clone()));
                }
                Err(e) => return Err(self.err(e)),
            };
            if verdict == "stale" {
                continue;
            }
            self.durability.wait(&mut *conn).await?;
            return balance_of(op, &record);
        }
        Err(PledgeError::Contention)
    }

    /// The vault's total after `op`, checked against what was read.
    fn total_after(&self, op: &NewVaultOp, vault: &Vault) -> Result<Decimal, PledgeError> {
        match op.kind {
            VaultOpKind::Deposit => {
                amount::add(vault.total, op.amount).map_err(|_| PledgeError::TooLarge {
                    total: amount::format(vault.total),
                    amount: amount::format(op.amount),
                })
            }
            VaultOpKind::Withdrawal => {
                let available = vault.available();
                if op.amount > available {
                    return Err(PledgeError::InsufficientAvailableBalance {
                        available: amount::format(available),
                        amount: amount::format(op.amount),
                    });
                }
                Ok(vault.total - op.amount)
            }
        }
    }

    fn same_or_reused(
        &self,
        op: &NewVaultOp,
        record: &Fields,
    ) -> Result<VaultBalance, PledgeError> {
        let same = record.text("kind") == op.kind.as_str()
            && record.text("uid") == op.uid
            && record.text("asset") == op.asset
            && record.text("amount") == amount::format(op.amount)
            && record.text("chain") == op.chain
            && record.text("address") == op.address
            && record.text("tx_id") == op.tx_id;
        if same {
            balance_of(op, record)
        } else {
            Err(PledgeError::RequestIdReused(op.request_id.clone()))
        }
    }

    async fn op_record(&self, request_id: &str) -> Result<Option<Fields>, PledgeError> {
        let mut conn = self.redis.conn().await?;
        let fields: Fields = conn
            .hgetall(keys::vault_op(request_id))
            .await
            .map_err(|e| self.err(e))?;
        Ok((!fields.is_empty()).then_some(fields))
    }

    /// A vault as stored (all zero, version 0, if it does not exist).
    pub async fn vault(&self, uid: &str, asset: &str) -> Result<Vault, PledgeError> {
        let key = keys::vault(uid, asset);
        let mut conn = self.redis.conn().await?;
        let fields: Fields = conn.hgetall(&key).await.map_err(|e| self.err(e))?;
        Ok(Vault::parse(&key, &fields)?)
    }

    /// A pledge, if it exists.
    pub async fn pledge(&self, pledge_id: &str) -> Result<Option<PledgeRecord>, PledgeError> {
        let mut conn = self.redis.conn().await?;
        let fields: Fields = conn
            .hgetall(keys::pledge(pledge_id))
            .await
            .map_err(|e| self.err(e))?;
        Ok((!fields.is_empty()).then(|| PledgeRecord::parse(&fields)))
    }

    /// A release, if it exists.
    pub async fn release(&self, release_id: &str) -> Result<Option<ReleaseRecord>, PledgeError> {
        let mut conn = self.redis.conn().await?;
        let fields: Fields = conn
            .hgetall(keys::release(release_id))
            .await
            .map_err(|e| self.err(e))?;
        Ok((!fields.is_empty()).then(|| ReleaseRecord::parse(&fields)))
    }

    /// Up to `limit` of a user's pledges, newest first, before `after`,
    /// passing `filter`; and where the next page starts, if there may be
    /// more (bounded work per call: [`page::newest_first`]).
    pub async fn pledges(
        &self,
        uid: &str,
        filter: impl Fn(&PledgeRecord) -> bool,
        after: Option<PageToken>,
        limit: usize,
    ) -> Result<(Vec<PledgeRecord>, Option<PageToken>), PledgeError> {
        let mut conn = self.redis.conn().await?;
        page::newest_first(
            &mut *conn,
            &keys::user_pledges(uid),
            keys::pledge,
            |fields: &Fields| (!fields.is_empty()).then(|| PledgeRecord::parse(fields)),
            filter,
            after,
            limit,
        )
        .await
        .map_err(|e| self.err(e))
    }
}

/// The balance a vault operation's record holds.
fn balance_of(op: &NewVaultOp, record: &Fields) -> Result<VaultBalance, PledgeError> {
    let key = keys::vault_op(&op.request_id);
    Ok(VaultBalance {
        uid: op.uid.clone(),
        asset: op.asset.clone(),
        vault: Vault::parse(&key, record)?,
    })
}

/// Pledge statuses as ListPledges filters them.
pub fn status_matches(record: &PledgeRecord, wanted: Option<PledgeStatus>) -> bool {
    wanted.is_none_or(|s| record.status == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_match_their_headers() {
        VaultOp::SHAPE.check();
    }
}
