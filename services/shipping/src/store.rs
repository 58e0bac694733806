//! The shipping tables and queries (sea-orm), on SQLite and PostgreSQL.
//! Creating and cancelling claim the shipment id first through
//! [`kit_store::idempotency`], so a repeated call has one effect.

use kit_store::{Claim, Db, IdempotencyError};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::domain::{NewShipment, Shipment, ShipmentStatus, ShippingError, quote};
use kit_values::Amount;

/// The `shipments` table.
#[allow(unreachable_pub)] // the derive macros make public items
pub mod shipment {
    use sea_orm::entity::prelude::*;

    /// A row of `shipments`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "shipments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub shipment_id: String,
        pub order_id: String,
        /// The address, as JSON.
        pub address: String,
        /// The items, as JSON.
        pub items: String,
        pub cost_currency: String,
        pub cost_nanos: i64,
        pub tracking_number: String,
        pub status: String,
        pub cancel_reason: String,
        pub create_micros: i64,
        pub update_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Reads and records shipments.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over a migrated database.
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    /// Books a shipment once per id; a repeat with the same details answers the first result.
    pub async fn create(&self, request: &NewShipment) -> Result<Shipment, ShippingError> {
        let claim: Claim<Shipment> = kit_store::claim(
            &self.db,
            "shipping.create",
            &request.shipment_id,
            &to_json(request)?,
        )
        .await
        .map_err(|e| conflict_as(e, &request.shipment_id))?;
        let pending = match claim {
            // Answered as it stands now: a retried creation does not revive a cancelled one.
            Claim::Replay(shipment) => return self.get(&shipment.request.shipment_id).await,
            Claim::Won(pending) => pending,
        };
        let quote = quote(&request.address, &request.items);
        let now = kit_values::now_micros();
        let shipment = Shipment {
            request: request.clone(),
            cost: quote.cost,
            tracking_number: request.tracking_number(),
            status: ShipmentStatus::Created,
            cancel_reason: String::new(),
            create_micros: now,
            update_micros: now,
        };
        shipment::Entity::insert(shipment::ActiveModel {
            shipment_id: Set(request.shipment_id.clone()),
            order_id: Set(request.order_id.clone()),
            address: Set(to_json(&request.address)?),
            items: Set(to_json(&request.items)?),
            cost_currency: Set(shipment.cost.currency().to_string()),
            cost_nanos: Set(shipment.cost.nanos()),
            tracking_number: Set(shipment.tracking_number.clone()),
            status: Set(ShipmentStatus::Created.as_str().to_string()),
            cancel_reason: Set(String::new()),
            create_micros: Set(now),
            update_micros: Set(now),
        })
        .exec(pending.txn())
        .await?;
        pending.complete(&shipment).await?;
        Ok(shipment)
    }

    /// Cancels a shipment; cancelling again answers the first cancellation.
    pub async fn cancel(&self, shipment_id: &str, reason: &str) -> Result<Shipment, ShippingError> {
        let claim = kit_store::claim(&self.db, "shipping.cancel", shipment_id, "cancel")
            .await
            .map_err(|e| conflict_as(e, shipment_id))?;
        let pending = match claim {
            Claim::Replay(shipment) => return Ok(shipment),
            Claim::Won(pending) => pending,
        };
        shipment::Entity::update_many()
            .col_expr(
                shipment::Column::Status,
                Expr::value(ShipmentStatus::Cancelled.as_str()),
            )
            .col_expr(shipment::Column::CancelReason, Expr::value(reason))
            .col_expr(
                shipment::Column::UpdateMicros,
                Expr::value(kit_values::now_micros()),
            )
            .filter(shipment::Column::ShipmentId.eq(shipment_id))
            .filter(shipment::Column::Status.eq(ShipmentStatus::Created.as_str()))
            .exec(pending.txn())
            .await?;
        let shipment = find(pending.txn(), shipment_id)
            .await?
            .ok_or_else(|| ShippingError::NotFound(shipment_id.to_string()))?;
        pending.complete(&shipment).await?;
        Ok(shipment)
    }

    /// A shipment by id.
    pub async fn get(&self, shipment_id: &str) -> Result<Shipment, ShippingError> {
        find(self.db.read(), shipment_id)
            .await?
            .ok_or_else(|| ShippingError::NotFound(shipment_id.to_string()))
    }
}

async fn find(db: &impl ConnectionTrait, shipment_id: &str) -> Result<Option<Shipment>, ShippingError> {
    let row = shipment::Entity::find_by_id(shipment_id.to_string())
        .one(db)
        .await?;
    row.map(to_shipment).transpose()
}

/// A reused id is shipping's own conflict; the rest are store failures.
fn conflict_as(error: IdempotencyError, shipment_id: &str) -> ShippingError {
    match error {
        IdempotencyError::Conflict { .. } => ShippingError::Conflict(shipment_id.to_string()),
        other => ShippingError::Idempotency(other),
    }
}

fn to_shipment(row: shipment::Model) -> Result<Shipment, ShippingError> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        ShippingError::Corrupt(format!("shipment {} has a bad {what}: {e}", row.shipment_id))
    };
    let address = serde_json::from_str(&row.address).map_err(|e| corrupt("address", &e))?;
    let items = serde_json::from_str(&row.items).map_err(|e| corrupt("item list", &e))?;
    let status = ShipmentStatus::from_stored(&row.status).ok_or_else(|| corrupt("status", &row.status))?;
    Ok(Shipment {
        request: NewShipment {
            shipment_id: row.shipment_id.clone(),
            order_id: row.order_id.clone(),
            address,
            items,
        },
        cost: Amount::from_nanos(row.cost_currency.clone(), row.cost_nanos),
        tracking_number: row.tracking_number.clone(),
        status,
        cancel_reason: row.cancel_reason.clone(),
        create_micros: row.create_micros,
        update_micros: row.update_micros,
    })
}

/// JSON for the columns that hold structured values.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ShippingError> {
    serde_json::to_string(value).map_err(|e| ShippingError::Corrupt(e.to_string()))
}
