//! Entitlement tables (`migrations/0100_entitlement.sql`) on the control plane's
//! [`Store`]: accounts, plans and their categories, subscriptions, purchases. Every
//! change is audited in the same transaction.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::audit::{Actor, AuditRecord, record_audit};
use crate::db::{
    InvalidCursor, Sql, Store, StoreError, from_unix_micros, query_failed, random_id, stored_time,
    unix_micros,
};
use crate::events::EventId;

/// A viewer account.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Account {
    pub id: String,
    pub email: String,
    pub created_at: OffsetDateTime,
}

/// A subscription plan: which event categories it includes and how many sessions an
/// account may watch at once with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    pub id: String,
    pub name: String,
    /// Sorted, unique.
    pub categories: Vec<String>,
    /// `None`: no limit.
    pub max_concurrent_sessions: Option<u32>,
    pub created_at: OffsetDateTime,
}

/// What a new plan says (validated by the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlan {
    pub name: String,
    pub categories: Vec<String>,
    pub max_concurrent_sessions: Option<u32>,
}

/// A subscription's payment state, as the payment provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState {
    Active,
    /// A payment failed; the provider is retrying. Not entitled meanwhile.
    PastDue,
    Cancelled,
}

impl SubscriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::Active => "active",
            SubscriptionState::PastDue => "past_due",
            SubscriptionState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<SubscriptionState> {
        match text {
            "active" => Some(SubscriptionState::Active),
            "past_due" => Some(SubscriptionState::PastDue),
            "cancelled" => Some(SubscriptionState::Cancelled),
            _ => None,
        }
    }

    fn from_column(text: &str) -> Result<SubscriptionState, StoreError> {
        SubscriptionState::parse(text).ok_or_else(|| StoreError::CorruptRow {
            what: "subscription state",
            value: text.to_string(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Subscription {
    pub id: String,
    pub account_id: String,
    pub plan_id: String,
    pub state: SubscriptionState,
    pub valid_from: OffsetDateTime,
    /// `None`: open-ended.
    pub valid_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Subscription {
    /// Within its validity dates at `now` (whatever its state).
    pub fn is_current(&self, now: OffsetDateTime) -> bool {
        self.valid_from <= now && self.valid_until.is_none_or(|until| now < until)
    }
}

/// What a new subscription says (validated by the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub plan_id: String,
    pub state: SubscriptionState,
    pub valid_from: OffsetDateTime,
    pub valid_until: Option<OffsetDateTime>,
}

/// A purchase of one event (pay-per-view).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purchase {
    pub id: String,
    pub account_id: String,
    pub event_id: String,
    pub created_at: OffsetDateTime,
}

/// Everything that may entitle an account to an event: its subscriptions with their
/// plans, and whether it bought the event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grants {
    pub subscriptions: Vec<(Subscription, Plan)>,
    pub purchased: bool,
}

/// Why an entitlement change did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntitlementStoreError {
    #[error("an account with this email exists already")]
    EmailTaken,
    #[error("no account with id {0:?}")]
    UnknownAccount(String),
    #[error("no plan with id {0:?}")]
    UnknownPlan(String),
    #[error("no event with id {0:?}")]
    UnknownEvent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Keyset position in a newest-first list: `{created_at µs}-{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    created_at_us: i64,
    id: String,
}

impl ListCursor {
    fn after(created_at: OffsetDateTime, id: &str) -> ListCursor {
        ListCursor {
            created_at_us: unix_micros(created_at),
            id: id.to_string(),
        }
    }
}

impl fmt::Display for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.created_at_us, self.id)
    }
}

impl FromStr for ListCursor {
    type Err = InvalidCursor;

    fn from_str(text: &str) -> Result<ListCursor, InvalidCursor> {
        // Ids are [0-9a-z]: the last '-' separates (a time before 1970 has a sign).
        let (micros, id) = text.rsplit_once('-').ok_or(InvalidCursor)?;
        let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
        match (micros.parse::<i64>(), id_ok) {
            (Ok(created_at_us), true) => Ok(ListCursor {
                created_at_us,
                id: id.to_string(),
            }),
            _ => Err(InvalidCursor),
        }
    }
}

/// One page of a list, newest first; `next` when more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<ListCursor>,
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    email: String,
    created_at: i64,
}

impl AccountRow {
    fn into_account(self) -> Result<Account, StoreError> {
        Ok(Account {
            id: self.id,
            email: self.email,
            created_at: from_unix_micros(self.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: String,
    name: String,
    max_concurrent_sessions: Option<i64>,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: String,
    account_id: String,
    plan_id: String,
    state: String,
    valid_from: i64,
    valid_until: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl SubscriptionRow {
    fn into_subscription(self) -> Result<Subscription, StoreError> {
        Ok(Subscription {
            id: self.id,
            account_id: self.account_id,
            plan_id: self.plan_id,
            state: SubscriptionState::from_column(&self.state)?,
            valid_from: from_unix_micros(self.valid_from)?,
            valid_until: self.valid_until.map(from_unix_micros).transpose()?,
            created_at: from_unix_micros(self.created_at)?,
            updated_at: from_unix_micros(self.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PurchaseRow {
    id: String,
    account_id: String,
    event_id: String,
    created_at: i64,
}

impl PurchaseRow {
    fn into_purchase(self) -> Result<Purchase, StoreError> {
        Ok(Purchase {
            id: self.id,
            account_id: self.account_id,
            event_id: self.event_id,
            created_at: from_unix_micros(self.created_at)?,
        })
    }
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, account_id, plan_id, state, valid_from, valid_until, created_at, updated_at";

/// Whether a failed insert broke a unique constraint (the same on SQLite and PostgreSQL
/// through sqlx's portable error kind).
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    /// Creates an account for `email` (already normalized by the API).
    pub async fn create_account(
        &self,
        email: &str,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Account, EntitlementStoreError> {
        let account = Account {
            id: random_id(),
            email: email.to_string(),
            created_at: stored_time(now),
        };
        let mut tx = self.write_tx().await?;
        let inserted =
            sqlx::query("INSERT INTO accounts (id, email, created_at) VALUES ($1, $2, $3)")
                .bind(&account.id)
                .bind(&account.email)
                .bind(unix_micros(account.created_at))
                .execute(&mut *tx)
                .await;
        match inserted {
            Err(error) if is_unique_violation(&error) => {
                return Err(EntitlementStoreError::EmailTaken);
            }
            other => {
                other.map_err(query_failed("insert account"))?;
            }
        }
        // The email is personal data: the audit names the account only.
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "account.create",
                target_kind: "account",
                target_id: &account.id,
                detail: None,
            },
            unix_micros(now),
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(account)
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        sqlx::query_as::<_, AccountRow>("SELECT id, email, created_at FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_failed("select account"))?
            .map(AccountRow::into_account)
            .transpose()
    }

    /// Accounts, newest first; `email` finds one by its address.
    pub async fn list_accounts(
        &self,
        email: Option<&str>,
        limit: u32,
        after: Option<&ListCursor>,
    ) -> Result<Page<Account>, StoreError> {
        let mut sql = Sql::new("SELECT id, email, created_at FROM accounts WHERE 1 = 1");
        if let Some(email) = email {
            sql.push(" AND email = ").bind(email.to_string());
        }
        sql.newest_first_page(after.map(|c| (c.created_at_us, c.id.clone())), limit);
        let rows: Vec<AccountRow> = sql
            .query_as()
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("list accounts"))?;
        let more = rows.len() > limit as usize;
        let items = rows
            .into_iter()
            .take(limit as usize)
            .map(AccountRow::into_account)
            .collect::<Result<Vec<_>, _>>()?;
        let next = more
            .then(|| items.last().map(|a| ListCursor::after(a.created_at, &a.id)))
            .flatten();
        Ok(Page { items, next })
    }

    pub async fn create_plan(
        &self,
        plan: &NewPlan,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Plan, StoreError> {
        let mut categories = plan.categories.clone();
        categories.sort();
        categories.dedup();
        let created = Plan {
            id: random_id(),
            name: plan.name.clone(),
            categories,
            max_concurrent_sessions: plan.max_concurrent_sessions,
            created_at: stored_time(now),
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO plans (id, name, max_concurrent_sessions, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&created.id)
        .bind(&created.name)
        .bind(created.max_concurrent_sessions.map(i64::from))
        .bind(unix_micros(created.created_at))
        .execute(&mut *tx)
        .await
        .map_err(query_failed("insert plan"))?;
        for category in &created.categories {
            sqlx::query("INSERT INTO plan_categories (plan_id, category) VALUES ($1, $2)")
                .bind(&created.id)
                .bind(category)
                .execute(&mut *tx)
                .await
                .map_err(query_failed("insert plan category"))?;
        }
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "plan.create",
                target_kind: "plan",
                target_id: &created.id,
                detail: Some(serde_json::json!({
                    "name": created.name,
                    "categories": created.categories,
                    "max_concurrent_sessions": created.max_concurrent_sessions,
                })),
            },
            unix_micros(now),
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(created)
    }

    pub async fn plan(&self, id: &str) -> Result<Option<Plan>, StoreError> {
        let row = sqlx::query_as::<_, PlanRow>(
            "SELECT id, name, max_concurrent_sessions, created_at FROM plans WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("select plan"))?;
        match row {
            Some(row) => Ok(self.with_categories(vec![row]).await?.pop()),
            None => Ok(None),
        }
    }

    /// Plans, newest first.
    pub async fn list_plans(
        &self,
        limit: u32,
        after: Option<&ListCursor>,
    ) -> Result<Page<Plan>, StoreError> {
        let mut sql =
            Sql::new("SELECT id, name, max_concurrent_sessions, created_at FROM plans WHERE 1 = 1");
        sql.newest_first_page(after.map(|c| (c.created_at_us, c.id.clone())), limit);
        let rows: Vec<PlanRow> = sql
            .query_as()
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("list plans"))?;
        let more = rows.len() > limit as usize;
        let items = self
            .with_categories(rows.into_iter().take(limit as usize).collect())
            .await?;
        let next = more
            .then(|| items.last().map(|p| ListCursor::after(p.created_at, &p.id)))
            .flatten();
        Ok(Page { items, next })
    }

    /// Plans with their categories, in the order given.
    async fn with_categories(&self, rows: Vec<PlanRow>) -> Result<Vec<Plan>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new("SELECT plan_id, category FROM plan_categories WHERE plan_id IN (");
        sql.bind_list(rows.iter().map(|r| r.id.clone()))
            .push(") ORDER BY category");
        let pairs: Vec<(String, String)> = sql
            .query_as()
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("select plan categories"))?;
        rows.into_iter()
            .map(|row| {
                Ok(Plan {
                    categories: pairs
                        .iter()
                        .filter(|(plan_id, _)| *plan_id == row.id)
                        .map(|(_, category)| category.clone())
                        .collect(),
                    max_concurrent_sessions: row
                        .max_concurrent_sessions
                        .map(|n| {
                            u32::try_from(n).map_err(|_| StoreError::CorruptRow {
                                what: "plan max_concurrent_sessions",
                                value: n.to_string(),
                            })
                        })
                        .transpose()?,
                    created_at: from_unix_micros(row.created_at)?,
                    id: row.id,
                    name: row.name,
                })
            })
            .collect()
    }

    pub async fn create_subscription(
        &self,
        account_id: &str,
        subscription: &NewSubscription,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Subscription, EntitlementStoreError> {
        if self.account(account_id).await?.is_none() {
            return Err(EntitlementStoreError::UnknownAccount(
                account_id.to_string(),
            ));
        }
        if self.plan(&subscription.plan_id).await?.is_none() {
            return Err(EntitlementStoreError::UnknownPlan(
                subscription.plan_id.clone(),
            ));
        }
        let now_stored = stored_time(now);
        let created = Subscription {
            id: random_id(),
            account_id: account_id.to_string(),
            plan_id: subscription.plan_id.clone(),
            state: subscription.state,
            valid_from: stored_time(subscription.valid_from),
            valid_until: subscription.valid_until.map(stored_time),
            created_at: now_stored,
            updated_at: now_stored,
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&created.id)
        .bind(&created.account_id)
        .bind(&created.plan_id)
        .bind(created.state.as_str())
        .bind(unix_micros(created.valid_from))
        .bind(created.valid_until.map(unix_micros))
        .bind(unix_micros(created.created_at))
        .bind(unix_micros(created.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(query_failed("insert subscription"))?;
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "subscription.create",
                target_kind: "subscription",
                target_id: &created.id,
                detail: Some(serde_json::json!({
                    "account_id": created.account_id,
                    "plan_id": created.plan_id,
                    "state": created.state.as_str(),
                })),
            },
            unix_micros(now),
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(created)
    }

    pub async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        sqlx::query_as::<_, SubscriptionRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("select subscription"))?
        .map(SubscriptionRow::into_subscription)
        .transpose()
    }

    /// The account's subscriptions, oldest first.
    pub async fn subscriptions_of(
        &self,
        account_id: &str,
    ) -> Result<Vec<Subscription>, StoreError> {
        sqlx::query_as::<_, SubscriptionRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE account_id = $1 \
             ORDER BY created_at, id"
        )))
        .bind(account_id)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("select subscriptions"))?
        .into_iter()
        .map(SubscriptionRow::into_subscription)
        .collect()
    }

    /// Sets a subscription's state (and, when given, its end of validity), as the payment
    /// provider reports it. `None` if there is no such subscription.
    pub async fn update_subscription(
        &self,
        id: &str,
        state: SubscriptionState,
        valid_until: Option<Option<OffsetDateTime>>,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Option<Subscription>, StoreError> {
        let mut tx = self.write_tx().await?;
        let Some(before) = sqlx::query_as::<_, SubscriptionRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_failed("select subscription"))?
        else {
            return Ok(None);
        };
        let mut after = before.into_subscription()?;
        let from_state = after.state;
        after.state = state;
        if let Some(valid_until) = valid_until {
            after.valid_until = valid_until.map(stored_time);
        }
        after.updated_at = stored_time(now);
        sqlx::query(
            "UPDATE subscriptions SET state = $1, valid_until = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(after.state.as_str())
        .bind(after.valid_until.map(unix_micros))
        .bind(unix_micros(after.updated_at))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(query_failed("update subscription"))?;
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "subscription.update",
                target_kind: "subscription",
                target_id: id,
                detail: Some(serde_json::json!({
                    "from": from_state.as_str(),
                    "to": after.state.as_str(),
                    "valid_until_changed": valid_until.is_some(),
                })),
            },
            unix_micros(now),
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(Some(after))
    }

    /// Records that the account bought the event. `(purchase, true)` when new, `(the
    /// earlier purchase, false)` when it had bought it already.
    pub async fn create_purchase(
        &self,
        account_id: &str,
        event_id: &EventId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<(Purchase, bool), EntitlementStoreError> {
        if self.account(account_id).await?.is_none() {
            return Err(EntitlementStoreError::UnknownAccount(
                account_id.to_string(),
            ));
        }
        if self.event_access(event_id).await?.is_none() {
            return Err(EntitlementStoreError::UnknownEvent(
                event_id.as_str().to_string(),
            ));
        }
        if let Some(existing) = self.purchase_of(account_id, event_id.as_str()).await? {
            return Ok((existing, false));
        }
        let purchase = Purchase {
            id: random_id(),
            account_id: account_id.to_string(),
            event_id: event_id.as_str().to_string(),
            created_at: stored_time(now),
        };
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO purchases (id, account_id, event_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&purchase.id)
        .bind(&purchase.account_id)
        .bind(&purchase.event_id)
        .bind(unix_micros(purchase.created_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            // A concurrent request bought it first: answer with that purchase.
            Err(error) if is_unique_violation(&error) => {
                drop(tx);
                let existing = self.purchase_of(account_id, event_id.as_str()).await?;
                return existing.map(|p| (p, false)).ok_or_else(|| {
                    EntitlementStoreError::Store(query_failed("insert purchase")(error))
                });
            }
            other => {
                other.map_err(query_failed("insert purchase"))?;
            }
        }
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "purchase.create",
                target_kind: "purchase",
                target_id: &purchase.id,
                detail: Some(serde_json::json!({
                    "account_id": purchase.account_id,
                    "event_id": purchase.event_id,
                })),
            },
            unix_micros(now),
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok((purchase, true))
    }

    async fn purchase_of(
        &self,
        account_id: &str,
        event_id: &str,
    ) -> Result<Option<Purchase>, StoreError> {
        sqlx::query_as::<_, PurchaseRow>(
            "SELECT id, account_id, event_id, created_at FROM purchases \
             WHERE account_id = $1 AND event_id = $2",
        )
        .bind(account_id)
        .bind(event_id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("select purchase"))?
        .map(PurchaseRow::into_purchase)
        .transpose()
    }

    /// The account's purchases, oldest first.
    pub async fn purchases_of(&self, account_id: &str) -> Result<Vec<Purchase>, StoreError> {
        sqlx::query_as::<_, PurchaseRow>(
            "SELECT id, account_id, event_id, created_at FROM purchases WHERE account_id = $1 \
             ORDER BY created_at, id",
        )
        .bind(account_id)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("select purchases"))?
        .into_iter()
        .map(PurchaseRow::into_purchase)
        .collect()
    }

    /// Audits the revocation of a viewer session (the session itself lives in the session
    /// store, not here).
    pub(crate) async fn audit_session_revoked(
        &self,
        actor: &Actor,
        session_id: &str,
        account_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(query_failed("acquire"))?;
        record_audit(
            &mut conn,
            &AuditRecord {
                actor,
                action: "session.revoke",
                target_kind: "session",
                target_id: session_id,
                detail: Some(serde_json::json!({ "account_id": account_id })),
            },
            unix_micros(now),
        )
        .await
    }

    /// What may entitle the account to the event.
    pub async fn grants(&self, account_id: &str, event_id: &str) -> Result<Grants, StoreError> {
        let subscriptions = self.subscriptions_of(account_id).await?;
        let mut plan_ids: Vec<String> = subscriptions.iter().map(|s| s.plan_id.clone()).collect();
        plan_ids.sort();
        plan_ids.dedup();
        let plans = if plan_ids.is_empty() {
            Vec::new()
        } else {
            let mut sql = Sql::new(
                "SELECT id, name, max_concurrent_sessions, created_at FROM plans WHERE id IN (",
            );
            sql.bind_list(plan_ids).push(")");
            let rows: Vec<PlanRow> = sql
                .query_as()
                .fetch_all(self.pool())
                .await
                .map_err(query_failed("select plans"))?;
            self.with_categories(rows).await?
        };
        let subscriptions = subscriptions
            .into_iter()
            .filter_map(|s| {
                let plan = plans.iter().find(|p| p.id == s.plan_id)?.clone();
                Some((s, plan))
            })
            .collect();
        Ok(Grants {
            subscriptions,
            purchased: self.purchase_of(account_id, event_id).await?.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = ListCursor {
            created_at_us: 1_700_000_000_000_000,
            id: "abc123".to_string(),
        };
        assert_eq!(cursor.to_string().parse::<ListCursor>().unwrap(), cursor);
        let early = ListCursor {
            created_at_us: -5,
            id: "x".to_string(),
        };
        assert_eq!(early.to_string().parse::<ListCursor>().unwrap(), early);
        for bad in ["", "12", "-abc", "12-", "x-abc", "12-a b"] {
            assert!(bad.parse::<ListCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn subscription_validity_is_half_open() {
        let t = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap();
        let mut subscription = Subscription {
            id: "s".into(),
            account_id: "a".into(),
            plan_id: "p".into(),
            state: SubscriptionState::Active,
            valid_from: t(100),
            valid_until: Some(t(200)),
            created_at: t(0),
            updated_at: t(0),
        };
        assert!(!subscription.is_current(t(99)));
        assert!(subscription.is_current(t(100)));
        assert!(!subscription.is_current(t(200)));
        subscription.valid_until = None;
        assert!(subscription.is_current(t(10_000)));
        for state in ["active", "past_due", "cancelled"] {
            assert_eq!(SubscriptionState::parse(state).unwrap().as_str(), state);
        }
        assert_eq!(SubscriptionState::parse("trial"), None);
    }
}
