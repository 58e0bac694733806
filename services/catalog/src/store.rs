//! The catalog's table (sea-orm), on SQLite and PostgreSQL alike, and the
//! in-memory snapshot of it that serves every read.
//!
//! The catalog is small and read-mostly: it is read whole at start-up and
//! re-read every refresh interval; when what is stored changed (a price
//! edited in the database, a migration that adds products), the new
//! snapshot replaces the old one for the calls that follow.

use std::sync::Arc;
use std::time::Duration;

use kit_store::Db;
use sea_orm::{EntityTrait, QueryOrder};
use tokio::sync::watch;

use crate::domain::{Catalog, CatalogError, Price, Product, ProductId};

/// The `products` table.
#[allow(unreachable_pub)] // the derive macros make public items
pub(crate) mod product {
    use sea_orm::entity::prelude::*;

    /// A row of `products`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub description: String,
        pub picture: String,
        pub price_currency: String,
        pub price_units: i64,
        pub price_nanos: i32,
        /// Comma-separated, lowercase.
        pub categories: String,
        pub weight_grams: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Reads the catalog's table.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: Db,
}

impl Store {
    pub(crate) fn new(db: Db) -> Self {
        Store { db }
    }

    /// Every product, by id.
    pub(crate) async fn all(&self) -> Result<Vec<Product>, CatalogError> {
        let rows = product::Entity::find()
            .order_by_asc(product::Column::Id)
            .all(self.db.read())
            .await?;
        rows.into_iter().map(to_product).collect()
    }
}

/// The catalog as last read from the database; cheap to read from any task.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    current: watch::Receiver<Arc<Catalog>>,
}

impl Snapshot {
    /// Reads the catalog, then re-reads it every `refresh` on a task that
    /// ends when the last `Snapshot` is dropped.
    pub(crate) async fn start(store: Store, refresh: Duration) -> Result<Self, CatalogError> {
        let first = Catalog::new(store.all().await?);
        tracing::info!(products = first.len(), "catalog loaded");
        let (publish, current) = watch::channel(Arc::new(first));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = publish.closed() => return,
                    () = tokio::time::sleep(refresh) => {}
                }
                match store.all().await {
                    Ok(products) => {
                        let fresh = Catalog::new(products);
                        publish.send_if_modified(|held| {
                            let changed = **held != fresh;
                            if changed {
                                tracing::info!(
                                    products = fresh.len(),
                                    "catalog changed: serving the new snapshot"
                                );
                                *held = Arc::new(fresh);
                            }
                            changed
                        });
                    }
                    // Keep serving the last good snapshot; the next refresh tries again.
                    Err(error) => tracing::warn!(error = %error, "catalog refresh failed"),
                }
            }
        });
        Ok(Snapshot { current })
    }

    /// The catalog now.
    pub(crate) fn current(&self) -> Arc<Catalog> {
        self.current.borrow().clone()
    }
}

fn to_product(row: product::Model) -> Result<Product, CatalogError> {
    let id = ProductId::parse(&row.id).map_err(|reason| CatalogError::Corrupt {
        id: row.id.clone(),
        reason,
    })?;
    Ok(Product {
        id,
        name: row.name,
        description: row.description,
        picture: row.picture,
        price: Price {
            currency_code: row.price_currency,
            units: row.price_units,
            nanos: row.price_nanos,
        },
        categories: row
            .categories
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        weight_grams: row.weight_grams,
    })
}
