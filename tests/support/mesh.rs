//! The whole mesh as a test starts it: `ferrymesh up` at a free port
//! offset, clients for its services, and the orders and histories the
//! end-to-end tests place and read.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use inventory::pb::ferrymesh::inventory::v1::GetStockRequest;
use inventory::pb::ferrymesh::inventory::v1::inventory_service_client::InventoryServiceClient;
use kit_values::pb::ferrymesh::common::v1::{Address, PaymentCard};
use nix::sys::signal::Signal;
use orders::pb::ferrymesh::orders::v2 as opb;
use orders::pb::ferrymesh::orders::v2::orders_service_client::OrdersServiceClient;
use payments::pb::ferrymesh::payments::v1::payments_service_client::PaymentsServiceClient;
use tonic::transport::Channel;
use workflow::pb::ferrymesh::workflow::v1 as wpb;
use workflow::pb::ferrymesh::workflow::v1::workflow_service_client::WorkflowServiceClient;

use super::{Process, ferrymesh, free_port_offset};

pub(crate) const GOOD: &str = "4242424242424242";
pub(crate) const DECLINED: &str = "4000000000000002";
pub(crate) const NO_FUNDS: &str = "4000000000009995";
pub(crate) const FLAKY: &str = "4000000000000119";

/// A mesh started with `ferrymesh up`, and clients for it.
pub(crate) struct Mesh {
    pub(crate) up: Process,
    pub(crate) offset: u16,
    pub(crate) orders: OrdersServiceClient<Channel>,
    pub(crate) workflow: WorkflowServiceClient<Channel>,
    pub(crate) inventory: InventoryServiceClient<Channel>,
    pub(crate) payments: PaymentsServiceClient<Channel>,
}

/// A channel to a service of the mesh: plaintext, or mutual TLS as `tls`'s identity.
pub(crate) fn channel_as(port: u16, tls: Option<&std::sync::Arc<kit::tls::MeshTls>>) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
    match tls {
        None => endpoint.connect_lazy(),
        Some(tls) => endpoint.connect_with_connector_lazy(tls.connector()),
    }
}

impl Mesh {
    pub(crate) async fn up(data: &Path, pass: &[&str]) -> Mesh {
        Mesh::up_with(data, pass, &[], &[]).await
    }

    /// `up` with more of its flags and environment variables.
    pub(crate) async fn up_with(data: &Path, pass: &[&str], flags: &[&str], env: &[(&str, &str)]) -> Mesh {
        let offset = free_port_offset();
        let mut command = ferrymesh();
        command
            .args(["up", "--port-offset", &offset.to_string(), "--data-dir"])
            .arg(data)
            .args(flags)
            .envs(env.iter().copied());
        for p in pass {
            command.args(["--pass", p]);
        }
        let mut up = Process::spawn(command);
        up.wait_for_line(
            |l| l.contains("all services are SERVING"),
            Duration::from_secs(90),
        )
        .await;
        // Under --tls the test calls the services as the operator.
        let tls = flags.contains(&"--tls").then(|| {
            std::sync::Arc::new(
                kit::tls::MeshTls::load(kit::tls::TlsArgs::from_dir(&data.join("certs"), "operator"))
                    .unwrap(),
            )
        });
        let channel = |port| channel_as(port, tls.as_ref());
        Mesh {
            up,
            offset,
            orders: OrdersServiceClient::new(channel(crate::support::port("orders", offset))),
            workflow: WorkflowServiceClient::new(channel(crate::support::port("workflow", offset))),
            inventory: InventoryServiceClient::new(channel(crate::support::port("inventory", offset))),
            payments: PaymentsServiceClient::new(channel(crate::support::port("payments", offset))),
        }
    }

    /// Where `service` of this mesh listens.
    pub(crate) fn port(&self, service: &str) -> u16 {
        super::port(service, self.offset)
    }

    pub(crate) async fn stop(mut self) {
        self.up.signal(Signal::SIGTERM);
        let status = self.up.wait_exit(Duration::from_secs(60)).await;
        assert!(status.success(), "{}", self.up.output());
    }

    pub(crate) async fn place(
        &self,
        key: &str,
        items: &[(&str, i32)],
        card: &str,
        country: &str,
    ) -> opb::Order {
        self.orders
            .clone()
            .place_order(order_request(key, items, card, country))
            .await
            .unwrap_or_else(|s| panic!("PlaceOrder {key}: {s:?}"))
            .into_inner()
            .order
            .unwrap()
    }

