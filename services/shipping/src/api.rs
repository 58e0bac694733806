//! The gRPC face of shipping: pb <-> domain, and errors to statuses.

use tonic::{Request, Response, Status};

use crate::domain::{
    NewShipment, ParcelItem, Shipment, ShipmentStatus, ShippingError, check_served, parse_items, quote,
};
use crate::pb::ferrymesh::shipping::v1 as pb;
use crate::store::Store;
use kit_values::Violations;
use kit_values::{PostalAddress, check_request_id, timestamp};

pub(crate) struct ShippingApi {
    store: Store,
}

impl ShippingApi {
    pub(crate) fn new(store: Store) -> Self {
        ShippingApi { store }
    }
}

fn item_parts(items: &[pb::ShipmentItem]) -> Vec<(String, i32, i32)> {
    items
        .iter()
        .map(|i| (i.sku.clone(), i.quantity, i.unit_weight_grams))
        .collect()
}

fn shipment_id(text: &str) -> Result<String, ShippingError> {
    let mut v = Violations::new();
    let id = check_request_id("shipment_id", text, &mut v);
    id.ok_or_else(|| v.into())
}

#[tonic::async_trait]
impl pb::shipping_service_server::ShippingService for ShippingApi {
    async fn get_quote(
        &self,
        request: Request<pb::GetQuoteRequest>,
    ) -> Result<Response<pb::GetQuoteResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::new();
        let address = PostalAddress::parse("address", request.address.as_ref(), &mut v);
        let items = parse_items(&item_parts(&request.items), &mut v);
        let Some(address) = address.filter(|_| v.is_empty()) else {
            return Err(ShippingError::from(v).into());
        };
        check_served(&address)?;
        let quote = quote(&address, &items);
        Ok(Response::new(pb::GetQuoteResponse {
            cost: Some(quote.cost.to_pb()),
            zone: quote.zone.name().to_string(),
            estimated_days: quote.estimated_days,
        }))
    }

    async fn create_shipment(
        &self,
        request: Request<pb::CreateShipmentRequest>,
    ) -> Result<Response<pb::CreateShipmentResponse>, Status> {
        let r = request.into_inner();
        let new = NewShipment::parse(
            &r.shipment_id,
            &r.order_id,
            r.address.as_ref(),
            &item_parts(&r.items),
        )?;
        check_served(&new.address)?;
        let shipment = self.store.create(&new).await?;
        Ok(Response::new(pb::CreateShipmentResponse {
            shipment: Some(to_pb(shipment)),
        }))
    }

    async fn cancel_shipment(
        &self,
        request: Request<pb::CancelShipmentRequest>,
    ) -> Result<Response<pb::CancelShipmentResponse>, Status> {
        let r = request.into_inner();
        let id = shipment_id(&r.shipment_id)?;
        if r.reason.chars().count() > 500 {
            let mut v = Violations::new();
            v.add("reason", "must be at most 500 characters");
            return Err(ShippingError::from(v).into());
        }
        let shipment = self.store.cancel(&id, &r.reason).await?;
        Ok(Response::new(pb::CancelShipmentResponse {
            shipment: Some(to_pb(shipment)),
        }))
    }

    async fn get_shipment(
        &self,
        request: Request<pb::GetShipmentRequest>,
    ) -> Result<Response<pb::GetShipmentResponse>, Status> {
        let id = shipment_id(&request.get_ref().shipment_id)?;
        let shipment = self.store.get(&id).await?;
        Ok(Response::new(pb::GetShipmentResponse {
            shipment: Some(to_pb(shipment)),
        }))
    }
}

fn to_pb(shipment: Shipment) -> pb::Shipment {
    let status = match shipment.status {
        ShipmentStatus::Created => pb::ShipmentStatus::Created,
        ShipmentStatus::Cancelled => pb::ShipmentStatus::Cancelled,
    };
    let item = |i: ParcelItem| pb::ShipmentItem {
        sku: i.sku,
        quantity: i32::try_from(i.quantity).unwrap_or(i32::MAX),
        unit_weight_grams: i32::try_from(i.unit_weight_grams).unwrap_or(i32::MAX),
    };
    pb::Shipment {
        address: Some(shipment.request.address.to_pb()),
        items: shipment.request.items.into_iter().map(item).collect(),
        shipment_id: shipment.request.shipment_id,
        order_id: shipment.request.order_id,
        cost: Some(shipment.cost.to_pb()),
        tracking_number: shipment.tracking_number,
        status: status as i32,
        cancel_reason: shipment.cancel_reason,
        create_time: Some(timestamp(shipment.create_micros)),
        update_time: Some(timestamp(shipment.update_micros)),
    }
}

/// The one place shipping errors become statuses.
impl From<ShippingError> for Status {
    fn from(error: ShippingError) -> Status {
        use kit::error as e;
        match error {
            ShippingError::Invalid(violations) => e::invalid_argument(violations),
            ShippingError::Unserved(ref country) => e::failed_precondition(
                "UNSERVED_DESTINATION",
                "shipping.ferrymesh",
                &[("country_code", country.clone())],
                error.to_string(),
            ),
            ShippingError::NotFound(id) => e::not_found("shipment", &id),
            ShippingError::Conflict(ref id) => e::already_exists("shipment", id, error.to_string()),
            ShippingError::Store(_) | ShippingError::Idempotency(_) | ShippingError::Corrupt(_) => {
                e::internal(&error)
            }
        }
    }
}
