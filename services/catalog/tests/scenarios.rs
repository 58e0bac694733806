//! What a caller of the catalog sees, one scenario per function.

use catalog::pb::ferrymesh::catalog::v1::{GetProductRequest, ListProductsRequest, SearchProductsRequest};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{Catalog, assert_invalid};

const SEEDED: usize = 16;

async fn search(catalog: &Catalog, query: &str) -> Vec<String> {
    let request = SearchProductsRequest {
        query: query.into(),
        page_size: 100,
        page_token: String::new(),
    };
    let response = catalog
        .client()
        .search_products(request)
        .await
        .expect("search")
        .into_inner();
    assert_eq!(response.total_size as usize, response.products.len());
    response.products.into_iter().map(|p| p.id).collect()
}

pub(crate) async fn lists_every_seeded_product_in_pages(catalog: &Catalog) {
    let mut client = catalog.client();
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_products(ListProductsRequest {
                page_size: 5,
                page_token: token.clone(),
            })
            .await
            .expect("list")
            .into_inner();
        assert_eq!(page.total_size as usize, SEEDED);
        sizes.push(page.products.len());
        ids.extend(page.products.into_iter().map(|p| p.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(sizes, [5, 5, 5, 1]);
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "pages are in id order with no repeats");
    assert_eq!(ids.len(), SEEDED);
    assert_eq!(ids.first().map(String::as_str), Some("air-plant"));
    assert_eq!(ids.last().map(String::as_str), Some("watch"));
}

pub(crate) async fn page_size_zero_means_twenty(catalog: &Catalog) {
    let page = catalog
        .client()
        .list_products(ListProductsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        page.products.len(),
        SEEDED,
        "all 16 fit in the default page of 20"
    );
    assert_eq!(page.next_page_token, "");
}

pub(crate) async fn gets_a_product_with_its_price(catalog: &Catalog) {
    let request = GetProductRequest {
        product_id: "vintage-typewriter".into(),
    };
    let product = catalog
        .client()
        .get_product(request)
        .await
        .expect("get")
        .into_inner()
        .product
        .expect("product");
    assert_eq!(product.id, "vintage-typewriter");
    assert_eq!(product.name, "Vintage Typewriter");
    assert_eq!(
        product.description,
        "This typewriter looks good in your living room."
    );
    assert_eq!(product.categories, ["vintage"]);
    assert_eq!(product.weight_grams, 4200);
    let price = product.price.expect("price");
    assert_eq!(
        (price.currency_code.as_str(), price.units, price.nanos),
        ("USD", 67, 990_000_000)
    );
}

pub(crate) async fn search_ignores_case_and_looks_at_name_description_and_categories(catalog: &Catalog) {
    // categories
    assert_eq!(
        search(catalog, "KITCHEN").await,
        [
            "bamboo-glass-jar",
            "espresso-grinder",
            "mug",
            "salt-pepper-shakers"
        ]
    );
    // description, every word must match
    assert_eq!(
        search(catalog, "Living Room").await,
        ["terrarium", "vintage-typewriter"]
    );
    // name
    assert_eq!(search(catalog, "typeWRITER").await, ["vintage-typewriter"]);
    assert!(search(catalog, "spaceship").await.is_empty());
}

pub(crate) async fn search_pages_like_list(catalog: &Catalog) {
    let mut client = catalog.client();
    let first = client
        .search_products(SearchProductsRequest {
            query: "kitchen".into(),
            page_size: 3,
            page_token: String::new(),
        })
        .await
        .expect("search")
        .into_inner();
    assert_eq!(first.total_size, 4);
    assert_eq!(first.products.len(), 3);
    assert!(!first.next_page_token.is_empty());
    let second = client
        .search_products(SearchProductsRequest {
            query: "kitchen".into(),
            page_size: 3,
            page_token: first.next_page_token,
        })
        .await
        .expect("search page 2")
        .into_inner();
    let ids: Vec<String> = second.products.into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["salt-pepper-shakers"]);
    assert_eq!(second.next_page_token, "");
}

pub(crate) async fn search_treats_like_wildcards_as_text(catalog: &Catalog) {
    assert!(
        search(catalog, "%").await.is_empty(),
        "% is a character, not a wildcard"
    );
    assert!(
        search(catalog, "_").await.is_empty(),
        "_ is a character, not a wildcard"
    );
    assert_eq!(search(catalog, "&").await, ["salt-pepper-shakers"]);
}

pub(crate) async fn rejects_bad_page_sizes(catalog: &Catalog) {
    let mut client = catalog.client();
    for size in [-1, 101, i32::MAX] {
        let status = client
            .list_products(ListProductsRequest {
                page_size: size,
                page_token: String::new(),
            })
            .await
            .expect_err("bad page size");
        assert_invalid(
            &status,
            "page_size",
            &format!("must be between 0 and 100 (0 means 20), got {size}"),
        );
    }
    let status = client
        .search_products(SearchProductsRequest {
            query: "mug".into(),
            page_size: -5,
            page_token: String::new(),
        })
        .await
        .expect_err("bad page size");
    assert_invalid(&status, "page_size", "got -5");
}

pub(crate) async fn rejects_page_tokens_it_did_not_issue(catalog: &Catalog) {
    for token in ["garbage", "p1.zz", "p1."] {
        let status = catalog
            .client()
            .list_products(ListProductsRequest {
                page_size: 5,
                page_token: token.into(),
            })
            .await
            .expect_err("bad token");
        assert_invalid(&status, "page_token", "is not a token this service issued");
    }
}

