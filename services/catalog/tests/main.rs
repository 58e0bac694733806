//! The catalog alone, over a real port and a real database: every scenario
//! runs once on SQLite and once on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scenarios;
mod support;

kit_testing::on_sqlite_and_postgres!(
    crate::support::start;
    lists_every_seeded_product_in_pages,
    page_size_zero_means_twenty,
    gets_a_product_with_its_price,
    search_ignores_case_and_looks_at_name_description_and_categories,
    search_pages_like_list,
    search_treats_like_wildcards_as_text,
    rejects_bad_page_sizes,
    rejects_page_tokens_it_did_not_issue,
    rejects_empty_and_malformed_product_ids,
    unknown_product_is_not_found,
    rejects_empty_and_overlong_searches,
    reports_serving_on_health,
    refuses_messages_over_the_size_limit,
    lists_its_services_over_reflection_v1_and_v1alpha,
    migrating_again_changes_nothing,
    a_change_in_the_database_is_served_after_the_refresh,
    a_page_token_works_only_for_its_own_search,
);

#[tokio::test]
async fn the_concurrency_limit_queues_calls_beyond_it() {
    use catalog::pb::ferrymesh::catalog::v1::GetProductRequest;
    use catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
    use kit_testing::{TestDatabase, TestServer};

    // One call at a time, each held 400ms: three calls cannot all finish in under 1.2s.
    let server = TestServer::start_with::<catalog::migrations::Migrator>(
        TestDatabase::sqlite(),
        |args| {
            args.concurrency_limit = 1;
            args.fault = vec!["GetProduct:latency=400ms".parse().unwrap()];
        },
        catalog::service_with,
    )
    .await;
    let client = CatalogServiceClient::new(server.channel().await);
    let started = std::time::Instant::now();
    let calls = (0..3).map(|_| {
        let mut client = client.clone();
        async move {
            client
                .get_product(GetProductRequest {
                    product_id: "mug".into(),
                })
                .await
        }
    });
    for answer in futures_util::future::join_all(calls).await {
        answer.expect("queued calls are served, not refused");
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}