    pub(crate) async fn order(&self, id: &str) -> opb::Order {
        self.orders
            .clone()
            .get_order(opb::GetOrderRequest { order_id: id.into() })
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap()
    }

    /// Waits until the order leaves PENDING and its saga has ended (a
    /// confirmed order's stock is committed after it is confirmed).
    pub(crate) async fn settled(&self, id: &str, within: Duration) -> opb::Order {
        let deadline = Instant::now() + within;
        loop {
            let order = self.order(id).await;
            if order.status != opb::OrderStatus::Pending as i32
                && self.execution(id).await.status != wpb::ExecutionStatus::Running as i32
            {
                return order;
            }
            assert!(
                Instant::now() < deadline,
                "order {id} still PENDING: {order:?}\n{}",
                self.up.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn execution(&self, name: &str) -> wpb::Execution {
        self.workflow
            .clone()
            .describe_execution(wpb::DescribeExecutionRequest {
                execution_name: name.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .execution
            .unwrap()
    }

    pub(crate) async fn history(&self, name: &str) -> Vec<wpb::HistoryEvent> {
        let mut events = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .workflow
                .clone()
                .get_execution_history(wpb::GetExecutionHistoryRequest {
                    execution_name: name.into(),
                    page_size: 1000,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            events.extend(page.events);
            if page.next_page_token.is_empty() {
                return events;
            }
            token = page.next_page_token;
        }
    }

    /// Available stock of every SKU.
    pub(crate) async fn stock(&self, skus: &[&str]) -> BTreeMap<String, (i64, i64, i64)> {
        self.inventory
            .clone()
            .get_stock(GetStockRequest {
                skus: skus.iter().map(|s| s.to_string()).collect(),
            })
            .await
            .unwrap()
            .into_inner()
            .levels
            .into_iter()
            .map(|l| (l.sku, (l.on_hand, l.reserved, l.available)))
            .collect()
    }

    /// Running executions, by listing.
    pub(crate) async fn running(&self) -> usize {
        let mut count = 0;
        let mut token = String::new();
        loop {
            let page = self
                .workflow
                .clone()
                .list_executions(wpb::ListExecutionsRequest {
                    status: wpb::ExecutionStatus::Running as i32,
                    page_size: 100,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            count += page.executions.len();
            if page.next_page_token.is_empty() {
                return count;
            }
            token = page.next_page_token;
        }
    }
}

pub(crate) fn order_request(
    key: &str,
    items: &[(&str, i32)],
    card: &str,
    country: &str,
) -> opb::PlaceOrderRequest {
    opb::PlaceOrderRequest {
        idempotency_key: key.into(),
        customer_email: "ada@example.com".into(),
        items: items
            .iter()
            .map(|(p, q)| opb::PlaceOrderItem {
                product_id: p.to_string(),
                quantity: *q,
            })
            .collect(),
        shipping_address: Some(Address {
            recipient_name: "Ada Lovelace".into(),
            street_lines: vec!["12 St James's Square".into()],
            city: "London".into(),
            region: String::new(),
            postal_code: "SW1Y 4JH".into(),
            country_code: country.into(),
        }),
        shipping_option: opb::ShippingOption::Standard as i32,
        card: Some(PaymentCard {
            number: card.into(),
            expiry_month: 12,
            expiry_year: 2099,
            cvc: "123".into(),
            holder_name: "Ada Lovelace".into(),
        }),
    }
}

/// The task events of one state: (type, retry attempt, details).
pub(crate) fn task_events<'a>(events: &'a [wpb::HistoryEvent], state: &str) -> Vec<&'a wpb::HistoryEvent> {
    events.iter().filter(|e| e.state_name == state).collect()
}

pub(crate) fn succeeded(events: &[wpb::HistoryEvent], state: &str) -> bool {
    task_events(events, state)
        .iter()
        .any(|e| e.type_name == "TaskSucceeded")
}

/// The payment id the saga's Charge used (from the scheduled call), if it got that far.
pub(crate) fn payment_id(events: &[wpb::HistoryEvent]) -> Option<String> {
    let scheduled = events
        .iter()
        .find(|e| e.state_name == "Charge card" && e.type_name == "TaskScheduled")?;
    let details: serde_json::Value = serde_json::from_str(&scheduled.details).ok()?;
    details["parameters"]["payment_id"].as_str().map(str::to_string)
}
