//! The apikeys tables as sea-orm entities (their schema is in
//! `migrations/`).

#![allow(unreachable_pub)] // the derive macros make public items

/// `usage_plans`: a plan's settings as JSON.
pub mod usage_plan {
    use sea_orm::entity::prelude::*;

    /// A row of `usage_plans`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_plans")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub plan_id: String,
        /// The plan, as JSON.
        pub settings: String,
        pub create_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `developers`: one per email.
pub mod developer {
    use sea_orm::entity::prelude::*;

    /// A row of `developers`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "developers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub developer_id: String,
        #[sea_orm(unique)]
        pub email: String,
        pub name: String,
        pub plan_id: String,
        pub create_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `api_keys`: a key and its secret's hash, never the secret.
pub mod api_key {
    use sea_orm::entity::prelude::*;

    /// A row of `api_keys`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: String,
        pub developer_id: String,
        pub name: String,
        pub prefix: String,
        #[sea_orm(unique)]
        pub secret_hash: String,
        /// `ACTIVE` or `REVOKED`.
        pub status: String,
        pub create_micros: i64,
        pub revoke_micros: Option<i64>,
        pub expire_micros: Option<i64>,
        pub replaced_by: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `key_changes`: the feed the gateways follow to drop cached keys.
pub mod key_change {
    use sea_orm::entity::prelude::*;

    /// A row of `key_changes`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_changes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub change_id: i64,
        pub key_id: String,
        pub developer_id: String,
        pub plan_id: String,
        pub create_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `usage_counts`: calls per key, method, stage and minute.
pub mod usage_count {
    use sea_orm::entity::prelude::*;

    /// A row of `usage_counts`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_counts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub method: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub stage: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub minute_micros: i64,
        pub developer_id: String,
        pub calls: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `settings`: the service's own named values (the secret hash key).
pub mod setting {
    use sea_orm::entity::prelude::*;

    /// A row of `settings`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub value: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
