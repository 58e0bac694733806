use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Name,
    Description,
    Picture,
    PriceCurrency,
    PriceUnits,
    PriceNanos,
    Categories,
    WeightGrams,
}

/// id, name, description, price units, price nanos, categories, weight in grams; all USD.
const SEED: &[(&str, &str, &str, i64, i32, &str, i32)] = &[
    (
        "air-plant",
        "Air Plant",
        "Have you ever wondered whether air plants need water? Hint: they do!",
        12,
        300_000_000,
        "garden,home",
        150,
    ),
    (
        "bamboo-glass-jar",
        "Bamboo Glass Jar",
        "This bamboo glass jar can hold 57 oz (1.7 l) and is perfect for any kitchen.",
        5,
        490_000_000,
        "kitchen",
        350,
    ),
    (
        "candle-holder",
        "Candle Holder",
        "This small but intricate candle holder is an excellent gift.",
        18,
        990_000_000,
        "decor,home",
        450,
    ),
    (
        "canvas-tote",
        "Canvas Tote",
        "A sturdy cotton tote for the market, the beach or the office.",
        14,
        500_000_000,
        "accessories",
        200,
    ),
    (
        "city-bike",
        "City Bike",
        "This single gear bike probably cannot climb the hills of San Francisco.",
        789,
        500_000_000,
        "cycling",
        12_500,
    ),
    (
        "espresso-grinder",
        "Espresso Grinder",
        "A burr grinder with forty settings, from espresso to French press.",
        149,
        0,
        "kitchen,coffee",
        2_600,
    ),
    (
        "film-camera",
        "Film Camera",
        "This camera looks like it is a film camera, but it is actually digital.",
        2245,
        0,
        "photography,vintage",
        900,
    ),
    (
        "hairdryer",
        "Hairdryer",
        "This lightweight hairdryer has 3 heat and speed settings. It is perfect for travel.",
        24,
        990_000_000,
        "beauty,bathroom",
        700,
    ),
    (
        "loafers",
        "Loafers",
        "A neat addition to your summer wardrobe.",
        89,
        990_000_000,
        "clothing,footwear",
        1_100,
    ),
    (
        "mug",
        "Mug",
        "A simple mug with a mustard interior.",
        8,
        990_000_000,
        "kitchen",
        300,
    ),
    (
        "salt-pepper-shakers",
        "Salt & Pepper Shakers",
        "Add some flavor to your kitchen.",
        18,
        490_000_000,
        "kitchen",
        400,
    ),
    (
        "sunglasses",
        "Sunglasses",
        "Add a modern touch to your outfits with these sleek aviator sunglasses.",
        19,
        990_000_000,
        "accessories",
        80,
    ),
    (
        "tank-top",
        "Tank Top",
        "Perfectly cropped cotton tank, with a scooped neckline.",
        18,
        990_000_000,
        "clothing,tops",
        150,
    ),
    (
        "terrarium",
        "Terrarium",
        "This terrarium will look great in your white painted living room.",
        36,
        450_000_000,
        "garden,home",
        1_800,
    ),
    (
        "vintage-typewriter",
        "Vintage Typewriter",
        "This typewriter looks good in your living room.",
        67,
        990_000_000,
        "vintage",
        4_200,
    ),
    (
        "watch",
        "Watch",
        "This gold-tone stainless steel watch will work with most of your outfits.",
        109,
        990_000_000,
        "accessories",
        120,
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut insert = Query::insert();
        insert.into_table(Products::Table).columns([
            Products::Id,
            Products::Name,
            Products::Description,
            Products::Picture,
            Products::PriceCurrency,
            Products::PriceUnits,
            Products::PriceNanos,
            Products::Categories,
            Products::WeightGrams,
        ]);
        for (id, name, description, units, nanos, categories, grams) in SEED {
            insert.values_panic([
                (*id).into(),
                (*name).into(),
                (*description).into(),
                format!("/static/img/products/{id}.jpg").into(),
                "USD".into(),
                (*units).into(),
                (*nanos).into(),
                (*categories).into(),
                (*grams).into(),
            ]);
        }
        manager.exec_stmt(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ids: Vec<&str> = SEED.iter().map(|row| row.0).collect();
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(Products::Table)
                    .and_where(Expr::col(Products::Id).is_in(ids))
                    .to_owned(),
            )
            .await
    }
}
