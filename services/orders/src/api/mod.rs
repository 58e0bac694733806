//! The gRPC faces of orders: v2 maps onto the core, v1 adapts onto it.
//! Errors become statuses here, once for both versions.

use tonic::Status;

use crate::domain::OrdersError;

pub(crate) mod v1;
pub(crate) mod v2;

/// Checks an order id as both versions receive it.
fn order_id(text: &str) -> Result<String, OrdersError> {
    if text.is_empty() || text.len() > 64 {
        let mut v = kit_values::Violations::new();
        v.add(
            "order_id",
            format!(
                "must be 1 to 64 characters, such as \"ord-…\" from PlaceOrder; got {}",
                kit_values::quoted(text)
            ),
        );
        return Err(v.into());
    }
    Ok(text.to_string())
}

/// Checks a page request and an optional customer filter.
/// The customer filter and the page; `filters` names the other filters of
/// the list, so a page token works only for the query it was issued for.
fn page_and_customer(
    customer_email: &str,
    filters: &str,
    page_size: i32,
    page_token: &str,
    v: &mut kit_values::Violations,
) -> (Option<String>, Option<kit_store::paging::PageRequest>) {
    let customer = if customer_email.is_empty() {
        None
    } else {
        crate::domain::check_email(customer_email, v);
        Some(customer_email.to_string())
    };
    (
        customer,
        kit_store::paging::PageRequest::parse(
            page_size,
            page_token,
            &format!("customer={customer_email};{filters}"),
            v,
        ),
    )
}

/// The one place orders errors become statuses.
impl From<OrdersError> for Status {
    fn from(error: OrdersError) -> Status {
        use kit::error as e;
        let message = error.to_string();
        match error {
            OrdersError::Invalid(violations) => e::invalid_argument(violations),
            OrdersError::NotFound(id) => e::not_found("order", &id),
            OrdersError::Conflict(key) => e::already_exists("order", &key, message),
            OrdersError::NotCancellable { .. } => {
                e::failed_precondition("ORDER_NOT_CANCELLABLE", "orders.ferrymesh", &[], message)
            }
            OrdersError::TooLarge => {
                let mut v = kit_values::Violations::new();
                v.add("items", message);
                e::invalid_argument(v)
            }
            OrdersError::CatalogUnavailable(_)
            | OrdersError::PaymentsUnavailable(_)
            | OrdersError::WorkflowUnavailable(_) => {
                e::unavailable(message, std::time::Duration::from_secs(1))
            }
            OrdersError::MixedCurrencies(_) => {
                let mut v = kit_values::Violations::new();
                v.add("items", message);
                e::invalid_argument(v)
            }
            OrdersError::NotPending { .. } => {
                e::failed_precondition("ORDER_NOT_PENDING", "orders.ferrymesh", &[], message)
            }
            OrdersError::Store(_) | OrdersError::Idempotency(_) | OrdersError::Corrupt(_) => {
                e::internal(&error)
            }
        }
    }
}
