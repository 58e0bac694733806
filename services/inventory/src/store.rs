//! The inventory's tables and queries (sea-orm), on SQLite and PostgreSQL.
//!
//! Stock is only ever changed by conditional updates inside transactions
//! (`reserved = reserved + q WHERE on_hand - reserved >= q`), so concurrent
//! reservations can never take more than there is; a CHECK constraint in the
//! schema guards the same rule once more. Every change claims its id first
//! through [`kit_store::idempotency`], so a repeated call has one effect.

use std::collections::BTreeMap;

use kit_store::{Claim, Db, IdempotencyError};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::domain::{
    InventoryError, Item, Reservation, ReservationStatus, ReserveStock, Shortfall, StockLevel,
};

/// The `stock` table: one row per SKU.
#[allow(unreachable_pub)] // the derive macros make public items
pub mod stock {
    use sea_orm::entity::prelude::*;

    /// A row of `stock`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stock")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sku: String,
        pub on_hand: i64,
        pub reserved: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `reservations` table.
#[allow(unreachable_pub)]
pub(crate) mod reservation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reservation_id: String,
        pub status: String,
        pub create_micros: i64,
        pub update_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `reservation_items` table.
#[allow(unreachable_pub)]
pub(crate) mod reservation_item {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservation_items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reservation_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sku: String,
        pub quantity: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Reads and changes stock and reservations.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over a migrated database.
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    /// The stock of each SKU, in the order asked.
    pub async fn levels(&self, skus: &[String]) -> Result<Vec<StockLevel>, InventoryError> {
        let rows = stock::Entity::find()
            .filter(stock::Column::Sku.is_in(skus.iter().cloned()))
            .all(self.db.read())
            .await?;
        let by_sku: BTreeMap<String, stock::Model> = rows.into_iter().map(|r| (r.sku.clone(), r)).collect();
        let unknown: Vec<String> = skus
            .iter()
            .filter(|s| !by_sku.contains_key(*s))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(InventoryError::UnknownSkus(unknown));
        }
        Ok(skus
            .iter()
            .filter_map(|s| by_sku.get(s))
            .map(|r| StockLevel {
                sku: r.sku.clone(),
                on_hand: r.on_hand,
                reserved: r.reserved,
            })
            .collect())
    }

    /// Adds a delivery to the stock on hand, once per receipt id.
    pub async fn receive(&self, receipt: &ReserveStock) -> Result<Vec<StockLevel>, InventoryError> {
        let claim: Claim<Vec<String>> = kit_store::claim(
            &self.db,
            "inventory.receive",
            &receipt.reservation_id,
            &receipt.fingerprint(),
        )
        .await
        .map_err(|e| conflict_as(e, &receipt.reservation_id))?;
        let skus: Vec<String> = receipt.items.iter().map(|i| i.sku.clone()).collect();
        let pending = match claim {
            Claim::Replay(_) => return self.levels(&skus).await,
            Claim::Won(pending) => pending,
        };
        for item in &receipt.items {
            let added = stock::Entity::update_many()
                .col_expr(
                    stock::Column::OnHand,
                    Expr::col(stock::Column::OnHand).add(item.quantity),
                )
                .filter(stock::Column::Sku.eq(item.sku.as_str()))
                .exec(pending.txn())
                .await?;
            if added.rows_affected == 0 {
                return Err(InventoryError::UnknownSkus(vec![item.sku.clone()]));
            }
        }
        pending.complete(&skus).await?;
        self.levels(&skus).await
    }

    /// Holds every item or none; the same id with the same items answers the first result.
    pub async fn reserve(&self, request: &ReserveStock) -> Result<Reservation, InventoryError> {
        let claim: Claim<Reservation> = kit_store::claim(
            &self.db,
            "inventory.reserve",
            &request.reservation_id,
            &request.fingerprint(),
        )
        .await
        .map_err(|e| conflict_as(e, &request.reservation_id))?;
        let pending = match claim {
            // Answered as it stands now, committed or released since.
            Claim::Replay(reservation) => return self.get(&reservation.reservation_id).await,
            Claim::Won(pending) => pending,
        };
        let txn = pending.txn();
        let skus: Vec<String> = request.items.iter().map(|i| i.sku.clone()).collect();
        let rows = stock::Entity::find()
            .filter(stock::Column::Sku.is_in(skus.clone()))
            .all(txn)
            .await?;
        let by_sku: BTreeMap<String, stock::Model> = rows.into_iter().map(|r| (r.sku.clone(), r)).collect();
        let unknown: Vec<String> = skus.into_iter().filter(|s| !by_sku.contains_key(s)).collect();
        if !unknown.is_empty() {
            return Err(InventoryError::UnknownSkus(unknown));
        }

        let mut shortfalls = Vec::new();
        for item in &request.items {
            let taken = stock::Entity::update_many()
                .col_expr(
                    stock::Column::Reserved,
                    Expr::col(stock::Column::Reserved).add(item.quantity),
                )
                .filter(stock::Column::Sku.eq(item.sku.as_str()))
                .filter(
                    Expr::col(stock::Column::OnHand)
                        .sub(Expr::col(stock::Column::Reserved))
                        .gte(item.quantity),
                )
                .exec(txn)
                .await?;
            if taken.rows_affected == 0 {
                let available = by_sku
                    .get(&item.sku)
                    .map(|r| Ord::max(r.on_hand - r.reserved, 0))
                    .unwrap_or(0);
                shortfalls.push(Shortfall {
                    sku: item.sku.clone(),
                    requested: item.quantity,
                    available,
                });
            }
        }
        if !shortfalls.is_empty() {
            // Dropping the claim rolls back what was taken, and frees the id.
            return Err(InventoryError::Insufficient(shortfalls));
        }

        let now = kit_values::now_micros();
        reservation::Entity::insert(reservation::ActiveModel {
            reservation_id: Set(request.reservation_id.clone()),
            status: Set(ReservationStatus::Reserved.as_str().to_string()),
            create_micros: Set(now),
            update_micros: Set(now),
        })
        .exec(txn)
        .await?;
        reservation_item::Entity::insert_many(request.items.iter().map(|item| {
            reservation_item::ActiveModel {
                reservation_id: Set(request.reservation_id.clone()),
                sku: Set(item.sku.clone()),
                quantity: Set(item.quantity),
            }
        }))
        .exec(txn)
        .await?;
        let reservation = Reservation {
            reservation_id: request.reservation_id.clone(),
            items: request.items.clone(),
            status: ReservationStatus::Reserved,
            create_micros: now,
            update_micros: now,
        };
        pending.complete(&reservation).await?;
        Ok(reservation)
    }

