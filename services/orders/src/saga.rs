//! The place-order saga, orders' own state machine, run by the generic
//! workflow engine: orders registers it (CreateStateMachine; a changed
//! definition becomes a new version, running executions keep theirs) before
//! it starts the first one, and builds its typed input. Reserve stock, charge the
//! card (by token), create the shipment, confirm the order, commit the
//! stock. A failure compensates in reverse (cancel the shipment, refund,
//! release the stock) and marks the order FAILED with the reason. Before
//! the pivot, errors that may pass are retried for over a minute, then the
//! saga compensates; business refusals compensate at once. The pivot, the
//! steps after it and every compensation retry until done: a saga never
//! gives up with something still held.
//!
//! Confirming is the pivot: an order the customer cancelled meanwhile
//! refuses it, and everything is undone. Committing the stock comes after,
//! because a reservation still held can be released and a committed one
//! cannot; past the pivot the saga only retries.

use serde::Serialize;

use crate::pb::ferrymesh::workflow::v1::workflow_service_client::WorkflowServiceClient;
use crate::pb::ferrymesh::workflow::v1::{CreateStateMachineRequest, UpdateStateMachineRequest};
use kit::client::Upstream;
use kit_values::PostalAddress;

/// The saga's name.
pub const NAME: &str = "place-order";

/// The saga's input: what its states read (`$.items` to reserve,
/// `$.shipment_items` to ship, `$.amount` and `$.card_token` to charge...).
#[derive(Debug, Serialize)]
pub struct Input<'a> {
    /// The order, and the execution's name.
    pub order_id: &'a str,
    /// Whose order.
    pub customer_email: &'a str,
    /// What Reserve stock holds.
    pub items: Vec<Item<'a>>,
    /// What Create shipment sends.
    pub shipment_items: Vec<ShipmentItem<'a>>,
    /// What Charge card takes.
    pub amount: Amount,
    /// The card, only as a token.
    pub card_token: &'a str,
    /// Where it ships.
    pub address: &'a PostalAddress,
}

/// A line to reserve.
#[derive(Debug, Serialize)]
pub struct Item<'a> {
    /// The product.
    pub sku: &'a str,
    /// How many.
    pub quantity: i32,
}

/// A line to ship, with its weight.
#[derive(Debug, Serialize)]
pub struct ShipmentItem<'a> {
    /// The product.
    pub sku: &'a str,
    /// How many.
    pub quantity: i32,
    /// Grams each.
    pub unit_weight_grams: i32,
}

/// Money in the contracts' JSON form (units as a string, as int64 is).
#[derive(Debug, Serialize)]
pub struct Amount {
    /// ISO 4217.
    pub currency_code: String,
    /// Whole units.
    pub units: String,
    /// Billionths.
    pub nanos: i32,
}

/// Registers the saga with workflow: created the first time, published as
/// a new version when this definition differs from the latest, nothing
/// when it is the same. Answers the version in force.
pub async fn register(workflow: &mut WorkflowServiceClient<Upstream>) -> Result<i32, tonic::Status> {
    let definition = definition();
    let created = workflow
        .create_state_machine(CreateStateMachineRequest {
            name: NAME.into(),
            definition: definition.clone(),
            description: DESCRIPTION.into(),
        })
        .await;
    let machine = match created {
        Ok(answer) => answer.into_inner().state_machine,
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            workflow
                .update_state_machine(UpdateStateMachineRequest {
                    name: NAME.into(),
                    definition,
                    description: DESCRIPTION.into(),
                })
                .await?
                .into_inner()
                .state_machine
        }
        Err(status) => return Err(status),
    };
    Ok(machine.map_or(0, |m| m.version))
}

/// What the saga is for.
pub const DESCRIPTION: &str =
    "Reserve stock, charge, ship, commit, confirm; compensate in reverse on failure";

/// Business refusals: a definite answer, never retried. Every other error
/// (UNAVAILABLE, a timeout, INTERNAL from a database that restarts, ...)
/// may pass, so it is retried.
const DEFINITE: &str =
    r#"["INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION", "OUT_OF_RANGE"]"#;

/// Before the pivot: transient errors are retried for over a minute (0.2 s
/// doubling to 3 s, 25 attempts: 66 s), longer than a restarted service
/// takes to come back; then the saga compensates.
fn retry_for_a_minute() -> String {
    format!(
        r#"[{{"ErrorEquals": {DEFINITE}, "MaxAttempts": 0}}, {{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 0.2, "MaxAttempts": 25, "BackoffRate": 2, "MaxDelaySeconds": 3}}]"#
    )
}

/// The pivot, every step after it, and every compensation: retried until
/// done (capped at 10 s between attempts, with jitter), since giving up
/// would leave something held; only a business refusal stops them, and
/// past the pivot that fails the execution where no Catch handles it, which
/// the engine reports at ERROR for an operator.
fn retry_until_done() -> String {
    format!(
        r#"[{{"ErrorEquals": {DEFINITE}, "MaxAttempts": 0}}, {{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 0.2, "MaxAttempts": 99999999, "BackoffRate": 2, "MaxDelaySeconds": 10, "JitterStrategy": "FULL"}}]"#
    )
}

