//! The orders core that both API versions adapt onto: placing (priced from
//! the catalog), reading, listing, cancelling and watching orders.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use tokio::sync::{broadcast, mpsc};

use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::domain::{LineStatus, Order, OrderQuery, OrderStatus, OrdersError, PlaceOrder, PricedLine};
use crate::pb::ferrymesh::catalog::v1::GetProductRequest;
use crate::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use crate::pb::ferrymesh::payments::v1::TokenizeCardRequest;
use crate::pb::ferrymesh::payments::v1::payments_service_client::PaymentsServiceClient;
use crate::pb::ferrymesh::workflow::v1::workflow_service_client::WorkflowServiceClient;
use crate::pb::ferrymesh::workflow::v1::{
    DescribeExecutionRequest, ExecutionStatus, GetExecutionGraphRequest, GetExecutionGraphResponse,
    StartExecutionRequest,
};
use crate::saga;
use crate::store::Store;
use kit::client::Upstream;
use kit_values::Violations;
use kit_values::{Amount, NANOS_PER_UNIT, now_micros};

/// The services orders calls.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// Prices.
    pub catalog: Upstream,
    /// Card tokens.
    pub payments: Upstream,
    /// The saga.
    pub workflow: Upstream,
}

/// The orders use cases.
#[derive(Debug)]
pub struct Core {
    store: Store,
    catalog: CatalogServiceClient<Upstream>,
    payments: PaymentsServiceClient<Upstream>,
    workflow: WorkflowServiceClient<Upstream>,
    /// Ids of orders whose status changed here, for this replica's watchers
    /// (a watcher also reads the store, for changes made by other replicas).
    changes: broadcast::Sender<String>,
    /// Whether workflow has the saga as defined here.
    saga_registered: AtomicBool,
}

/// How often a watcher reads the store for changes other replicas made
/// (changes made here reach it at once).
const WATCH_POLL: Duration = Duration::from_secs(1);

impl Core {
    /// The core over a store and the services it calls.
    pub fn new(store: Store, upstreams: Upstreams) -> Self {
        let (changes, _) = broadcast::channel(1024);
        Core {
            store,
            catalog: CatalogServiceClient::new(upstreams.catalog),
            payments: PaymentsServiceClient::new(upstreams.payments),
            workflow: WorkflowServiceClient::new(upstreams.workflow),
            changes,
            saga_registered: AtomicBool::new(false),
        }
    }

    /// The saga's input for an order: everything it needs, the card only as a token.
    fn saga_input(order: &Order) -> Result<String, OrdersError> {
        let totals = order.totals()?;
        let [total] = totals.as_slice() else {
            return Err(OrdersError::MixedCurrencies(format!("{totals:?}")));
        };
        let money = total.to_pb();
        let input = saga::Input {
            order_id: &order.order_id,
            customer_email: &order.customer_email,
            items: order
                .lines
                .iter()
                .map(|l| saga::Item {
                    sku: &l.product_id,
                    quantity: l.quantity,
                })
                .collect(),
            shipment_items: order
                .lines
                .iter()
                .map(|l| saga::ShipmentItem {
                    sku: &l.product_id,
                    quantity: l.quantity,
                    unit_weight_grams: l.unit_weight_grams,
                })
                .collect(),
            amount: saga::Amount {
                currency_code: money.currency_code,
                units: money.units.to_string(),
                nanos: money.nanos,
            },
            card_token: &order.card_token,
            address: &order.address,
        };
        serde_json::to_string(&input)
            .map_err(|e| OrdersError::Corrupt(format!("the saga's input could not be written: {e}")))
    }

    /// Registers the saga with workflow, once per process (before the first
    /// start, and by the background starter until it is).
    pub async fn ensure_saga(&self) -> Result<(), OrdersError> {
        if self.saga_registered.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut workflow = self.workflow.clone();
        let version = saga::register(&mut workflow).await.map_err(|status| {
            OrdersError::WorkflowUnavailable(format!(
                "registering the saga: {:?}: {}",
                status.code(),
                status.message()
            ))
        })?;
        self.saga_registered.store(true, Ordering::Release);
        tracing::info!(
            state_machine = saga::NAME,
            version,
            "saga registered with workflow"
        );
        Ok(())
    }

