//! The shipping tables and queries (sea-orm), on SQLite and PostgreSQL.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::domain::{NewShipment, Shipment, ShipmentStatus, ShippingError, quote};
use kit::values::Amount;

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
    db: DatabaseConnection,
}

impl Store {
    /// A store over a migrated database.
    pub fn new(db: DatabaseConnection) -> Self {
        Store { db }
    }

    /// Books a shipment once per id; a repeat with the same details returns it.
    pub async fn create(&self, request: &NewShipment) -> Result<Shipment, ShippingError> {
        if let Some(existing) = self.find(&request.shipment_id).await? {
            return same(existing, request);
        }
        let quote = quote(&request.address, &request.items);
        let now = kit::values::now_micros();
        let inserted = shipment::Entity::insert(shipment::ActiveModel {
            shipment_id: Set(request.shipment_id.clone()),
            order_id: Set(request.order_id.clone()),
            address: Set(to_json(&request.address)?),
            items: Set(to_json(&request.items)?),
            cost_currency: Set(quote.cost.currency().to_string()),
            cost_nanos: Set(quote.cost.nanos()),
            tracking_number: Set(request.tracking_number()),
            status: Set(ShipmentStatus::Created.as_str().to_string()),
            cancel_reason: Set(String::new()),
            create_micros: Set(now),
            update_micros: Set(now),
        })
        .exec(&self.db)
        .await;
        match inserted {
            Ok(_) => {}
            // A concurrent first call won; answer as a retry would.
            Err(e) if kit::db::is_unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let stored = self.find(&request.shipment_id).await?;
        same(
            stored.ok_or_else(|| ShippingError::NotFound(request.shipment_id.clone()))?,
            request,
        )
    }

    /// Cancels a shipment; cancelling again changes nothing.
    pub async fn cancel(&self, shipment_id: &str, reason: &str) -> Result<Shipment, ShippingError> {
        shipment::Entity::update_many()
            .col_expr(
                shipment::Column::Status,
                Expr::value(ShipmentStatus::Cancelled.as_str()),
            )
            .col_expr(shipment::Column::CancelReason, Expr::value(reason))
            .col_expr(
                shipment::Column::UpdateMicros,
                Expr::value(kit::values::now_micros()),
            )
            .filter(shipment::Column::ShipmentId.eq(shipment_id))
            .filter(shipment::Column::Status.eq(ShipmentStatus::Created.as_str()))
            .exec(&self.db)
            .await?;
        self.get(shipment_id).await
    }

    /// A shipment by id.
    pub async fn get(&self, shipment_id: &str) -> Result<Shipment, ShippingError> {
        self.find(shipment_id)
            .await?
            .ok_or_else(|| ShippingError::NotFound(shipment_id.to_string()))
    }

    async fn find(&self, shipment_id: &str) -> Result<Option<Shipment>, ShippingError> {
        let row = shipment::Entity::find_by_id(shipment_id.to_string())
            .one(&self.db)
            .await?;
        row.map(to_shipment).transpose()
    }
}

/// The stored shipment when it was made by the same request, else a conflict.
fn same(shipment: Shipment, request: &NewShipment) -> Result<Shipment, ShippingError> {
    if shipment.request == *request {
        Ok(shipment)
    } else {
        Err(ShippingError::Conflict(request.shipment_id.clone()))
    }
}

fn to_shipment(row: shipment::Model) -> Result<Shipment, ShippingError> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        ShippingError::Corrupt(format!("shipment {} has a bad {what}: {e}", row.shipment_id))
    };
    let address = serde_json::from_str(&row.address).map_err(|e| corrupt("address", &e))?;
    let items = serde_json::from_str(&row.items).map_err(|e| corrupt("item list", &e))?;
    let status = match row.status.as_str() {
        "CREATED" => ShipmentStatus::Created,
        "CANCELLED" => ShipmentStatus::Cancelled,
        other => return Err(corrupt("status", &other)),
    };
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
