//! `ferrymesh.orders.v1`: adapts onto the v2 core. v1 orders have no
//! idempotency key unless request_id is given, ship standard, and read any
//! order with the v2-only details left out.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{order_id, page_and_customer};
use crate::core::{Core, single_total};
use crate::domain::{
    Order, OrderQuery, OrderStatus, OrdersError, PlaceOrder, PlaceOrderParts, ShippingOption,
};
use crate::pb::ferrymesh::orders::v1 as pb;
use kit_values::Violations;
use kit_values::timestamp;

pub(crate) struct OrdersV1 {
    core: Arc<Core>,
}

impl OrdersV1 {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        OrdersV1 { core }
    }
}

#[tonic::async_trait]
impl pb::orders_service_server::OrdersService for OrdersV1 {
    async fn place_order(
        &self,
        request: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::PlaceOrderResponse>, Status> {
        let caller = super::caller(&request)?;
        let mut r = request.into_inner();
        r.customer_email = super::as_caller(&r.customer_email, caller.as_deref(), "place orders")?;
        let place = PlaceOrder::parse(PlaceOrderParts {
            key: (&r.request_id, "request_id"),
            key_required: false,
            customer_email: &r.customer_email,
            items: r
                .items
                .iter()
                .map(|i| (i.product_id.as_str(), i.quantity))
                .collect(),
            address: r.shipping_address.as_ref(),
            shipping: ShippingOption::Standard,
            card: r.card.as_ref(),
        })?;
        let order = self.core.place(place).await?;
        Ok(Response::new(pb::PlaceOrderResponse {
            order: Some(to_v1(order)?),
        }))
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let id = order_id(&request.get_ref().order_id)?;
        let order = super::owned(self.core.get(&id).await?, super::caller(&request)?.as_deref())?;
        Ok(Response::new(pb::GetOrderResponse {
            order: Some(to_v1(order)?),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let caller = super::caller(&request)?;
        let mut r = request.into_inner();
        r.customer_email = super::as_caller(&r.customer_email, caller.as_deref(), "list orders")?;
        let mut v = Violations::new();
        let (customer_email, page) =
            page_and_customer(&r.customer_email, "v1", r.page_size, &r.page_token, &mut v);
        let Some(page) = page.filter(|_| v.is_empty()) else {
            return Err(OrdersError::from(v).into());
        };
        let query = OrderQuery {
            customer_email,
            status: None,
            page,
        };
        let (orders, next) = self.core.list(&query).await?;
        Ok(Response::new(pb::ListOrdersResponse {
            orders: orders.into_iter().map(to_v1).collect::<Result<_, _>>()?,
            next_page_token: next.map(|key| query.page.next_token(&key)).unwrap_or_default(),
        }))
    }
}

/// An order as v1 shows it: one total, three statuses, no line details.
fn to_v1(order: Order) -> Result<pb::Order, OrdersError> {
    let total = single_total(&order)?.map(|t| t.to_pb());
    let (status, failure_reason) = match order.status {
        OrderStatus::Pending => (pb::OrderStatus::Pending, String::new()),
        OrderStatus::Confirmed => (pb::OrderStatus::Confirmed, String::new()),
        OrderStatus::Failed => (pb::OrderStatus::Failed, order.status_reason.clone()),
        // v1 has no CANCELLED: to a v1 reader the order did not go through.
        OrderStatus::Cancelled => (
            pb::OrderStatus::Failed,
            format!("cancelled: {}", order.status_reason),
        ),
    };
    Ok(pb::Order {
        order_id: order.order_id,
        customer_email: order.customer_email,
        items: order
            .lines
            .into_iter()
            .map(|l| pb::LineItem {
                product_id: l.product_id,
                quantity: l.quantity,
                unit_price: Some(l.unit_price.to_pb()),
            })
            .collect(),
        shipping_address: Some(order.address.to_pb()),
        total,
        status: status as i32,
        failure_reason,
        create_time: Some(timestamp(order.create_micros)),
        update_time: Some(timestamp(order.update_micros)),
    })
}