    /// Starts the order's saga (idempotent by the execution name) and notes it.
    pub async fn start_saga(&self, order: &Order) -> Result<(), OrdersError> {
        self.ensure_saga().await?;
        let input = Self::saga_input(order)?;
        let mut workflow = self.workflow.clone();
        let started = workflow
            .start_execution(StartExecutionRequest {
                state_machine_name: saga::NAME.into(),
                execution_name: order.execution_name.clone(),
                input,
                state_machine_version: 0,
            })
            .await;
        match started {
            Ok(_) => {
                self.store.mark_saga_started(&order.order_id).await?;
                Ok(())
            }
            Err(status) => Err(OrdersError::WorkflowUnavailable(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }

    /// Starts the sagas of accepted orders whose start did not go through
    /// (workflow was down or slow); runs until the process ends.
    pub async fn start_pending_sagas(&self) {
        let mut delays = kit::backoff::Doubling::new(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            tokio::time::sleep(delays.peek()).await;
            let waiting = match self.store.sagas_not_started(now_micros() - 1_000_000, 200).await {
                Ok(waiting) => waiting,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read orders waiting for their saga");
                    continue;
                }
            };
            let mut failed = false;
            for order in &waiting {
                if let Err(e) = self.start_saga(order).await {
                    tracing::warn!(order_id = %order.order_id, error = %e, "saga not started yet; will retry");
                    failed = true;
                    break;
                }
                tracing::info!(order_id = %order.order_id, "saga started late");
            }
            // Back off while workflow is away; come back quickly once it answers.
            if failed {
                delays.next_delay();
            } else {
                delays.reset();
            }
        }
    }

    /// Marks a PENDING order CONFIRMED or FAILED, as the saga reports.
    pub async fn settle(&self, order_id: &str, to: OrderStatus, reason: &str) -> Result<Order, OrdersError> {
        kit::rpc_telemetry::record_order_id(order_id);
        let (order, changed) = self.store.settle(order_id, to, reason).await?;
        if changed {
            tracing::info!(order_id, status = to.as_str(), reason, "order settled");
            let _ = self.changes.send(order.order_id.clone());
        }
        Ok(order)
    }

    /// Places an order priced from the catalog; with a key, at most once.
    pub async fn place(&self, request: PlaceOrder) -> Result<Order, OrdersError> {
        let fingerprint = request.fingerprint();
        if let Some(key) = &request.idempotency_key
            && let Some(placed) = self
                .store
                .placed_with(&request.customer_email, key, &fingerprint)
                .await?
        {
            return Ok(placed);
        }
        let lines = self.price(&request).await?;
        // Only payments keeps the card; orders and the saga carry a token.
        let token = self
            .payments
            .clone()
            .tokenize_card(TokenizeCardRequest {
                card: Some(request.card_message.0.clone()),
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::InvalidArgument => {
                    let mut v = Violations::new();
                    v.add("card", status.message().to_string());
                    OrdersError::Invalid(v)
                }
                _ => OrdersError::PaymentsUnavailable(format!("{:?}: {}", status.code(), status.message())),
            })?
            .into_inner();
        let now = now_micros();
        let order_id = format!("ord-{}", uuid::Uuid::new_v4().simple());
        let order = Order {
            execution_name: order_id.clone(),
            order_id,
            card_token: token.card_token,
            saga_started: false,
            progress: String::new(),
            idempotency_key: request.idempotency_key.clone(),
            customer_email: request.customer_email,
            lines,
            address: request.address,
            shipping: request.shipping,
            shipping_cost: request.shipping.cost(),
            status: OrderStatus::Pending,
            status_reason: String::new(),
            create_micros: now,
            update_micros: now,
        };
        // Refuse what cannot be totalled or charged before it is stored.
        Self::saga_input(&order)?;
        // A concurrent call with the same key may win the claim; then this
        // answers the order it placed.
        let mut placed = self.store.place(order, &fingerprint).await?;
        kit::rpc_telemetry::record_order_id(&placed.order_id);
        tracing::info!(order_id = %placed.order_id, "order placed");
        if !placed.saga_started && placed.status == OrderStatus::Pending {
            // Accepted either way: if workflow is away, the order waits
            // PENDING and the background starter tries again.
            match self.start_saga(&placed).await {
                Ok(()) => placed.saga_started = true,
                Err(e) => {
                    tracing::warn!(order_id = %placed.order_id, error = %e, "saga not started yet; will retry")
                }
            }
        }
        Ok(placed)
    }

    /// Prices every line from the catalog, one call per product, all at once.
    async fn price(&self, request: &PlaceOrder) -> Result<Vec<PricedLine>, OrdersError> {
        let calls = request.lines.iter().map(|line| {
            let mut catalog = self.catalog.clone();
            let product_id = line.product_id.clone();
            async move { catalog.get_product(GetProductRequest { product_id }).await }
        });
        let answers = join_all(calls).await;
        let mut violations = Violations::new();
        let mut lines = Vec::with_capacity(answers.len());
        let mut unavailable = None;
        for (i, (line, answer)) in request.lines.iter().zip(answers).enumerate() {
            match answer.map(|r| r.into_inner().product) {
                Ok(Some(product)) => {
                    let price = product.price.unwrap_or_default();
                    let nanos = price
                        .units
                        .checked_mul(NANOS_PER_UNIT)
                        .and_then(|u| u.checked_add(i64::from(price.nanos)));
                    let Some(nanos) = nanos else {
                        return Err(OrdersError::TooLarge);
                    };
                    lines.push(PricedLine {
                        product_id: line.product_id.clone(),
                        product_name: product.name,
                        quantity: line.quantity,
                        unit_price: Amount::from_nanos(price.currency_code, nanos),
                        status: LineStatus::Pending,
                        unit_weight_grams: product.weight_grams,
                    });
                }
                Ok(None) => unavailable = Some("the catalog answered without a product".to_string()),
                Err(status) if status.code() == tonic::Code::NotFound => violations.add(
                    format!("items[{i}].product_id"),
                    format!("{:?} is not in the catalog", line.product_id),
                ),
                Err(status) => unavailable = Some(format!("{:?}: {}", status.code(), status.message())),
            }
        }
        if !violations.is_empty() {
            return Err(violations.into());
        }
        match unavailable {
            Some(reason) => Err(OrdersError::CatalogUnavailable(reason)),
            None => Ok(lines),
        }
    }

    /// An order by id; while PENDING, with the saga's current step.
    pub async fn get(&self, order_id: &str) -> Result<Order, OrdersError> {
        kit::rpc_telemetry::record_order_id(order_id);
        let mut order = self.store.get(order_id).await?;
        if order.status == OrderStatus::Pending && order.saga_started {
            let mut workflow = self.workflow.clone();
            let mut request = tonic::Request::new(DescribeExecutionRequest {
                execution_name: order.execution_name.clone(),
            });
            // Progress is a courtesy: a slow workflow must not slow the read.
            request.set_timeout(Duration::from_millis(300));
            if let Ok(response) = workflow.describe_execution(request).await
                && let Some(execution) = response.into_inner().execution
                && execution.status == ExecutionStatus::Running as i32
            {
                order.progress = execution.current_state;
            }
        }
        Ok(order)
    }

    /// The saga of an order, drawn by workflow; `None` before it started.
    pub async fn graph(&self, order: &Order) -> Result<Option<GetExecutionGraphResponse>, OrdersError> {
        if !order.saga_started {
            return Ok(None);
        }
        let mut workflow = self.workflow.clone();
        let mut request = tonic::Request::new(GetExecutionGraphRequest {
            execution_name: order.execution_name.clone(),
        });
        request.set_timeout(Duration::from_secs(2));
        match workflow.get_execution_graph(request).await {
            Ok(response) => Ok(Some(response.into_inner())),
            // Recorded as started, not yet known to workflow: nothing to draw yet.
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(OrdersError::GraphUnavailable(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }

    /// A page of orders and the cursor of the next.
    pub async fn list(&self, query: &OrderQuery) -> Result<(Vec<Order>, Option<String>), OrdersError> {
        self.store.list(query).await
    }

    /// Cancels a PENDING order.
    pub async fn cancel(&self, order_id: &str, reason: &str) -> Result<Order, OrdersError> {
        kit::rpc_telemetry::record_order_id(order_id);
        let (order, changed) = self.store.cancel(order_id, reason).await?;
        if changed {
            // Nobody watching is fine.
            let _ = self.changes.send(order.order_id.clone());
        }
        Ok(order)
    }

    /// The order now, then each time its status changes, until it is final.
    pub async fn watch(
        &self,
        order_id: &str,
    ) -> Result<mpsc::Receiver<Result<Order, OrdersError>>, OrdersError> {
        // Subscribe before reading, so no change falls between the two.
        let mut changes = self.changes.subscribe();
        let first = self.store.get(order_id).await?;
        let (tx, rx) = mpsc::channel(8);
        let store = self.store.clone();
        let order_id = order_id.to_string();
        tokio::spawn(async move {
            let mut last = first.status;
            let done = last.is_final();
            if tx.send(Ok(first)).await.is_err() || done {
                return;
            }
            loop {
                let change = tokio::select! {
                    // The watcher hung up: stop waiting for a change it will never read.
                    () = tx.closed() => return,
                    change = changes.recv() => Some(change),
                    // Another replica may have changed it: the store is the truth.
                    () = tokio::time::sleep(WATCH_POLL) => None,
                };
                match change {
                    Some(Ok(id)) if id != order_id => continue,
                    // Lagged behind: re-read rather than trust what was missed.
                    None | Some(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
                    Some(Err(broadcast::error::RecvError::Closed)) => return,
                }
                let order = match store.get(&order_id).await {
                    Ok(order) => order,
                    Err(error) => {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                };
                if order.status == last {
                    continue;
                }
                last = order.status;
                if tx.send(Ok(order)).await.is_err() || last.is_final() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// Totals of an order keyed by currency, for adapters that show one amount.
pub fn single_total(order: &Order) -> Result<Option<Amount>, OrdersError> {
    let totals: BTreeMap<String, Amount> = order
        .totals()?
        .into_iter()
        .map(|a| (a.currency().to_string(), a))
        .collect();
    Ok(if totals.len() == 1 {
        totals.into_values().next()
    } else {
        None
    })
}