    /// A reservation by id.
    pub async fn get(&self, reservation_id: &str) -> Result<Reservation, InventoryError> {
        load(self.db.read(), reservation_id)
            .await?
            .ok_or_else(|| InventoryError::NotFound(reservation_id.to_string()))
    }

    /// RESERVED becomes COMMITTED (the units leave on_hand); repeating is harmless.
    pub async fn commit(&self, reservation_id: &str) -> Result<Reservation, InventoryError> {
        self.settle(reservation_id, ReservationStatus::Committed).await
    }

    /// RESERVED becomes RELEASED (the units return to available); repeating is harmless.
    pub async fn release(&self, reservation_id: &str) -> Result<Reservation, InventoryError> {
        self.settle(reservation_id, ReservationStatus::Released).await
    }

    async fn settle(
        &self,
        reservation_id: &str,
        to: ReservationStatus,
    ) -> Result<Reservation, InventoryError> {
        let scope = match to {
            ReservationStatus::Committed => "inventory.commit",
            _ => "inventory.release",
        };
        let claim = kit_store::claim(&self.db, scope, reservation_id, to.as_str())
            .await
            .map_err(|e| conflict_as(e, reservation_id))?;
        let pending = match claim {
            Claim::Replay(reservation) => return Ok(reservation),
            Claim::Won(pending) => pending,
        };
        let txn = pending.txn();
        let now = kit_values::now_micros();
        // Only one of a Commit and a Release can move the reservation out of RESERVED.
        let moved = reservation::Entity::update_many()
            .col_expr(reservation::Column::Status, Expr::value(to.as_str()))
            .col_expr(reservation::Column::UpdateMicros, Expr::value(now))
            .filter(reservation::Column::ReservationId.eq(reservation_id))
            .filter(reservation::Column::Status.eq(ReservationStatus::Reserved.as_str()))
            .exec(txn)
            .await?;
        let Some(current) = load(txn, reservation_id).await? else {
            return Err(InventoryError::NotFound(reservation_id.to_string()));
        };
        if moved.rows_affected == 1 {
            for item in &current.items {
                let mut update = stock::Entity::update_many().col_expr(
                    stock::Column::Reserved,
                    Expr::col(stock::Column::Reserved).sub(item.quantity),
                );
                if to == ReservationStatus::Committed {
                    update = update.col_expr(
                        stock::Column::OnHand,
                        Expr::col(stock::Column::OnHand).sub(item.quantity),
                    );
                }
                update
                    .filter(stock::Column::Sku.eq(item.sku.as_str()))
                    .exec(txn)
                    .await?;
            }
        } else if current.status != to {
            let wanted = if to == ReservationStatus::Committed {
                "committed"
            } else {
                "released"
            };
            return Err(InventoryError::WrongState {
                id: reservation_id.to_string(),
                status: current.status,
                wanted,
            });
        }
        pending.complete(&current).await?;
        Ok(current)
    }
}

/// A reused id is the inventory's own conflict; the rest are store failures.
fn conflict_as(error: IdempotencyError, reservation_id: &str) -> InventoryError {
    match error {
        IdempotencyError::Conflict { .. } => InventoryError::Conflict(reservation_id.to_string()),
        other => InventoryError::Idempotency(other),
    }
}

async fn load(
    txn: &impl ConnectionTrait,
    reservation_id: &str,
) -> Result<Option<Reservation>, InventoryError> {
    let Some(row) = reservation::Entity::find_by_id(reservation_id.to_string())
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let items = reservation_item::Entity::find()
        .filter(reservation_item::Column::ReservationId.eq(reservation_id))
        .order_by_asc(reservation_item::Column::Sku)
        .all(txn)
        .await?
        .into_iter()
        .map(|i| Item {
            sku: i.sku,
            quantity: i.quantity,
        })
        .collect();
    let status = ReservationStatus::from_stored(&row.status).ok_or_else(|| {
        InventoryError::Corrupt(format!("reservation {reservation_id} has status {}", row.status))
    })?;
    Ok(Some(Reservation {
        reservation_id: row.reservation_id,
        items,
        status,
        create_micros: row.create_micros,
        update_micros: row.update_micros,
    }))
}