/// The definition. `$$.Task.IdempotencyId` is stable for one entry of a
/// state (across retries and restarts), so each effect happens once.
pub fn definition() -> String {
    DEFINITION
        .replace(r#""$RETRY_FOR_A_MINUTE""#, &retry_for_a_minute())
        .replace(r#""$RETRY_UNTIL_DONE""#, &retry_until_done())
}

/// The definition with its retry policies named, filled in by [`definition`].
const DEFINITION: &str = r#"{
  "Comment": "The place-order saga: each step has its compensation on the error path",
  "StartAt": "Reserve stock",
  "States": {
    "Reserve stock": {
      "Type": "Task",
      "Resource": "grpc:ferrymesh.inventory.v1.InventoryService/ReserveStock",
      "Parameters": {"reservation_id.$": "$$.Task.IdempotencyId", "items.$": "$.items"},
      "ResultSelector": {"reservation_id.$": "$.reservation.reservation_id"},
      "ResultPath": "$.reservation",
      "TimeoutSeconds": 5,
      "Retry": "$RETRY_FOR_A_MINUTE",
      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Fail order"}],
      "Next": "Charge card"
    },
    "Charge card": {
      "Type": "Task",
      "Resource": "grpc:ferrymesh.payments.v1.PaymentsService/Charge",
      "Parameters": {"payment_id.$": "$$.Task.IdempotencyId", "order_id.$": "$.order_id", "amount.$": "$.amount", "card_token.$": "$.card_token"},
      "ResultSelector": {"payment_id.$": "$.payment.payment_id", "amount.$": "$.payment.amount"},
      "ResultPath": "$.payment",
      "TimeoutSeconds": 5,
      "Retry": "$RETRY_FOR_A_MINUTE",
      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Release stock"}],
      "Next": "Create shipment"
    },
    "Create shipment": {
      "Type": "Task",
      "Resource": "grpc:ferrymesh.shipping.v1.ShippingService/CreateShipment",
      "Parameters": {"shipment_id.$": "$$.Task.IdempotencyId", "order_id.$": "$.order_id", "address.$": "$.address", "items.$": "$.shipment_items"},
      "ResultSelector": {"shipment_id.$": "$.shipment.shipment_id", "tracking_number.$": "$.shipment.tracking_number"},
      "ResultPath": "$.shipment",
      "TimeoutSeconds": 5,
      "Retry": "$RETRY_FOR_A_MINUTE",
      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Refund payment"}],
      "Next": "Confirm order"
    },
    "Confirm order": {
      "Type": "Task",
      "Resource": "grpc:ferrymesh.orders.v2.OrderFulfillmentService/ConfirmOrder",
      "Parameters": {"order_id.$": "$.order_id"},
      "ResultSelector": {"status.$": "$.order.status"},
      "ResultPath": "$.order",
      "TimeoutSeconds": 5,
      "Retry": "$RETRY_UNTIL_DONE",
      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Cancel shipment"}],
      "Next": "Commit stock"
    },
    "Commit stock": {
      "Type": "Task",
      "Resource": "grpc:ferrymesh.inventory.v1.InventoryService/CommitReservation",
      "Parameters": {"reservation_id.$": "$.reservation.reservation_id"},
      "ResultPath": null,
      "TimeoutSeconds": 5,
      "Retry": "$RETRY_UNTIL_DONE",
      "End": true
    },
    "Cancel shipment": {
      "Type": "Task",
      "Comment": "Compensates Create shipment",
      "Resource": "grpc:ferrymesh.shipping.v1.ShippingService/CancelShipment",
      "Parameters": {"shipment_id.$": "$.shipment.shipment_id", "reason.$": "States.Format('order failed: {}', $.error.Error)"},
      "ResultPath": null,
      "TimeoutSeconds": 5,
      "Retry": "$RETRY_UNTIL_DONE",
      "Next": "Refund payment"
    },
    "Refund payment": {
      "Type": "Task",
      "Comment": "Compensates Charge card",
      "Resource": "grpc:ferrymesh.payments.v1.PaymentsService/Refund",
      "Parameters": {"refund_id.$": "$$.Task.IdempotencyId", "payment_id.$": "$.payment.payment_id", "amount.$": "$.payment.amount", "reason.$": "States.Format('order failed: {}', $.error.Error)"},
      "ResultPath": null,
      "TimeoutSeconds": 5,
      "Retry": "$RETRY_UNTIL_DONE",
      "Next": "Release stock"
    },
    "Release stock": {
      "Type": "Task",
      "Comment": "Compensates Reserve stock",
      "Resource": "grpc:ferrymesh.inventory.v1.InventoryService/ReleaseReservation",
      "Parameters": {"reservation_id.$": "$.reservation.reservation_id"},
      "ResultPath": null,
      "TimeoutSeconds": 5,
      "Retry": "$RETRY_UNTIL_DONE",
      "Next": "Fail order"
    },
    "Fail order": {
      "Type": "Task",
      "Resource": "grpc:ferrymesh.orders.v2.OrderFulfillmentService/FailOrder",
      "Parameters": {"order_id.$": "$.order_id", "reason.$": "States.Format('{}: {}', $.error.Error, $.error.Cause)"},
      "ResultPath": null,
      "TimeoutSeconds": 5,
      "Retry": "$RETRY_UNTIL_DONE",
      "Next": "Order failed"
    },
    "Order failed": {
      "Type": "Fail",
      "ErrorPath": "$.error.Error",
      "CausePath": "$.error.Cause"
    }
  }
}"#;
