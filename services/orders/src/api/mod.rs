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

/// The customer a call is scoped to: a key holder's own email; `None` for
/// the operator and callers inside the mesh, who see every customer. A call
/// through the gateway without a key never reaches orders' data.
fn caller<T>(request: &tonic::Request<T>) -> Result<Option<String>, Status> {
    use kit::identity::Principal;
    match Principal::of(request)? {
        Principal::Customer { email, .. } => Ok(Some(email.clone())),
        Principal::Operator | Principal::Internal => Ok(None),
        Principal::Anonymous => Err(Status::unauthenticated(
            "orders are a customer's: send your API key as x-api-key metadata",
        )),
    }
}

/// An order as a gateway caller may see it: someone else's is NOT_FOUND,
/// exactly as a missing one, so no key holder learns which ids exist.
fn owned(order: crate::domain::Order, caller: Option<&str>) -> Result<crate::domain::Order, OrdersError> {
    match caller {
        Some(email) if !order.customer_email.eq_ignore_ascii_case(email) => {
            Err(OrdersError::NotFound(order.order_id))
        }
        _ => Ok(order),
    }
}

/// The customer a gateway caller acts as: their own when the request names
/// none; PERMISSION_DENIED when it names someone else.
fn as_caller(requested: &str, caller: Option<&str>, what: &str) -> Result<String, Status> {
    match caller {
        None => Ok(requested.to_string()),
        Some(email) if requested.is_empty() || requested.eq_ignore_ascii_case(email) => Ok(email.to_string()),
        Some(email) => Err(Status::permission_denied(format!(
            "your API key belongs to {email}; it may {what} only for that customer, not {}",
            kit_values::quoted(requested)
        ))),
    }
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
            | OrdersError::WorkflowUnavailable(_)
            | OrdersError::GraphUnavailable(_) => e::unavailable(message, std::time::Duration::from_secs(1)),
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
