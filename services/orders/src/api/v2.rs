//! `ferrymesh.orders.v2`: the core's own shape.

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{order_id, page_and_customer};
use crate::core::Core;
use crate::domain::{
    LineStatus, Order, OrderQuery, OrderStatus, OrdersError, PlaceOrder, PlaceOrderParts, ShippingOption,
};
use crate::pb::ferrymesh::orders::v2 as pb;
use kit_values::Violations;
use kit_values::timestamp;

pub(crate) struct OrdersV2 {
    core: Arc<Core>,
}

impl OrdersV2 {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        OrdersV2 { core }
    }
}

type WatchStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::WatchOrderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::orders_service_server::OrdersService for OrdersV2 {
    async fn place_order(
        &self,
        request: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::PlaceOrderResponse>, Status> {
        let caller = super::caller(&request)?;
        let mut r = request.into_inner();
        r.customer_email = super::as_caller(&r.customer_email, caller.as_deref(), "place orders")?;
        let shipping = match pb::ShippingOption::try_from(r.shipping_option) {
            Ok(pb::ShippingOption::Express) => ShippingOption::Express,
            Ok(pb::ShippingOption::Standard | pb::ShippingOption::Unspecified) => ShippingOption::Standard,
            Err(_) => {
                let mut v = Violations::new();
                v.add(
                    "shipping_option",
                    format!(
                        "{} is not a ShippingOption: use STANDARD or EXPRESS",
                        r.shipping_option
                    ),
                );
                return Err(OrdersError::from(v).into());
            }
        };
        let place = PlaceOrder::parse(PlaceOrderParts {
            key: (&r.idempotency_key, "idempotency_key"),
            key_required: true,
            customer_email: &r.customer_email,
            items: r
                .items
                .iter()
                .map(|i| (i.product_id.as_str(), i.quantity))
                .collect(),
            address: r.shipping_address.as_ref(),
            shipping,
            card: r.card.as_ref(),
        })?;
        let order = self.core.place(place).await?;
        Ok(Response::new(pb::PlaceOrderResponse {
            order: Some(to_v2(order)?),
        }))
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let id = order_id(&request.get_ref().order_id)?;
        let order = super::owned(self.core.get(&id).await?, super::caller(&request)?.as_deref())?;
        Ok(Response::new(pb::GetOrderResponse {
            order: Some(to_v2(order)?),
        }))
    }

    async fn get_order_graph(
        &self,
        request: Request<pb::GetOrderGraphRequest>,
    ) -> Result<Response<pb::GetOrderGraphResponse>, Status> {
        let id = order_id(&request.get_ref().order_id)?;
        let order = super::owned(self.core.get(&id).await?, super::caller(&request)?.as_deref())?;
        let graph = self.core.graph(&order).await?;
        let (steps, svg) = match graph {
            None => (Vec::new(), String::new()),
            Some(graph) => (
                graph
                    .nodes
                    .into_iter()
                    .map(|node| pb::OrderStep {
                        progress: progress_name(node.progress).to_string(),
                        name: node.name,
                        retries: node.retries,
                    })
                    .collect(),
                graph.svg,
            ),
        };
        Ok(Response::new(pb::GetOrderGraphResponse {
            order: Some(to_v2(order)?),
            steps,
            svg,
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
        let (customer_email, page) = page_and_customer(
            &r.customer_email,
            &format!("v2;status={}", r.status),
            r.page_size,
            &r.page_token,
            &mut v,
        );
        let status = match pb::OrderStatus::try_from(r.status) {
            Ok(pb::OrderStatus::Unspecified) => None,
            Ok(pb::OrderStatus::Pending) => Some(OrderStatus::Pending),
            Ok(pb::OrderStatus::Confirmed) => Some(OrderStatus::Confirmed),
            Ok(pb::OrderStatus::Failed) => Some(OrderStatus::Failed),
            Ok(pb::OrderStatus::Cancelled) => Some(OrderStatus::Cancelled),
            Err(_) => {
                v.add("status", format!("{} is not an OrderStatus", r.status));
                None
            }
        };
        let Some(page) = page.filter(|_| v.is_empty()) else {
            return Err(OrdersError::from(v).into());
        };
        let query = OrderQuery {
            customer_email,
            status,
            page,
        };
        let (orders, next) = self.core.list(&query).await?;
        Ok(Response::new(pb::ListOrdersResponse {
            orders: orders.into_iter().map(to_v2).collect::<Result<_, _>>()?,
            next_page_token: next.map(|key| query.page.next_token(&key)).unwrap_or_default(),
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CancelOrderResponse>, Status> {
        let caller = super::caller(&request)?;
        let r = request.into_inner();
        let id = order_id(&r.order_id)?;
        super::owned(self.core.get(&id).await?, caller.as_deref())?;
        if r.reason.chars().count() > 500 {
            let mut v = Violations::new();
            v.add("reason", "must be at most 500 characters");
            return Err(OrdersError::from(v).into());
        }
        let order = self.core.cancel(&id, &r.reason).await?;
        Ok(Response::new(pb::CancelOrderResponse {
            order: Some(to_v2(order)?),
        }))
    }

    type WatchOrderStream = WatchStream;

    async fn watch_order(
        &self,
        request: Request<pb::WatchOrderRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let id = order_id(&request.get_ref().order_id)?;
        super::owned(self.core.get(&id).await?, super::caller(&request)?.as_deref())?;
        let updates = self.core.watch(&id).await?;
        let stream = futures_util::StreamExt::map(ReceiverStream::new(updates), |update| {
            let order = update.and_then(to_v2).map_err(Status::from)?;
            Ok(pb::WatchOrderResponse { order: Some(order) })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// workflow's StateProgress as the step's progress word.
fn progress_name(progress: i32) -> &'static str {
    use crate::pb::ferrymesh::workflow::v1::StateProgress as P;
    match P::try_from(progress) {
        Ok(P::InProgress) => "in-progress",
        Ok(P::Succeeded) => "succeeded",
        Ok(P::Failed) => "failed",
        Ok(P::Caught) => "caught",
        Ok(P::Compensated) => "compensated",
        Ok(P::Compensation) => "compensation",
        Ok(P::NotReached | P::Unspecified) | Err(_) => "not-reached",
    }
}

fn to_v2(order: Order) -> Result<pb::Order, OrdersError> {
    let totals = order.totals()?.iter().map(|t| t.to_pb()).collect();
    let status = match order.status {
        OrderStatus::Pending => pb::OrderStatus::Pending,
        OrderStatus::Confirmed => pb::OrderStatus::Confirmed,
        OrderStatus::Failed => pb::OrderStatus::Failed,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
    };
    let shipping_option = match order.shipping {
        ShippingOption::Standard => pb::ShippingOption::Standard,
        ShippingOption::Express => pb::ShippingOption::Express,
    };
    let items = order
        .lines
        .into_iter()
        .map(|l| {
            let line_total = l.total().ok_or(OrdersError::TooLarge)?;
            let status = match l.status {
                LineStatus::Pending => pb::LineItemStatus::Pending,
                LineStatus::Confirmed => pb::LineItemStatus::Confirmed,
                LineStatus::Cancelled => pb::LineItemStatus::Cancelled,
            };
            Ok(pb::LineItem {
                product_id: l.product_id,
                product_name: l.product_name,
                quantity: l.quantity,
                unit_price: Some(l.unit_price.to_pb()),
                line_total: Some(line_total.to_pb()),
                status: status as i32,
            })
        })
        .collect::<Result<_, OrdersError>>()?;
    Ok(pb::Order {
        order_id: order.order_id,
        idempotency_key: order.idempotency_key.unwrap_or_default(),
        customer_email: order.customer_email,
        items,
        shipping_address: Some(order.address.to_pb()),
        shipping_option: shipping_option as i32,
        shipping_cost: Some(order.shipping_cost.to_pb()),
        totals,
        status: status as i32,
        status_reason: order.status_reason,
        create_time: Some(timestamp(order.create_micros)),
        update_time: Some(timestamp(order.update_micros)),
        execution_name: order.execution_name,
        progress: order.progress,
    })
}

/// Serves OrderFulfillmentService: the saga reports outcomes here.
pub(crate) struct Fulfillment {
    core: Arc<Core>,
}

impl Fulfillment {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Fulfillment { core }
    }
}

#[tonic::async_trait]
impl pb::order_fulfillment_service_server::OrderFulfillmentService for Fulfillment {
    async fn confirm_order(
        &self,
        request: Request<pb::ConfirmOrderRequest>,
    ) -> Result<Response<pb::ConfirmOrderResponse>, Status> {
        let id = order_id(&request.get_ref().order_id)?;
        let order = self.core.settle(&id, OrderStatus::Confirmed, "").await?;
        Ok(Response::new(pb::ConfirmOrderResponse {
            order: Some(to_v2(order)?),
        }))
    }

    async fn fail_order(
        &self,
        request: Request<pb::FailOrderRequest>,
    ) -> Result<Response<pb::FailOrderResponse>, Status> {
        let r = request.into_inner();
        let id = order_id(&r.order_id)?;
        // The reason comes from the saga's error; keep what fits.
        let reason: String = r.reason.chars().take(500).collect();
        let order = self.core.settle(&id, OrderStatus::Failed, &reason).await?;
        Ok(Response::new(pb::FailOrderResponse {
            order: Some(to_v2(order)?),
        }))
    }
}
