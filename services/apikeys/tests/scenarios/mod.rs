//! What operators, the gateway and developers see of apikeys.

use apikeys::pb::ferrymesh::apikeys::v1 as pb;
use futures_util::future::join_all;
use kit_testing::{assert_invalid, assert_status};
use tonic::Code;

use crate::support::{ApiKeys, plan, record, with_key};

mod portal;
mod usage;
pub(crate) use portal::*;
pub(crate) use usage::*;

const GET: &str = "/ferrymesh.catalog.v1.CatalogService/GetProduct";
const PLACE: &str = "/ferrymesh.orders.v2.OrdersService/PlaceOrder";
const MINUTE: i64 = 60_000_000;

fn this_minute() -> i64 {
    let now = kit_values::now_micros();
    now - now.rem_euclid(MINUTE)
}

pub(crate) async fn admin_calls_need_the_admin_token(api: &ApiKeys) {
    let status = api
        .raw()
        .list_usage_plans(pb::ListUsagePlansRequest::default())
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "authorization: Bearer");
    let mut wrong = pb::api_keys_service_client::ApiKeysServiceClient::with_interceptor(
        api.server.channel().await,
        crate::support::Bearer("not-the-token-at-all".into()),
    );
    let status = wrong
        .list_usage_plans(pb::ListUsagePlansRequest::default())
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "admin token is not valid");
    // The default plan exists from the start.
    let plans = api
        .admin()
        .list_usage_plans(pb::ListUsagePlansRequest::default())
        .await
        .unwrap()
        .into_inner()
        .plans;
    assert_eq!(
        plans.iter().map(|p| p.plan_id.as_str()).collect::<Vec<_>>(),
        ["free"]
    );
}

