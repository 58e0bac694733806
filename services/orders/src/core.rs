//! The orders core that both API versions adapt onto: placing (priced from
//! the catalog), reading, listing, cancelling and watching orders.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use tokio::sync::{broadcast, mpsc};

use crate::domain::{LineStatus, Order, OrderQuery, OrderStatus, OrdersError, PlaceOrder, PricedLine};
use crate::pb::ferrymesh::catalog::v1::GetProductRequest;
use crate::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use crate::store::Store;
use kit::client::Upstream;
use kit_values::Violations;
use kit_values::{Amount, NANOS_PER_UNIT, now_micros};

/// The orders use cases.
#[derive(Debug)]
pub struct Core {
    store: Store,
    catalog: CatalogServiceClient<Upstream>,
    /// Ids of orders whose status changed, for WatchOrder. In-process: a
    /// change made by another replica reaches its own watchers only.
    changes: broadcast::Sender<String>,
}

impl Core {
    /// The core over a store and a catalog channel.
    pub fn new(store: Store, catalog: Upstream) -> Self {
        let (changes, _) = broadcast::channel(1024);
        Core {
            store,
            catalog: CatalogServiceClient::new(catalog),
            changes,
        }
    }

    /// Places an order priced from the catalog; with a key, at most once.
    pub async fn place(&self, request: PlaceOrder) -> Result<Order, OrdersError> {
        let fingerprint = request.fingerprint();
        if let Some(key) = &request.idempotency_key
            && let Some(placed) = self.store.placed_with(key, &fingerprint).await?
        {
            return Ok(placed);
        }
        let lines = self.price(&request).await?;
        let now = now_micros();
        let order = Order {
            order_id: format!("ord-{}", uuid::Uuid::new_v4().simple()),
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
        // Refuse what cannot be totalled before it is stored.
        order.totals()?;
        // A concurrent call with the same key may win the claim; then this
        // answers the order it placed.
        let placed = self.store.place(order, &fingerprint).await?;
        tracing::info!(order_id = %placed.order_id, "order placed");
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

    /// An order by id.
    pub async fn get(&self, order_id: &str) -> Result<Order, OrdersError> {
        self.store.get(order_id).await
    }

    /// A page of orders and the cursor of the next.
    pub async fn list(&self, query: &OrderQuery) -> Result<(Vec<Order>, Option<String>), OrdersError> {
        self.store.list(query).await
    }

    /// Cancels a PENDING order.
    pub async fn cancel(&self, order_id: &str, reason: &str) -> Result<Order, OrdersError> {
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
                    change = changes.recv() => change,
                };
                match change {
                    Ok(id) if id != order_id => continue,
                    // Lagged behind: re-read rather than trust what was missed.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
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