pub(crate) async fn rejects_empty_and_malformed_product_ids(catalog: &Catalog) {
    let mut client = catalog.client();
    let status = client
        .get_product(GetProductRequest {
            product_id: String::new(),
        })
        .await
        .expect_err("empty id");
    assert_invalid(&status, "product_id", "must not be empty");
    for bad in ["Bad ID!", "ab", "-mug", "MUG"] {
        let status = client
            .get_product(GetProductRequest {
                product_id: bad.into(),
            })
            .await
            .expect_err("bad id");
        assert_invalid(
            &status,
            "product_id",
            "must be 3 to 64 lowercase letters, digits or hyphens",
        );
    }
}

pub(crate) async fn unknown_product_is_not_found(catalog: &Catalog) {
    let status = catalog
        .client()
        .get_product(GetProductRequest {
            product_id: "no-such-thing".into(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "product `no-such-thing` does not exist");
}

pub(crate) async fn rejects_empty_and_overlong_searches(catalog: &Catalog) {
    let mut client = catalog.client();
    let status = client
        .search_products(SearchProductsRequest {
            query: "   ".into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect_err("blank query");
    assert_invalid(&status, "query", "must contain at least one word");
    let status = client
        .search_products(SearchProductsRequest {
            query: "a".repeat(201),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect_err("long query");
    assert_invalid(&status, "query", "must be at most 200 characters, got 201");
}

pub(crate) async fn refuses_messages_over_the_size_limit(catalog: &Catalog) {
    // 5 MiB is over the default 4 MiB limit: refused before any handler runs.
    let request = SearchProductsRequest {
        query: "x".repeat(5 * 1024 * 1024),
        page_size: 0,
        page_token: String::new(),
    };
    let status = catalog
        .client()
        .search_products(request)
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("message length too large"),
        "{}",
        status.message()
    );
    // The server is unharmed.
    catalog
        .client()
        .get_product(GetProductRequest {
            product_id: "mug".into(),
        })
        .await
        .expect("still serving");
}

pub(crate) async fn reports_serving_on_health(catalog: &Catalog) {
    let channel = tonic::transport::Endpoint::from_shared(catalog.server.uri())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "ferrymesh.catalog.v1.CatalogService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, tonic_health::ServingStatus::Serving as i32, "{service:?}");
    }
    let status = health
        .check(HealthCheckRequest {
            service: "ferrymesh.nope.v1.NopeService".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(status.code(), Code::NotFound);
}

pub(crate) async fn migrating_again_changes_nothing(catalog: &Catalog) {
    // A restart runs the migrator again over the same database.
    let again = kit_store::connect_and_migrate::<catalog::migrations::Migrator>(&catalog.server.db.url)
        .await
        .expect("migrate again");
    let _ = again.close().await;
    let page = catalog
        .client()
        .list_products(ListProductsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.total_size as usize, SEEDED, "the seed is applied once");
}

pub(crate) async fn lists_its_services_over_reflection_v1_and_v1alpha(catalog: &Catalog) {
    use tonic_reflection::pb::{v1, v1alpha};
    let channel = tonic::transport::Endpoint::from_shared(catalog.server.uri())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1 answers ListServices with a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"ferrymesh.catalog.v1.CatalogService".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "ferrymesh.catalog.v1.CatalogService".into(),
            ),
        ),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1alpha answers FileContainingSymbol with descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

/// The catalog serves reads from memory; a change made in its database (an
/// operator's price edit, a product added) is served after the next refresh.
pub(crate) async fn a_change_in_the_database_is_served_after_the_refresh(catalog: &Catalog) {
    let db = &catalog.server.db;
    db.execute("UPDATE products SET price_units = 99, price_nanos = 500000000 WHERE id = 'mug'")
        .await;
    db.execute(
        "INSERT INTO products (id, name, description, picture, price_currency, price_units, price_nanos, categories, weight_grams) \
         VALUES ('tea-pot', 'Tea Pot', 'Cast iron.', '/static/img/products/tea-pot.jpg', 'USD', 40, 0, 'kitchen', 900)",
    )
    .await;
    let deadline = std::time::Instant::now() + catalog::SNAPSHOT_REFRESH * 5;
    loop {
        let mug = catalog
            .client()
            .get_product(GetProductRequest {
                product_id: "mug".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .product
            .unwrap();
        let price = mug.price.unwrap();
        if (price.units, price.nanos) == (99, 500_000_000) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new price was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pot = catalog
        .client()
        .get_product(GetProductRequest {
            product_id: "tea-pot".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(pot.name, "Tea Pot");
    let found = catalog
        .client()
        .search_products(SearchProductsRequest {
            query: "cast iron".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.total_size, 1);
}

/// A page token carries the query it was issued for; with other words it is refused.
pub(crate) async fn a_page_token_works_only_for_its_own_search(catalog: &Catalog) {
    let first = catalog
        .client()
        .search_products(SearchProductsRequest {
            query: "kitchen".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let status = catalog
        .client()
        .search_products(SearchProductsRequest {
            query: "garden".into(),
            page_size: 1,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "page_token", "was issued for a query with other filters");
    let status = catalog
        .client()
        .list_products(ListProductsRequest {
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "page_token", "was issued for a query with other filters");
}
