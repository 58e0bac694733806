use sea_orm_migration::prelude::*;

use super::m20261125_000001_create_tables::Stock;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

/// Units on hand for each of the catalog's products.
const SEED: &[(&str, i64)] = &[
    ("air-plant", 120),
    ("bamboo-glass-jar", 80),
    ("candle-holder", 60),
    ("canvas-tote", 150),
    ("city-bike", 3),
    ("espresso-grinder", 25),
    ("film-camera", 5),
    ("hairdryer", 40),
    ("loafers", 30),
    ("mug", 200),
    ("salt-pepper-shakers", 90),
    ("sunglasses", 100),
    ("tank-top", 100),
    ("terrarium", 35),
    ("vintage-typewriter", 10),
    ("watch", 50),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut insert = Query::insert();
        insert
            .into_table(Stock::Table)
            .columns([Stock::Sku, Stock::OnHand, Stock::Reserved]);
        for (sku, on_hand) in SEED {
            insert.values_panic([(*sku).into(), (*on_hand).into(), 0i64.into()]);
        }
        manager.exec_stmt(insert).await
    }
}
