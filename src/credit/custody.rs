//! The custody side of credit decisions: a pledge is a credit increase
//! backed by vault balance it locks, a release a credit decrease that
//! unlocks pledged balance once accepted. What either decision will do to
//! custody is computed here, exactly, when the request is made
//! ([`plan`]), stored with it (`lua/request.lua`), and applied in the same
//! step as the decision (`lua/apply_response.lua`). A completed settlement
//! moves credit and custody together too ([`settle`], applied by
//! SettlementService's verdict script).
//!
//! The invariants it keeps, for every (user, asset): total = locked +
//! available, none negative; locked = CI + the amounts of PENDING pledges;
//! pledged = the remaining amounts of ACTIVE pledges.

use rust_decimal::Decimal;

use super::{error::CreditError, model::Purpose};
use crate::{amount, streams::Fields};

/// A vault as stored (`mirror:vault:<uid>:<asset>`); all zero if absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vault {
    /// Everything in custody.
    pub total: Decimal,
    /// Locked by pending and active pledges.
    pub locked: Decimal,
    /// Remaining of active pledges.
    pub pledged: Decimal,
    /// +1 per change; 0 if the vault does not exist.
    pub version: u64,
    /// Unix ms of the last change.
    pub updated_ms: Option<i64>,
}

impl Vault {
    /// Parses a vault hash read from `key` (empty: no vault).
    pub fn parse(key: &str, f: &Fields) -> Result<Self, CreditError> {
        let decimal = |name: &str| match f.get(name) {
            None | Some("") => Ok(Decimal::ZERO),
            Some(text) => amount::parse(text).map_err(|e| CreditError::Corrupt {
                key: key.to_string(),
                reason: format!("{name}: {e}"),
            }),
        };
        Ok(Self {
            total: decimal("total")?,
            locked: decimal("locked")?,
            pledged: decimal("pledged")?,
            version: f.text("version").parse().unwrap_or(0),
            updated_ms: f.text("updated_ms").parse().ok(),
        })
    }

    /// Free to pledge or withdraw: total - locked.
    pub fn available(&self) -> Decimal {
        self.total - self.locked
    }
}

/// What either decision on a pledge or release will do to custody,
/// computed exactly when the request is made and stored with it. Nothing
/// else can move the vault's locked or pledged amounts while it is pending
/// (one credit-moving operation per user and asset; deposits and
/// withdrawals change only the total), so the decision script applies the
/// plan as is, after checking that those amounts are still the ones it was
/// made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Locked and pledged when the plan was made (the decision's check).
    pub base: (Decimal, Decimal),
    /// Locked and pledged after an acceptance.
    pub accept: (Decimal, Decimal),
    /// Locked and pledged after a rejection.
    pub reject: (Decimal, Decimal),
    /// Release: what an acceptance unlocks, `[[pledge_id, amount], ...]`,
    /// oldest first; "" otherwise.
    pub unlocks: String,
    /// Release: each pledge it touches and its remaining after, as
    /// `[[pledge_id, remaining], ...]`; "" otherwise.
    pub remaining: String,
}

/// A pledge still backing credit: its id and what remains of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePledge {
    /// The pledge.
    pub pledge_id: String,
    /// What is still locked by it.
    pub remaining: Decimal,
}

