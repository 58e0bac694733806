//! The orders tables and queries (sea-orm), on SQLite and PostgreSQL.
//! Placing with an idempotency key claims it first through
//! [`kit_store::idempotency`], so a repeated call places one order.

use std::collections::BTreeMap;

use kit_store::{Claim, Db, IdempotencyError};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::domain::{LineStatus, Order, OrderQuery, OrderStatus, OrdersError, PricedLine, ShippingOption};
use kit_values::Amount;

/// The `orders` table.
#[allow(unreachable_pub)] // the derive macros make public items
pub mod order {
    use sea_orm::entity::prelude::*;

    /// A row of `orders`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        #[sea_orm(unique)]
        pub idempotency_key: Option<String>,
        pub fingerprint: String,
        pub customer_email: String,
        /// The address, as JSON.
        pub address: String,
        pub shipping_option: String,
        pub shipping_currency: String,
        pub shipping_nanos: i64,
        pub status: String,
        pub status_reason: String,
        pub create_micros: i64,
        pub update_micros: i64,
        pub card_token: String,
        pub execution_name: String,
        pub saga_started: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `order_items` table.
#[allow(unreachable_pub)]
pub mod order_item {
    use sea_orm::entity::prelude::*;

    /// A row of `order_items`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub line_no: i32,
        pub product_id: String,
        pub product_name: String,
        pub quantity: i32,
        pub currency: String,
        pub unit_price_nanos: i64,
        pub status: String,
        pub unit_weight_grams: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Reads and records orders.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

/// The idempotency scope of PlaceOrder's keys.
const PLACE: &str = "orders.place";

/// A customer's key as claimed: one customer's keys never collide with,
/// or reveal, another's (a hash, so it fits the claims' 128 characters).
fn claim_key(customer_email: &str, key: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(customer_email.to_ascii_lowercase().as_bytes());
    hasher.update(&[0]);
    hasher.update(key.as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// A customer's key as kept in `orders.idempotency_key` (unique): the
/// customer's short hash, `/` (which no key contains), the key.
fn stored_key(customer_email: &str, key: &str) -> String {
    let customer = blake3::hash(customer_email.to_ascii_lowercase().as_bytes()).to_hex();
    format!("{}/{key}", &customer[..16])
}

/// The caller's key from its stored form (rows placed before keys were
/// scoped hold the bare key).
fn unscoped(stored: String) -> String {
    match stored.split_once('/') {
        Some((_, key)) => key.to_string(),
        None => stored,
    }
}

impl Store {
    /// A store over a migrated database.
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    /// The order an earlier call of this customer with the same
    /// idempotency key placed, if it finished; a look before the work, to
    /// spare a retry the catalog calls.
    pub async fn placed_with(
        &self,
        customer_email: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<Order>, OrdersError> {
        let scoped = claim_key(customer_email, key);
        let placed: Option<Order> = kit_store::idempotency::stored(&self.db, PLACE, &scoped, fingerprint)
            .await
            .map_err(|e| conflict_as(e, key))?;
        if let Some(order) = placed {
            return self.get(&order.order_id).await.map(Some);
        }
        // Keys claimed before they were scoped by customer: the order
        // answers a retry of its own customer only, and is invisible to
        // anyone else (who gets a key of their own).
        match kit_store::idempotency::stored::<Order>(&self.db, PLACE, key, fingerprint).await {
            Ok(Some(order)) if order.customer_email.eq_ignore_ascii_case(customer_email) => {
                self.get(&order.order_id).await.map(Some)
            }
            Ok(_) | Err(IdempotencyError::Conflict { .. }) => Ok(None),
            Err(other) => Err(OrdersError::Idempotency(other)),
        }
    }

    /// Stores a new order with its lines. With an idempotency key, the key
    /// (scoped by the customer) is claimed first: a call that finds it
    /// taken answers the order placed with it.
    pub async fn place(&self, order: Order, fingerprint: &str) -> Result<Order, OrdersError> {
        let Some(key) = order.idempotency_key.clone() else {
            let txn = self.db.begin().await?;
            insert(&txn, &order, fingerprint).await?;
            txn.commit().await?;
            return Ok(order);
        };
        let scoped = claim_key(&order.customer_email, &key);
        let claim: Claim<Order> = kit_store::claim(&self.db, PLACE, &scoped, fingerprint)
            .await
            .map_err(|e| conflict_as(e, &key))?;
        match claim {
            // Answered as it stands now: confirmed, failed or cancelled since.
            Claim::Replay(order) => self.get(&order.order_id).await,
            Claim::Won(pending) => {
                insert(pending.txn(), &order, fingerprint).await?;
                pending.complete(&order).await?;
                Ok(order)
            }
        }
    }

    /// An order by id.
    pub async fn get(&self, order_id: &str) -> Result<Order, OrdersError> {
        let row = order::Entity::find_by_id(order_id.to_string())
            .one(self.db.read())
            .await?;
        let row = row.ok_or_else(|| OrdersError::NotFound(order_id.to_string()))?;
        Ok(load_all(self.db.read(), vec![row]).await?.remove(0))
    }

    /// A page of orders, newest first, and the key to resume after.
    pub async fn list(&self, query: &OrderQuery) -> Result<(Vec<Order>, Option<String>), OrdersError> {
        let mut select = order::Entity::find();
        if let Some(email) = &query.customer_email {
            select = select.filter(order::Column::CustomerEmail.eq(email.as_str()));
        }
        if let Some(status) = query.status {
            select = select.filter(order::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = query.page.after.as_deref() {
            let Some((micros, id)) = parse_cursor(after) else {
                let mut v = kit_values::Violations::new();
                v.add(
                    "page_token",
                    "is not a token this service issued: pass back next_page_token unchanged",
                );
                return Err(v.into());
            };
            select = select.filter(
                Condition::any().add(order::Column::CreateMicros.lt(micros)).add(
                    Condition::all()
                        .add(order::Column::CreateMicros.eq(micros))
                        .add(order::Column::OrderId.lt(id)),
                ),
            );
        }
        let mut rows = select
            .order_by_desc(order::Column::CreateMicros)
            .order_by_desc(order::Column::OrderId)
            .limit(u64::from(query.page.size) + 1)
            .all(self.db.read())
            .await?;
        let more = rows.len() > query.page.size as usize;
        rows.truncate(query.page.size as usize);
        let next = if more {
            rows.last().map(|r| format!("{}:{}", r.create_micros, r.order_id))
        } else {
            None
        };
        Ok((load_all(self.db.read(), rows).await?, next))
    }

    /// Notes that workflow accepted the order's saga.
    pub async fn mark_saga_started(&self, order_id: &str) -> Result<(), OrdersError> {
        order::Entity::update_many()
            .col_expr(order::Column::SagaStarted, Expr::value(true))
            .filter(order::Column::OrderId.eq(order_id))
            .exec(self.db.write())
            .await?;
        Ok(())
    }

    /// PENDING orders placed before `before_micros` whose saga has not started, oldest first.
    pub async fn sagas_not_started(&self, before_micros: i64, limit: u64) -> Result<Vec<Order>, OrdersError> {
        let rows = order::Entity::find()
            .filter(order::Column::SagaStarted.eq(false))
            .filter(order::Column::Status.eq(OrderStatus::Pending.as_str()))
            .filter(order::Column::ExecutionName.ne(""))
            .filter(order::Column::CreateMicros.lt(before_micros))
            .order_by_asc(order::Column::CreateMicros)
            .limit(limit)
            .all(self.db.read())
            .await?;
        load_all(self.db.read(), rows).await
    }

    /// PENDING becomes CONFIRMED (lines confirmed) or FAILED (lines
    /// cancelled); settling again the same way changes nothing.
    pub async fn settle(
        &self,
        order_id: &str,
        to: OrderStatus,
        reason: &str,
    ) -> Result<(Order, bool), OrdersError> {
        let line_status = match to {
            OrderStatus::Confirmed => LineStatus::Confirmed,
            _ => LineStatus::Cancelled,
        };
        let txn = self.db.begin().await?;
        let moved = order::Entity::update_many()
            .col_expr(order::Column::Status, Expr::value(to.as_str()))
            .col_expr(order::Column::StatusReason, Expr::value(reason))
            .col_expr(order::Column::UpdateMicros, Expr::value(kit_values::now_micros()))
            .filter(order::Column::OrderId.eq(order_id))
            .filter(order::Column::Status.eq(OrderStatus::Pending.as_str()))
            .exec(&txn)
            .await?;
        if moved.rows_affected == 1 {
            order_item::Entity::update_many()
                .col_expr(order_item::Column::Status, Expr::value(line_status.as_str()))
                .filter(order_item::Column::OrderId.eq(order_id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        let order = self.get(order_id).await?;
        // A customer's cancel that came first stands: the saga undid its
        // work and only wants the order out of PENDING, which it is.
        let settled =
            order.status == to || (to == OrderStatus::Failed && order.status == OrderStatus::Cancelled);
        if settled {
            Ok((order, moved.rows_affected == 1))
        } else {
            Err(OrdersError::NotPending {
                id: order_id.to_string(),
                status: order.status,
                to: to.as_str(),
            })
        }
    }

    /// PENDING becomes CANCELLED; cancelling again changes nothing.
    pub async fn cancel(&self, order_id: &str, reason: &str) -> Result<(Order, bool), OrdersError> {
        let txn = self.db.begin().await?;
        let moved = order::Entity::update_many()
            .col_expr(
                order::Column::Status,
                Expr::value(OrderStatus::Cancelled.as_str()),
            )
            .col_expr(order::Column::StatusReason, Expr::value(reason))
            .col_expr(order::Column::UpdateMicros, Expr::value(kit_values::now_micros()))
            .filter(order::Column::OrderId.eq(order_id))
            .filter(order::Column::Status.eq(OrderStatus::Pending.as_str()))
            .exec(&txn)
            .await?;
        if moved.rows_affected == 1 {
            order_item::Entity::update_many()
                .col_expr(
                    order_item::Column::Status,
                    Expr::value(LineStatus::Cancelled.as_str()),
                )
                .filter(order_item::Column::OrderId.eq(order_id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        let order = self.get(order_id).await?;
        match order.status {
            OrderStatus::Cancelled => Ok((order, moved.rows_affected == 1)),
            status => Err(OrdersError::NotCancellable {
                id: order_id.to_string(),
                status,
            }),
        }
    }
}

/// A reused key is the orders' own conflict; the rest are store failures.
fn conflict_as(error: IdempotencyError, key: &str) -> OrdersError {
    match error {
        IdempotencyError::Conflict { .. } => OrdersError::Conflict(key.to_string()),
        other => OrdersError::Idempotency(other),
    }
}

async fn insert(txn: &DatabaseTransaction, order: &Order, fingerprint: &str) -> Result<(), OrdersError> {
    let row = order::ActiveModel {
        order_id: Set(order.order_id.clone()),
        idempotency_key: Set(order
            .idempotency_key
            .as_deref()
            .map(|key| stored_key(&order.customer_email, key))),
        fingerprint: Set(fingerprint.to_string()),
        customer_email: Set(order.customer_email.clone()),
        address: Set(serde_json::to_string(&order.address).map_err(|e| OrdersError::Corrupt(e.to_string()))?),
        shipping_option: Set(order.shipping.as_str().to_string()),
        shipping_currency: Set(order.shipping_cost.currency().to_string()),
        shipping_nanos: Set(order.shipping_cost.nanos()),
        status: Set(order.status.as_str().to_string()),
        status_reason: Set(order.status_reason.clone()),
        create_micros: Set(order.create_micros),
        update_micros: Set(order.update_micros),
        card_token: Set(order.card_token.clone()),
        execution_name: Set(order.execution_name.clone()),
        saga_started: Set(order.saga_started),
    };
    order::Entity::insert(row).exec(txn).await?;
    order_item::Entity::insert_many(order.lines.iter().enumerate().map(|(i, line)| {
        order_item::ActiveModel {
            order_id: Set(order.order_id.clone()),
            line_no: Set(i32::try_from(i).unwrap_or(i32::MAX)),
            product_id: Set(line.product_id.clone()),
            product_name: Set(line.product_name.clone()),
            quantity: Set(line.quantity),
            currency: Set(line.unit_price.currency().to_string()),
            unit_price_nanos: Set(line.unit_price.nanos()),
            status: Set(line.status.as_str().to_string()),
            unit_weight_grams: Set(line.unit_weight_grams),
        }
    }))
    .exec(txn)
    .await?;
    Ok(())
}

fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (micros, id) = cursor.split_once(':')?;
    Some((micros.parse().ok()?, id.to_string()))
}

/// Orders with their lines, in the order of `rows`, in two queries.
async fn load_all(db: &impl ConnectionTrait, rows: Vec<order::Model>) -> Result<Vec<Order>, OrdersError> {
    let ids: Vec<String> = rows.iter().map(|r| r.order_id.clone()).collect();
    let mut lines: BTreeMap<String, Vec<PricedLine>> = BTreeMap::new();
    if !ids.is_empty() {
        let items = order_item::Entity::find()
            .filter(order_item::Column::OrderId.is_in(ids))
            .order_by_asc(order_item::Column::OrderId)
            .order_by_asc(order_item::Column::LineNo)
            .all(db)
            .await?;
        for item in items {
            let status = LineStatus::from_stored(&item.status)
                .ok_or_else(|| OrdersError::Corrupt(format!("line status {}", item.status)))?;
            lines.entry(item.order_id.clone()).or_default().push(PricedLine {
                product_id: item.product_id,
                product_name: item.product_name,
                quantity: item.quantity,
                unit_price: Amount::from_nanos(item.currency, item.unit_price_nanos),
                status,
                unit_weight_grams: item.unit_weight_grams,
            });
        }
    }
    rows.into_iter()
        .map(|row| {
            let corrupt =
                |what: &str| OrdersError::Corrupt(format!("order {} has a bad {what}", row.order_id));
            Ok(Order {
                lines: lines.remove(&row.order_id).unwrap_or_default(),
                address: serde_json::from_str(&row.address).map_err(|_| corrupt("address"))?,
                shipping: ShippingOption::from_stored(&row.shipping_option)
                    .ok_or_else(|| corrupt("shipping option"))?,
                shipping_cost: Amount::from_nanos(row.shipping_currency.clone(), row.shipping_nanos),
                status: OrderStatus::from_stored(&row.status).ok_or_else(|| corrupt("status"))?,
                order_id: row.order_id,
                idempotency_key: row.idempotency_key.map(unscoped),
                customer_email: row.customer_email,
                status_reason: row.status_reason,
                create_micros: row.create_micros,
                update_micros: row.update_micros,
                card_token: row.card_token,
                execution_name: row.execution_name,
                saga_started: row.saga_started,
                progress: String::new(),
            })
        })
        .collect()
}
