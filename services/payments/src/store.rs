//! The payments tables and queries (sea-orm), on SQLite and PostgreSQL.
//! No card number is ever stored: only the brand and the last four digits.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

use crate::domain::{CardBehaviour, Charge, Payment, PaymentsError, Refund, RefundRequest, behaviour_of};
use kit::values::Amount;

/// The `payments` table.
#[allow(unreachable_pub)] // the derive macros make public items
pub mod payment {
    use sea_orm::entity::prelude::*;

    /// A row of `payments`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub payment_id: String,
        pub order_id: String,
        pub currency: String,
        pub amount_nanos: i64,
        pub refunded_nanos: i64,
        pub card_brand: String,
        pub card_last4: String,
        pub fingerprint: String,
        pub create_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `refunds` table.
#[allow(unreachable_pub)]
pub(crate) mod refund {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refunds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub refund_id: String,
        pub payment_id: String,
        pub amount_nanos: i64,
        pub reason: String,
        pub create_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `charge_attempts` table: payments whose first attempt already failed once.
#[allow(unreachable_pub)]
pub(crate) mod charge_attempt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "charge_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub payment_id: String,
        pub create_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Reads and records payments.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// A store over a migrated database.
    pub fn new(db: DatabaseConnection) -> Self {
        Store { db }
    }

