//! The gRPC face of the inventory: pb <-> domain, and errors to statuses.

use tonic::{Request, Response, Status};

use crate::domain::{InventoryError, Reservation, ReservationStatus, ReserveStock};
use crate::pb::ferrymesh::inventory::v1 as pb;
use crate::store::Store;
use kit_values::Violations;
use kit_values::{check_request_id, check_sku, timestamp};

/// Most SKUs in one GetStock.
const MAX_STOCK_QUERY: usize = 100;

pub(crate) struct InventoryApi {
    store: Store,
}

impl InventoryApi {
    pub(crate) fn new(store: Store) -> Self {
        InventoryApi { store }
    }
}

#[tonic::async_trait]
impl pb::inventory_service_server::InventoryService for InventoryApi {
    async fn get_stock(
        &self,
        request: Request<pb::GetStockRequest>,
    ) -> Result<Response<pb::GetStockResponse>, Status> {
        let skus = request.into_inner().skus;
        let mut violations = Violations::new();
        if skus.is_empty() || skus.len() > MAX_STOCK_QUERY {
            violations.add(
                "skus",
                format!("must hold 1 to {MAX_STOCK_QUERY} SKUs, got {}", skus.len()),
            );
        }
        for (i, sku) in skus.iter().enumerate().take(MAX_STOCK_QUERY) {
            if let Err(reason) = check_sku(sku) {
                violations.add(format!("skus[{i}]"), reason);
            }
        }
        violations.into_result(()).map_err(InventoryError::from)?;
        let levels = self.store.levels(&skus).await?;
        let levels = levels.into_iter().map(level_to_pb).collect();
        Ok(Response::new(pb::GetStockResponse { levels }))
    }

    async fn reserve_stock(
        &self,
        request: Request<pb::ReserveStockRequest>,
    ) -> Result<Response<pb::ReserveStockResponse>, Status> {
        let request = request.into_inner();
        let items: Vec<(String, i32)> = request.items.into_iter().map(|i| (i.sku, i.quantity)).collect();
        let reserve = ReserveStock::parse(&request.reservation_id, &items)?;
        let reservation = self.store.reserve(&reserve).await?;
        Ok(Response::new(pb::ReserveStockResponse {
            reservation: Some(to_pb(reservation)),
        }))
    }

    async fn receive_stock(
        &self,
        request: Request<pb::ReceiveStockRequest>,
    ) -> Result<Response<pb::ReceiveStockResponse>, Status> {
        let request = request.into_inner();
        let items: Vec<(String, i32)> = request.items.into_iter().map(|i| (i.sku, i.quantity)).collect();
        let receipt = ReserveStock::parse_with_id("receipt_id", &request.receipt_id, &items)?;
        let levels = self.store.receive(&receipt).await?;
        Ok(Response::new(pb::ReceiveStockResponse {
            levels: levels.into_iter().map(level_to_pb).collect(),
        }))
    }

    async fn commit_reservation(
        &self,
        request: Request<pb::CommitReservationRequest>,
    ) -> Result<Response<pb::CommitReservationResponse>, Status> {
        let id = reservation_id(&request.get_ref().reservation_id)?;
        let reservation = self.store.commit(&id).await?;
        Ok(Response::new(pb::CommitReservationResponse {
            reservation: Some(to_pb(reservation)),
        }))
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        let id = reservation_id(&request.get_ref().reservation_id)?;
        let reservation = self.store.get(&id).await?;
        Ok(Response::new(pb::GetReservationResponse {
            reservation: Some(to_pb(reservation)),
        }))
    }

    async fn release_reservation(
        &self,
        request: Request<pb::ReleaseReservationRequest>,
    ) -> Result<Response<pb::ReleaseReservationResponse>, Status> {
        let id = reservation_id(&request.get_ref().reservation_id)?;
        let reservation = self.store.release(&id).await?;
        Ok(Response::new(pb::ReleaseReservationResponse {
            reservation: Some(to_pb(reservation)),
        }))
    }
}

fn reservation_id(text: &str) -> Result<String, InventoryError> {
    let mut violations = Violations::new();
    let id = check_request_id("reservation_id", text, &mut violations);
    id.ok_or_else(|| violations.into())
}

fn to_pb(reservation: Reservation) -> pb::Reservation {
    let status = match reservation.status {
        ReservationStatus::Reserved => pb::ReservationStatus::Reserved,
        ReservationStatus::Committed => pb::ReservationStatus::Committed,
        ReservationStatus::Released => pb::ReservationStatus::Released,
    };
    pb::Reservation {
        reservation_id: reservation.reservation_id,
        items: reservation
            .items
            .into_iter()
            .map(|i| pb::ReservationItem {
                sku: i.sku,
                quantity: i32::try_from(i.quantity).unwrap_or(i32::MAX),
            })
            .collect(),
        status: status as i32,
        create_time: Some(timestamp(reservation.create_micros)),
        update_time: Some(timestamp(reservation.update_micros)),
    }
}

/// The one place inventory errors become statuses.
impl From<InventoryError> for Status {
    fn from(error: InventoryError) -> Status {
        use kit::error as e;
        match error {
            InventoryError::Invalid(violations) => e::invalid_argument(violations),
            InventoryError::UnknownSkus(ref skus) => {
                let mut violations = Violations::new();
                for sku in skus {
                    violations.add("sku", format!("{sku:?} is not a SKU the inventory stocks"));
                }
                e::invalid_argument(violations)
            }
            InventoryError::NotFound(id) => e::not_found("reservation", &id),
            InventoryError::Insufficient(ref shortfalls) => {
                // ErrorInfo metadata: each short SKU with how many were asked and are left.
                let short: Vec<(&str, String)> = shortfalls
                    .iter()
                    .map(|s| {
                        (
                            s.sku.as_str(),
                            format!("requested {}, available {}", s.requested, s.available),
                        )
                    })
                    .collect();
                e::failed_precondition(
                    "INSUFFICIENT_STOCK",
                    "inventory.ferrymesh",
                    &short,
                    error.to_string(),
                )
            }
            InventoryError::Conflict(ref id) => e::already_exists("reservation", id, error.to_string()),
            InventoryError::WrongState { .. } => {
                e::failed_precondition("RESERVATION_STATE", "inventory.ferrymesh", &[], error.to_string())
            }
            InventoryError::Store(_) | InventoryError::Idempotency(_) | InventoryError::Corrupt(_) => {
                e::internal(&error)
            }
        }
    }
}

fn level_to_pb(l: crate::domain::StockLevel) -> pb::StockLevel {
    pb::StockLevel {
        available: l.available(),
        sku: l.sku,
        on_hand: l.on_hand,
        reserved: l.reserved,
    }
}
