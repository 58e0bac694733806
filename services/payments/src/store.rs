//! The payments tables and queries (sea-orm), on SQLite and PostgreSQL.
//! No card number is ever stored: only the brand and the last four digits.
//! Charges and refunds claim their ids first through
//! [`kit_store::idempotency`], so a repeated call has one effect.

use kit_store::{Claim, Db, IdempotencyError};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::domain::{
    CardBehaviour, Charge, ChargedCard, Payment, PaymentsError, Refund, RefundRequest, TOKEN_LIFETIME_MICROS,
};
use kit_values::Amount;

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

/// The `card_tokens` table: what a token stands for, never the number.
#[allow(unreachable_pub)]
pub mod card_token {
    use sea_orm::entity::prelude::*;

    /// A token.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "card_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token: String,
        pub card_brand: String,
        pub card_last4: String,
        /// How the test network treats the card (see `CardBehaviour::as_stored`).
        pub behaviour: String,
        pub expire_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Reads and records payments.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over a migrated database.
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    /// Records an attempt to charge `payment_id`; true for the first one.
    pub async fn first_attempt(&self, payment_id: &str) -> Result<bool, PaymentsError> {
        let inserted = charge_attempt::Entity::insert(charge_attempt::ActiveModel {
            payment_id: Set(payment_id.to_string()),
            create_micros: Set(kit_values::now_micros()),
        })
        .on_conflict(
            OnConflict::column(charge_attempt::Column::PaymentId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(self.db.write())
        .await?;
        Ok(inserted == 1)
    }

    /// Stores a new token for a card; returns it with its expiry.
    pub async fn tokenize(&self, card: &ChargedCard) -> Result<(String, i64), PaymentsError> {
        let token = format!("tok_{}", uuid::Uuid::new_v4().simple());
        let expire_micros = kit_values::now_micros().saturating_add(TOKEN_LIFETIME_MICROS);
        card_token::Entity::insert(card_token::ActiveModel {
            token: Set(token.clone()),
            card_brand: Set(card.brand.clone()),
            card_last4: Set(card.last4.clone()),
            behaviour: Set(card.behaviour.as_stored()),
            expire_micros: Set(expire_micros),
        })
        .exec_without_returning(self.db.write())
        .await?;
        Ok((token, expire_micros))
    }

    /// The card a live token stands for.
    pub async fn card_of(&self, token: &str) -> Result<ChargedCard, PaymentsError> {
        let row = card_token::Entity::find_by_id(token.to_string())
            .one(self.db.read())
            .await?
            .filter(|r| r.expire_micros > kit_values::now_micros())
            .ok_or_else(|| PaymentsError::TokenExpired(token.to_string()))?;
        Ok(ChargedCard {
            brand: row.card_brand,
            last4: row.card_last4,
            behaviour: CardBehaviour::from_stored(&row.behaviour)
                .ok_or_else(|| PaymentsError::TokenExpired(token.to_string()))?,
        })
    }

    /// Charges once per payment id; a repeat with the same details answers the first result.
    pub async fn charge(&self, charge: &Charge) -> Result<Payment, PaymentsError> {
        let claim: Claim<Payment> = kit_store::claim(
            &self.db,
            "payments.charge",
            &charge.payment_id,
            &charge.fingerprint(),
        )
        .await
        .map_err(|e| conflict_as(e, "payment", &charge.payment_id))?;
        let pending = match claim {
            // Answered as it stands now, with the refunds made since.
            Claim::Replay(payment) => return self.get(&payment.payment_id).await,
            Claim::Won(pending) => pending,
        };
        let now = kit_values::now_micros();
        payment::Entity::insert(payment::ActiveModel {
            payment_id: Set(charge.payment_id.clone()),
            order_id: Set(charge.order_id.clone()),
            currency: Set(charge.amount.currency().to_string()),
            amount_nanos: Set(charge.amount.nanos()),
            refunded_nanos: Set(0),
            card_brand: Set(charge.card.brand.clone()),
            card_last4: Set(charge.card.last4.clone()),
            fingerprint: Set(charge.fingerprint()),
            create_micros: Set(now),
        })
        .exec(pending.txn())
        .await?;
        let payment = Payment {
            payment_id: charge.payment_id.clone(),
            order_id: charge.order_id.clone(),
            refunded: Amount::zero(charge.amount.currency()),
            amount: charge.amount.clone(),
            card_brand: charge.card.brand.clone(),
            card_last4: charge.card.last4.clone(),
            refunds: Vec::new(),
            create_micros: now,
        };
        pending.complete(&payment).await?;
        Ok(payment)
    }

    /// A payment with its refunds.
    pub async fn get(&self, payment_id: &str) -> Result<Payment, PaymentsError> {
        find(self.db.read(), payment_id).await
    }

    /// Refunds once per refund id, never more than is left of the charge.
    pub async fn refund(&self, request: &RefundRequest) -> Result<(Refund, Payment), PaymentsError> {
        let claim: Claim<(Refund, Payment)> = kit_store::claim(
            &self.db,
            "payments.refund",
            &request.refund_id,
            &request.fingerprint(),
        )
        .await
        .map_err(|e| conflict_as(e, "refund", &request.refund_id))?;
        let pending = match claim {
            Claim::Replay((refund, _)) => return Ok((refund, self.get(&request.payment_id).await?)),
            Claim::Won(pending) => pending,
        };
        let txn = pending.txn();
        let Some(row) = payment::Entity::find_by_id(request.payment_id.clone())
            .one(txn)
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
            .exec(txn)
            .await?;
        if taken.rows_affected == 0 {
            let payment = find(txn, &request.payment_id).await?;
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
        let now = kit_values::now_micros();
        refund::Entity::insert(refund::ActiveModel {
            refund_id: Set(request.refund_id.clone()),
            payment_id: Set(request.payment_id.clone()),
            amount_nanos: Set(request.amount.nanos()),
            reason: Set(request.reason.clone()),
            create_micros: Set(now),
        })
        .exec(txn)
        .await?;
        let payment = find(txn, &request.payment_id).await?;
        let refund = Refund {
            refund_id: request.refund_id.clone(),
            amount: request.amount.clone(),
            reason: request.reason.clone(),
            create_micros: now,
        };
        let outcome = (refund, payment);
        pending.complete(&outcome).await?;
        Ok(outcome)
    }
}

/// A reused id is the payments' own conflict; the rest are store failures.
fn conflict_as(error: IdempotencyError, kind: &'static str, id: &str) -> PaymentsError {
    match error {
        IdempotencyError::Conflict { .. } => PaymentsError::Conflict {
            kind,
            id: id.to_string(),
        },
        other => PaymentsError::Idempotency(other),
    }
}

async fn find(db: &impl ConnectionTrait, payment_id: &str) -> Result<Payment, PaymentsError> {
    let row = payment::Entity::find_by_id(payment_id.to_string())
        .one(db)
        .await?
        .ok_or_else(|| PaymentsError::NotFound(payment_id.to_string()))?;
    load(db, row).await
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