pub(crate) async fn plans_are_checked_and_idempotent(api: &ApiKeys) {
    let mut bad = plan("Bad Id");
    bad.rate_limit = f64::NAN;
    bad.quota_period = 0;
    bad.allowed_methods = vec!["catalog".into()];
    bad.method_weights = vec![pb::MethodWeight {
        method: "ferrymesh.orders.*".into(),
        weight: 0,
    }];
    let status = api
        .admin()
        .create_usage_plan(pb::CreateUsagePlanRequest { plan: Some(bad) })
        .await
        .unwrap_err();
    assert_invalid(&status, "plan.plan_id", "lowercase letters");
    assert_invalid(&status, "plan.rate_limit", "requests per second");
    assert_invalid(
        &status,
        "plan.quota_period",
        "is required when quota_limit is set",
    );
    assert_invalid(&status, "plan.allowed_methods[0]", "pkg.Service/Method");
    assert_invalid(&status, "plan.method_weights[0].weight", "must be 1 to 1000");

    let mut good = plan("gold");
    good.allowed_methods = vec!["ferrymesh.catalog.v1.*".into()];
    good.method_rate_limits = vec![pb::MethodRateLimit {
        method: "ferrymesh.catalog.v1.CatalogService/SearchProducts".into(),
        rate_limit: 1.0,
        burst_limit: 1,
    }];
    let first = api
        .admin()
        .create_usage_plan(pb::CreateUsagePlanRequest {
            plan: Some(good.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    let again = api
        .admin()
        .create_usage_plan(pb::CreateUsagePlanRequest {
            plan: Some(good.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(first, again, "the same settings answer the same plan");
    assert_eq!(first.allowed_methods, ["ferrymesh.catalog.v1.*"]);
    good.rate_limit = 1.0;
    good.burst_limit = 1;
    let status = api
        .admin()
        .create_usage_plan(pb::CreateUsagePlanRequest { plan: Some(good) })
        .await
        .unwrap_err();
    assert_status(&status, Code::AlreadyExists, "usage plan `gold` already exists");
}

pub(crate) async fn secrets_are_shown_once_and_stored_only_hashed(api: &ApiKeys) {
    api.plan_and_developer(plan("basic"), "ada").await;
    let created = api
        .admin()
        .create_api_key(pb::CreateApiKeyRequest {
            key_id: "ada-1".into(),
            developer_id: "ada".into(),
            name: "laptop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let secret = created.secret.clone();
    assert!(secret.starts_with("fmk_") && secret.len() == 44, "{secret}");
    let key = created.key.unwrap();
    assert_eq!(
        (key.prefix.as_str(), key.plan_id.as_str()),
        (&secret[..12], "basic")
    );
    let repeat = api
        .admin()
        .create_api_key(pb::CreateApiKeyRequest {
            key_id: "ada-1".into(),
            developer_id: "ada".into(),
            name: "laptop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(repeat.secret, "", "a repeat does not show the secret again");
    assert_eq!(repeat.key.unwrap().key_id, "ada-1");
    // Nothing stored holds the secret.
    let tail = &secret[12..];
    assert_eq!(
        api.server
            .db
            .count(&format!(
                "api_keys WHERE secret_hash LIKE '%{tail}%' OR prefix LIKE '%{tail}%'"
            ))
            .await,
        0
    );
    assert_eq!(
        api.server
            .db
            .count(&format!("idempotency_keys WHERE outcome LIKE '%{tail}%'"))
            .await,
        0
    );
    let valid = api
        .admin()
        .validate_api_key(pb::ValidateApiKeyRequest {
            secret: secret.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(valid.key.unwrap().key_id, "ada-1");
    assert_eq!(valid.developer.unwrap().developer_id, "ada");
    assert_eq!(valid.plan.unwrap().quota_limit, 1000);
    assert!(valid.quota_period_start.is_some() && valid.quota_period_end.is_some());

    for unknown in [
        format!("fmk_{}", "A".repeat(40)),
        "short".to_string(),
        String::new(),
    ] {
        let status = api
            .admin()
            .validate_api_key(pb::ValidateApiKeyRequest { secret: unknown })
            .await
            .unwrap_err();
        assert_status(&status, Code::Unauthenticated, "API key is not valid");
    }
    let status = api
        .admin()
        .create_api_key(pb::CreateApiKeyRequest {
            key_id: "nobody-1".into(),
            developer_id: "nobody".into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "developer `nobody` does not exist");
}

pub(crate) async fn revoking_refuses_the_key_and_feeds_the_change(api: &ApiKeys) {
    api.plan_and_developer(plan("basic"), "bob").await;
    let secret = api.key("bob-1", "bob").await;
    // Creating the plan made change 1; the feed starts from there.
    let cursor = api
        .admin()
        .list_changes(pb::ListChangesRequest { after: -1 })
        .await
        .unwrap()
        .into_inner()
        .cursor;
    assert!(cursor >= 1, "{cursor}");
    let revoked = api
        .admin()
        .revoke_api_key(pb::RevokeApiKeyRequest {
            key_id: "bob-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert_eq!(revoked.status, pb::ApiKeyStatus::Revoked as i32);
    let again = api
        .admin()
        .revoke_api_key(pb::RevokeApiKeyRequest {
            key_id: "bob-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert_eq!(
        again.revoke_time, revoked.revoke_time,
        "revoking again changes nothing"
    );
    let status = api
        .admin()
        .validate_api_key(pb::ValidateApiKeyRequest { secret })
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "was revoked");
    let changes = api
        .admin()
        .list_changes(pb::ListChangesRequest { after: cursor })
        .await
        .unwrap()
        .into_inner();
    assert!(
        changes.changes.iter().any(|c| c.key_id == "bob-1"),
        "the revocation is in the change feed: {changes:?}"
    );
    // Fresh changes are sent again until they settle, so the cursor stays put.
    assert_eq!(changes.cursor, cursor, "{changes:?}");
}

pub(crate) async fn rotation_keeps_both_keys_in_the_grace_period_and_the_quota(api: &ApiKeys) {
    api.plan_and_developer(plan("basic"), "cy").await;
    let old_secret = api.key("cy-1", "cy").await;
    api.admin()
        .record_usage(pb::RecordUsageRequest {
            batch_id: "b1".into(),
            records: vec![record("cy-1", GET, 7, this_minute())],
        })
        .await
        .unwrap();
    let rotated = api
        .admin()
        .rotate_api_key(pb::RotateApiKeyRequest {
            key_id: "cy-1".into(),
            new_key_id: "cy-2".into(),
            grace_period: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        })
        .await
        .unwrap()
        .into_inner();
    let new_secret = rotated.secret.clone();
    assert_eq!(rotated.old_key.unwrap().replaced_by_key_id, "cy-2");
    for secret in [&old_secret, &new_secret] {
        let valid = api
            .admin()
            .validate_api_key(pb::ValidateApiKeyRequest {
                secret: secret.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            valid.quota_used, 7,
            "the quota belongs to the developer, not the key"
        );
    }
    let status = api
        .admin()
        .rotate_api_key(pb::RotateApiKeyRequest {
            key_id: "cy-1".into(),
            new_key_id: "cy-3".into(),
            grace_period: None,
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::FailedPrecondition, "already rotated to `cy-2`");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let status = api
        .admin()
        .validate_api_key(pb::ValidateApiKeyRequest { secret: old_secret })
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "expired");
    api.admin()
        .validate_api_key(pb::ValidateApiKeyRequest { secret: new_secret })
        .await
        .unwrap();
}
