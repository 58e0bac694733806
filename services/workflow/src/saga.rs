//! The place-order saga, a built-in state machine: reserve stock, charge the
//! card (by token), create the shipment, confirm the order, commit the
//! stock. A failure compensates in reverse (cancel the shipment, refund,
//! release the stock) and marks the order FAILED with the reason. Transient
//! errors are retried with backoff; business refusals go straight to
//! compensation.
//!
//! Confirming is the pivot: an order the customer cancelled meanwhile
//! refuses it, and everything is undone. Committing the stock comes after,
//! because a reservation still held can be released and a committed one
//! cannot; past the pivot the saga only retries.

/// The saga's name.
pub const NAME: &str = "place-order";

/// What the saga is for.
pub const DESCRIPTION: &str =
    "Reserve stock, charge, ship, commit, confirm; compensate in reverse on failure";

/// The definition. `$$.Task.IdempotencyId` is stable for one entry of a
/// state (across retries and restarts), so each effect happens once.
pub const DEFINITION: &str = r#"{
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
      "Retry": [{"ErrorEquals": ["UNAVAILABLE", "DEADLINE_EXCEEDED", "States.Timeout"], "IntervalSeconds": 0.2, "MaxAttempts": 6, "BackoffRate": 2, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"}],
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
      "Retry": [{"ErrorEquals": ["UNAVAILABLE", "DEADLINE_EXCEEDED", "States.Timeout"], "IntervalSeconds": 0.2, "MaxAttempts": 6, "BackoffRate": 2, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"}],
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
      "Retry": [{"ErrorEquals": ["UNAVAILABLE", "DEADLINE_EXCEEDED", "States.Timeout"], "IntervalSeconds": 0.2, "MaxAttempts": 6, "BackoffRate": 2, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"}],
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
      "Retry": [{"ErrorEquals": ["UNAVAILABLE", "DEADLINE_EXCEEDED", "States.Timeout"], "IntervalSeconds": 0.2, "MaxAttempts": 10, "BackoffRate": 2, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"}],
      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Cancel shipment"}],
      "Next": "Commit stock"
    },
    "Commit stock": {
      "Type": "Task",
      "Resource": "grpc:ferrymesh.inventory.v1.InventoryService/CommitReservation",
      "Parameters": {"reservation_id.$": "$.reservation.reservation_id"},
      "ResultPath": null,
      "TimeoutSeconds": 5,
      "Retry": [{"ErrorEquals": ["UNAVAILABLE", "DEADLINE_EXCEEDED", "States.Timeout"], "IntervalSeconds": 0.2, "MaxAttempts": 20, "BackoffRate": 2, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"}],
      "End": true
    },
    "Cancel shipment": {
      "Type": "Task",
      "Comment": "Compensates Create shipment",
      "Resource": "grpc:ferrymesh.shipping.v1.ShippingService/CancelShipment",
      "Parameters": {"shipment_id.$": "$.shipment.shipment_id", "reason.$": "States.Format('order failed: {}', $.error.Error)"},
      "ResultPath": null,
      "TimeoutSeconds": 5,
      "Retry": [{"ErrorEquals": ["UNAVAILABLE", "DEADLINE_EXCEEDED", "States.Timeout"], "IntervalSeconds": 0.2, "MaxAttempts": 10, "BackoffRate": 2, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"}],
      "Next": "Refund payment"
    },
    "Refund payment": {
      "Type": "Task",
      "Comment": "Compensates Charge card",
      "Resource": "grpc:ferrymesh.payments.v1.PaymentsService/Refund",
      "Parameters": {"refund_id.$": "$$.Task.IdempotencyId", "payment_id.$": "$.payment.payment_id", "amount.$": "$.payment.amount", "reason.$": "States.Format('order failed: {}', $.error.Error)"},
      "ResultPath": null,
      "TimeoutSeconds": 5,
      "Retry": [{"ErrorEquals": ["UNAVAILABLE", "DEADLINE_EXCEEDED", "States.Timeout"], "IntervalSeconds": 0.2, "MaxAttempts": 10, "BackoffRate": 2, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"}],
      "Next": "Release stock"
    },
    "Release stock": {
      "Type": "Task",
      "Comment": "Compensates Reserve stock",
      "Resource": "grpc:ferrymesh.inventory.v1.InventoryService/ReleaseReservation",
      "Parameters": {"reservation_id.$": "$.reservation.reservation_id"},
      "ResultPath": null,
      "TimeoutSeconds": 5,
      "Retry": [{"ErrorEquals": ["UNAVAILABLE", "DEADLINE_EXCEEDED", "States.Timeout"], "IntervalSeconds": 0.2, "MaxAttempts": 10, "BackoffRate": 2, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"}],
      "Next": "Fail order"
    },
    "Fail order": {
      "Type": "Task",
      "Resource": "grpc:ferrymesh.orders.v2.OrderFulfillmentService/FailOrder",
      "Parameters": {"order_id.$": "$.order_id", "reason.$": "States.Format('{}: {}', $.error.Error, $.error.Cause)"},
      "ResultPath": null,
      "TimeoutSeconds": 5,
      "Retry": [{"ErrorEquals": ["UNAVAILABLE", "DEADLINE_EXCEEDED", "States.Timeout"], "IntervalSeconds": 0.2, "MaxAttempts": 10, "BackoffRate": 2, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"}],
      "Next": "Order failed"
    },
    "Order failed": {
      "Type": "Fail",
      "ErrorPath": "$.error.Error",
      "CausePath": "$.error.Cause"
    }
  }
}"#;