/// The plan of a `purpose` request of `size` (the absolute change) on
/// `vault`; `active` are the user's active pledges oldest first (needed for
/// a release only). `None` for a plain request.
pub fn plan(
    purpose: Purpose,
    size: Decimal,
    vault: &Vault,
    active: &[ActivePledge],
) -> Result<Option<Plan>, CreditError> {
    let corrupt = |reason: String| CreditError::Corrupt {
        key: "vault".into(),
        reason,
    };
    let base = (vault.locked, vault.pledged);
    let plan = match purpose {
        Purpose::Plain => return Ok(None),
        // The amount is locked now; accepted, it stays locked backing the
        // credit; rejected, it is free again.
        Purpose::Pledge => {
            let locked = amount::add(vault.locked, size)
                .map_err(|e| corrupt(format!("vault sum beyond exact range: {e}")))?;
            let pledged = amount::add(vault.pledged, size)
                .map_err(|e| corrupt(format!("vault sum beyond exact range: {e}")))?;
            Plan {
                base: (locked, vault.pledged),
                accept: (locked, pledged),
                reject: (vault.locked, vault.pledged),
                unlocks: String::new(),
                remaining: String::new(),
            }
        }
        // Accepted, the amount is unlocked from the oldest pledges; rejected,
        // nothing changes.
        Purpose::Release => {
            let mut left = size;
            let (mut unlocks, mut remaining) = (Vec::new(), Vec::new());
            for pledge in active {
                if left.is_zero() {
                    break;
                }
                let take = pledge.remaining.min(left);
                left -= take;
                unlocks.push(serde_json::json!([pledge.pledge_id, amount::format(take)]));
                remaining.push(serde_json::json!([
                    pledge.pledge_id,
                    amount::format(pledge.remaining - take)
                ]));
            }
            if !left.is_zero() {
                return Err(corrupt(format!(
                    "active pledges hold less than the {} pledged",
                    amount::format(vault.pledged)
                )));
            }
            Plan {
                base,
                accept: (vault.locked - size, vault.pledged - size),
                reject: base,
                unlocks: serde_json::Value::Array(unlocks).to_string(),
                remaining: serde_json::Value::Array(remaining).to_string(),
            }
        }
    };
    let valid = |(locked, pledged): (Decimal, Decimal)| {
        locked >= Decimal::ZERO && pledged >= Decimal::ZERO && locked <= vault.total
    };
    if !(valid(plan.accept) && valid(plan.reject)) {
        return Err(corrupt(format!(
            "a decision would leave the vault out of balance: {plan:?} of {vault:?}"
        )));
    }
    Ok(Some(plan))
}

/// What a completed settlement's net position does to one (user, asset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Credit Inventory after.
    pub ci: Decimal,
    /// The vault's total, locked and pledged after; `None` if the pair's
    /// credit is not custody's (no vault, credit granted directly).
    pub vault: Option<(Decimal, Decimal, Decimal)>,
    /// The pledges a negative net takes from, oldest first: each one's
    /// remaining after.
    pub pledges: Vec<(String, Decimal)>,
    /// A positive net's settlement lot: the custody that arrived, locked,
    /// backing the credit it adds.
    pub lot: Option<Decimal>,
}

/// Why a net position cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleError {
    /// CI would go below zero.
    InsufficientCredit,
    /// A negative net needs more custody than the active pledges hold.
    InsufficientCustody {
        /// What they hold.
        pledged: Decimal,
    },
    /// A sum beyond the exact range.
    TooLarge,
}

/// The effect of a settlement's `net` on a pair with Credit Inventory `ci`
/// and `vault`, whose active pledges are `active` (oldest first).
///
/// The pair's credit is custody's if it has a vault, or no credit yet (a
/// position a settlement opens arrives as custody): then a positive net
/// adds custody locked as a lot (total, locked and pledged grow by it), and
/// a negative one takes its amount from the oldest pledges, leaving
/// custody (total, locked and pledged shrink by it). Otherwise (credit
/// granted directly, without custody here) only CI moves. Either way the
/// vault invariants hold after: locked = CI + pending pledges, pledged =
/// remaining of active pledges.
pub fn settle(
    net: Decimal,
    ci: Decimal,
    vault: &Vault,
    active: &[ActivePledge],
) -> Result<Settled, SettleError> {
    let ci_after = amount::add(ci, net).map_err(|_| SettleError::TooLarge)?;
    if ci_after < Decimal::ZERO {
        return Err(SettleError::InsufficientCredit);
    }
    let custody = vault.version > 0 || ci.is_zero();
    if !custody {
        return Ok(Settled {
            ci: ci_after,
            vault: None,
            pledges: Vec::new(),
            lot: None,
        });
    }
    let moved = |x: Decimal| amount::add(x, net).map_err(|_| SettleError::TooLarge);
    let (total, locked, pledged) = (
        moved(vault.total)?,
        moved(vault.locked)?,
        moved(vault.pledged)?,
    );
    let mut pledges = Vec::new();
    let mut lot = None;
    if net > Decimal::ZERO {
        lot = Some(net);
    } else {
        let mut left = -net;
        for pledge in active {
            if left.is_zero() {
                break;
            }
            let take = pledge.remaining.min(left);
            left -= take;
            pledges.push((pledge.pledge_id.clone(), pledge.remaining - take));
        }
        if !left.is_zero() || pledged < Decimal::ZERO || locked < Decimal::ZERO {
            return Err(SettleError::InsufficientCustody {
                pledged: vault.pledged,
            });
        }
    }
    Ok(Settled {
        ci: ci_after,
        vault: Some((total, locked, pledged)),
        pledges,
        lot,
    })
}