    /// Charges once per payment id; a repeat with the same details returns the payment.
    pub async fn charge(&self, charge: &Charge) -> Result<Payment, PaymentsError> {
        if let Some(existing) = self.existing_charge(charge).await? {
            return Ok(existing);
        }
        match behaviour_of(&charge.card.number) {
            CardBehaviour::Declined(reason) => {
                return Err(PaymentsError::Declined {
                    reason,
                    last4: charge.card.last4().to_string(),
                });
            }
            CardBehaviour::FailsOnce => {
                let first = charge_attempt::Entity::insert(charge_attempt::ActiveModel {
                    payment_id: Set(charge.payment_id.clone()),
                    create_micros: Set(kit::values::now_micros()),
                })
                .on_conflict(
                    OnConflict::column(charge_attempt::Column::PaymentId)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await?;
                if first == 1 {
                    return Err(PaymentsError::Transient(charge.payment_id.clone()));
                }
            }
            CardBehaviour::Succeeds => {}
        }
        let now = kit::values::now_micros();
        let inserted = payment::Entity::insert(payment::ActiveModel {
            payment_id: Set(charge.payment_id.clone()),
            order_id: Set(charge.order_id.clone()),
            currency: Set(charge.amount.currency().to_string()),
            amount_nanos: Set(charge.amount.nanos()),
            refunded_nanos: Set(0),
            card_brand: Set(charge.card.brand.to_string()),
            card_last4: Set(charge.card.last4().to_string()),
            fingerprint: Set(charge.fingerprint()),
            create_micros: Set(now),
        })
        .exec(&self.db)
        .await;
        match inserted {
            Ok(_) => {}
            // A concurrent first call won; answer as a retry would.
            Err(e) if kit::db::is_unique_violation(&e) => {
                return self.existing_charge(charge).await?.ok_or(PaymentsError::Store(e));
            }
            Err(e) => return Err(e.into()),
        }
        self.get(&charge.payment_id).await
    }

    async fn existing_charge(&self, charge: &Charge) -> Result<Option<Payment>, PaymentsError> {
        let Some(row) = payment::Entity::find_by_id(charge.payment_id.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if row.fingerprint != charge.fingerprint() {
            return Err(PaymentsError::Conflict {
                kind: "payment",
                id: charge.payment_id.clone(),
            });
        }
        Ok(Some(load(&self.db, row).await?))
    }

    /// A payment with its refunds.
    pub async fn get(&self, payment_id: &str) -> Result<Payment, PaymentsError> {
        let row = payment::Entity::find_by_id(payment_id.to_string())
            .one(&self.db)
            .await?
            .ok_or_else(|| PaymentsError::NotFound(payment_id.to_string()))?;
        load(&self.db, row).await
    }

    /// Refunds once per refund id, never more than is left of the charge.
    pub async fn refund(&self, request: &RefundRequest) -> Result<(Refund, Payment), PaymentsError> {
        let mut attempt = 0;
        loop {
            match self.try_refund(request).await {
                Err(PaymentsError::Store(e)) if kit::db::is_unique_violation(&e) && attempt < 3 => {
                    attempt += 1
                }
                other => return other,
            }
        }
    }

    async fn try_refund(&self, request: &RefundRequest) -> Result<(Refund, Payment), PaymentsError> {
        let txn = self.db.begin().await?;
        let Some(row) = payment::Entity::find_by_id(request.payment_id.clone())
            .one(&txn)
            .await?
        else {
            return Err(PaymentsError::NotFound(request.payment_id.clone()));
        };
        if row.currency != request.amount.currency() {
            return Err(PaymentsError::CurrencyMismatch {
                payment_id: row.payment_id,
                charged: row.currency,
                refund: request.amount.currency().to_string(),
            });
        }
        if let Some(existing) = refund::Entity::find_by_id(request.refund_id.clone())
            .one(&txn)
            .await?
        {
            txn.commit().await?;
            if existing.payment_id != request.payment_id || existing.amount_nanos != request.amount.nanos() {
                return Err(PaymentsError::Conflict {
                    kind: "refund",
                    id: request.refund_id.clone(),
                });
            }
            let payment = self.get(&request.payment_id).await?;
            return Ok((to_refund(&payment.amount, existing), payment));
        }
        // Only as much as is left: concurrent refunds cannot add up to more.
        let taken = payment::Entity::update_many()
            .col_expr(
                payment::Column::RefundedNanos,
                Expr::col(payment::Column::RefundedNanos).add(request.amount.nanos()),
            )
            .filter(payment::Column::PaymentId.eq(request.payment_id.as_str()))
            .filter(
                Expr::col(payment::Column::AmountNanos)
                    .sub(Expr::col(payment::Column::RefundedNanos))
                    .gte(request.amount.nanos()),
            )
            .exec(&txn)
            .await?;
        if taken.rows_affected == 0 {
            txn.rollback().await?;
            let payment = self.get(&request.payment_id).await?;
            let refundable = payment
                .amount
                .checked_sub(&payment.refunded)
                .unwrap_or(payment.amount.clone());
            return Err(PaymentsError::ExceedsCharge {
                payment_id: request.payment_id.clone(),
                requested: request.amount.clone(),
                refundable,
            });
        }
        let now = kit::values::now_micros();
        refund::Entity::insert(refund::ActiveModel {
            refund_id: Set(request.refund_id.clone()),
            payment_id: Set(request.payment_id.clone()),
            amount_nanos: Set(request.amount.nanos()),
            reason: Set(request.reason.clone()),
            create_micros: Set(now),
        })
        .exec(&txn)
        .await?;
        txn.commit().await?;
        let payment = self.get(&request.payment_id).await?;
        let refund = Refund {
            refund_id: request.refund_id.clone(),
            amount: request.amount.clone(),
            reason: request.reason.clone(),
            create_micros: now,
        };
        Ok((refund, payment))
    }
}

async fn load(db: &impl ConnectionTrait, row: payment::Model) -> Result<Payment, PaymentsError> {
    let amount = Amount::from_nanos(row.currency.clone(), row.amount_nanos);
    let refunds = refund::Entity::find()
        .filter(refund::Column::PaymentId.eq(row.payment_id.as_str()))
        .order_by_asc(refund::Column::CreateMicros)
        .order_by_asc(refund::Column::RefundId)
        .all(db)
        .await?
        .into_iter()
        .map(|r| to_refund(&amount, r))
        .collect();
    Ok(Payment {
        refunded: Amount::from_nanos(row.currency, row.refunded_nanos),
        amount,
        payment_id: row.payment_id,
        order_id: row.order_id,
        card_brand: row.card_brand,
        card_last4: row.card_last4,
        refunds,
        create_micros: row.create_micros,
    })
}

fn to_refund(charged: &Amount, row: refund::Model) -> Refund {
    Refund {
        refund_id: row.refund_id,
        amount: Amount::from_nanos(charged.currency(), row.amount_nanos),
        reason: row.reason,
        create_micros: row.create_micros,
    }
}
