//! The gRPC face of the catalog: pb <-> domain, and errors to statuses.

use tonic::{Request, Response, Status};

use crate::domain::{
    CatalogError, ListProducts, Product, ProductId, ProductPage, SearchProducts, SearchQuery,
};
use crate::pb::ferrymesh::catalog::v1 as pb;
use crate::pb::ferrymesh::common::v1::Money;
use crate::store::Snapshot;
use kit_store::paging::PageRequest;
use kit_values::Violations;

pub(crate) struct CatalogApi {
    snapshot: Snapshot,
}

impl CatalogApi {
    pub(crate) fn new(snapshot: Snapshot) -> Self {
        CatalogApi { snapshot }
    }
}

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogApi {
    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let list = ListProducts::try_from(request.into_inner())?;
        let page = self.snapshot.current().page(None, &list.page);
        let (products, next_page_token, total_size) = to_pb_page(page, &list.page);
        Ok(Response::new(pb::ListProductsResponse {
            products,
            next_page_token,
            total_size,
        }))
    }

    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::GetProductResponse>, Status> {
        let mut violations = Violations::new();
        let id = ProductId::parse(&request.get_ref().product_id)
            .map_err(|reason| violations.add("product_id", reason))
            .ok();
        let id = violations.into_result(id).map_err(CatalogError::from)?;
        let Some(id) = id else {
            return Err(Status::internal("product id lost in validation"));
        };
        let catalog = self.snapshot.current();
        let product = catalog.get(&id).ok_or(CatalogError::NotFound(id.clone()))?;
        Ok(Response::new(pb::GetProductResponse {
            product: Some(to_pb(product.clone())),
        }))
    }

    async fn search_products(
        &self,
        request: Request<pb::SearchProductsRequest>,
    ) -> Result<Response<pb::SearchProductsResponse>, Status> {
        let search = SearchProducts::try_from(request.into_inner())?;
        let page = self.snapshot.current().page(Some(&search.query), &search.page);
        let (products, next_page_token, total_size) = to_pb_page(page, &search.page);
        Ok(Response::new(pb::SearchProductsResponse {
            products,
            next_page_token,
            total_size,
        }))
    }
}

impl TryFrom<pb::ListProductsRequest> for ListProducts {
    type Error = CatalogError;

    fn try_from(request: pb::ListProductsRequest) -> Result<Self, CatalogError> {
        let mut violations = Violations::new();
        let page = PageRequest::parse(request.page_size, &request.page_token, "list", &mut violations);
        match page {
            Some(page) if violations.is_empty() => Ok(ListProducts { page }),
            _ => Err(violations.into()),
        }
    }
}

impl TryFrom<pb::SearchProductsRequest> for SearchProducts {
    type Error = CatalogError;

    fn try_from(request: pb::SearchProductsRequest) -> Result<Self, CatalogError> {
        let mut violations = Violations::new();
        let query = SearchQuery::parse(&request.query)
            .map_err(|reason| violations.add("query", reason))
            .ok();
        // A token is good only for the same words.
        let filter = match &query {
            Some(q) => format!("search:{}", q.words.join(" ")),
            None => String::new(),
        };
        let page = PageRequest::parse(request.page_size, &request.page_token, &filter, &mut violations);
        match (query, page) {
            (Some(query), Some(page)) if violations.is_empty() => Ok(SearchProducts { query, page }),
            _ => Err(violations.into()),
        }
    }
}

fn to_pb_page(page: ProductPage, request: &PageRequest) -> (Vec<pb::Product>, String, i32) {
    let token = page
        .next_after
        .as_deref()
        .map(|key| request.next_token(key))
        .unwrap_or_default();
    let total = i32::try_from(page.total).unwrap_or(i32::MAX);
    (page.products.into_iter().map(to_pb).collect(), token, total)
}

fn to_pb(product: Product) -> pb::Product {
    pb::Product {
        id: product.id.as_str().to_string(),
        name: product.name,
        description: product.description,
        picture: product.picture,
        price: Some(Money {
            currency_code: product.price.currency_code,
            units: product.price.units,
            nanos: product.price.nanos,
        }),
        categories: product.categories,
        weight_grams: product.weight_grams,
    }
}

/// The one place catalog errors become statuses.
impl From<CatalogError> for Status {
    fn from(error: CatalogError) -> Status {
        match error {
            CatalogError::Invalid(violations) => kit::error::invalid_argument(violations),
            CatalogError::NotFound(id) => kit::error::not_found("product", id.as_str()),
            CatalogError::Store(_) | CatalogError::Corrupt { .. } => kit::error::internal(&error),
        }
    }
}
