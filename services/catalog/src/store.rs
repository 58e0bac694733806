//! The catalog's tables and queries (sea-orm). Runs on SQLite and PostgreSQL alike.

use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::domain::{CatalogError, Price, Product, ProductId, ProductPage};
use kit::paging::PageRequest;

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

/// Reads the catalog.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: DatabaseConnection,
}

impl Store {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Store { db }
    }

    pub(crate) async fn get(&self, id: &ProductId) -> Result<Product, CatalogError> {
        let row = product::Entity::find_by_id(id.as_str().to_string())
            .one(&self.db)
            .await?;
        row.map(to_product)
            .transpose()?
            .ok_or_else(|| CatalogError::NotFound(id.clone()))
    }

    /// A page of the products matching `filter`, by id.
    pub(crate) async fn page(
        &self,
        filter: Condition,
        page: &PageRequest,
    ) -> Result<ProductPage, CatalogError> {
        let total = product::Entity::find()
            .filter(filter.clone())
            .count(&self.db)
            .await?;
        let mut query = product::Entity::find().filter(filter);
        if let Some(after) = &page.after {
            query = query.filter(product::Column::Id.gt(after.as_str()));
        }
        // One row more than asked tells whether another page follows.
        let mut rows = query
            .order_by_asc(product::Column::Id)
            .limit(u64::from(page.size) + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() > page.size as usize;
        rows.truncate(page.size as usize);
        let next_after = if more {
            rows.last().map(|r| r.id.clone())
        } else {
            None
        };
        let products = rows.into_iter().map(to_product).collect::<Result<Vec<_>, _>>()?;
        Ok(ProductPage {
            products,
            next_after,
            total,
        })
    }
}

/// Every word must appear, ignoring case, in the name, description or categories.
pub(crate) fn matching(words: &[String]) -> Condition {
    words.iter().fold(Condition::all(), |all, word| {
        let pattern = format!("%{}%", escape_like(word));
        let in_column = |column: product::Column| {
            Expr::expr(Func::lower(Expr::col(column))).like(LikeExpr::new(pattern.clone()).escape('\\'))
        };
        all.add(
            Condition::any()
                .add(in_column(product::Column::Name))
                .add(in_column(product::Column::Description))
                .add(in_column(product::Column::Categories)),
        )
    })
}

fn escape_like(word: &str) -> String {
    let mut escaped = String::with_capacity(word.len());
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
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