/// `locked/pledged`, as the scripts store a plan's amounts.
pub fn pair((locked, pledged): (Decimal, Decimal)) -> String {
    format!("{}/{}", amount::format(locked), amount::format(pledged))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        amount::parse(text).expect("decimal")
    }

    fn vault(total: &str, locked: &str, pledged: &str) -> Vault {
        Vault {
            total: d(total),
            locked: d(locked),
            pledged: d(pledged),
            version: 3,
            updated_ms: None,
        }
    }

    #[test]
    fn a_release_unlocks_oldest_first_and_splits_a_partly_used_pledge() {
        let active = [
            ActivePledge {
                pledge_id: "p1".into(),
                remaining: d("1"),
            },
            ActivePledge {
                pledge_id: "p2".into(),
                remaining: d("3"),
            },
        ];
        let v = vault("10", "4", "4");
        let p = plan(Purpose::Release, d("1.5"), &v, &active)
            .expect("plan")
            .expect("some");
        assert_eq!(p.accept, (d("2.5"), d("2.5")));
        assert_eq!(p.reject, (d("4"), d("4")));
        assert_eq!(p.remaining, r#"[["p1","0"],["p2","2.5"]]"#);
        assert_eq!(p.unlocks, r#"[["p1","1"],["p2","0.5"]]"#);
        // More than the pledges hold: refused as corrupt, never half done.
        assert!(plan(Purpose::Release, d("5"), &v, &active).is_err());
    }

    #[test]
    fn a_settlement_moves_custody_with_credit_oldest_pledge_first() {
        let active = [
            ActivePledge {
                pledge_id: "p1".into(),
                remaining: d("30000"),
            },
            ActivePledge {
                pledge_id: "p2".into(),
                remaining: d("40000"),
            },
        ];
        let v = vault("70000", "70000", "70000");
        let s = settle(d("-67500"), d("70000"), &v, &active).expect("settle");
        assert_eq!(s.ci, d("2500"));
        assert_eq!(s.vault, Some((d("2500"), d("2500"), d("2500"))));
        assert_eq!(
            s.pledges,
            vec![("p1".into(), d("0")), ("p2".into(), d("2500"))]
        );
        assert_eq!(s.lot, None);
        // A new position arrives as custody: a lot.
        let s = settle(d("0.5"), Decimal::ZERO, &Vault::default(), &[]).expect("settle");
        assert_eq!(s.vault, Some((d("0.5"), d("0.5"), d("0.5"))));
        assert_eq!(s.lot, Some(d("0.5")));
        // Below zero: refused, whatever the custody.
        assert_eq!(
            settle(d("-70001"), d("70000"), &v, &active),
            Err(SettleError::InsufficientCredit)
        );
        // Credit granted directly (no vault): only CI moves.
        let s = settle(d("-1"), d("3"), &Vault::default(), &[]).expect("settle");
        assert_eq!((s.ci, s.vault), (d("2"), None));
        // Pledges holding less than the vault says: refused, never half done.
        assert!(matches!(
            settle(d("-70000"), d("70000"), &v, &active[..1]),
            Err(SettleError::InsufficientCustody { .. })
        ));
    }

    #[test]
    fn a_pledge_locks_now_and_counts_as_pledged_only_once_accepted() {
        let v = vault("10", "0", "0");
        let p = plan(Purpose::Pledge, d("4"), &v, &[])
            .expect("plan")
            .expect("some");
        assert_eq!(p.base, (d("4"), d("0")), "locked at once");
        assert_eq!(p.accept, (d("4"), d("4")));
        assert_eq!(p.reject, (d("0"), d("0")), "unlocked");
        assert_eq!(plan(Purpose::Plain, d("4"), &v, &[]).expect("plan"), None);
        assert!(
            plan(Purpose::Pledge, d("11"), &v, &[]).is_err(),
            "more than the total"
        );
    }
}
