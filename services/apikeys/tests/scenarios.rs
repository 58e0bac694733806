//! What operators, the gateway and developers see of apikeys.

use apikeys::pb::ferrymesh::apikeys::v1 as pb;
use futures_util::future::join_all;
use kit_testing::{assert_invalid, assert_status};
use tonic::Code;

use crate::support::{ApiKeys, plan, record, with_key};

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

pub(crate) async fn usage_and_invoices_count_every_call_once(api: &ApiKeys) {
    let mut metered = plan("metered");
    metered.free_calls_per_month = 10;
    metered.method_weights = vec![pb::MethodWeight {
        method: PLACE.trim_start_matches('/').into(),
        weight: 5,
    }];
    api.plan_and_developer(metered, "dee").await;
    api.key("dee-1", "dee").await;
    api.key("dee-2", "dee").await;
    let now = this_minute();
    let batch = pb::RecordUsageRequest {
        batch_id: "batch-1".into(),
        records: vec![
            record("dee-1", GET, 30, now),
            record("dee-1", GET, 12, now - MINUTE),
            record("dee-2", GET, 3, now),
            record("dee-1", PLACE, 4, now),
        ],
    };
    // The same batch eight times at once (a gateway retrying) counts once.
    let sent = join_all((0..8).map(|_| {
        let mut admin = api.admin();
        let batch = batch.clone();
        async move { admin.record_usage(batch).await.unwrap().into_inner() }
    }))
    .await;
    assert_eq!(sent.iter().map(|r| r.recorded).sum::<i64>(), 49);
    assert!(
        sent.iter()
            .all(|r| r.quotas.iter().any(|q| q.developer_id == "dee" && q.used == 49))
    );

    let mut other = batch.clone();
    other.records.pop();
    let status = api.admin().record_usage(other).await.unwrap_err();
    assert_status(&status, Code::AlreadyExists, "usage batch `batch-1`");

    let usage = |granularity: pb::UsageGranularity, key: &str| {
        let mut admin = api.admin();
        let request = pb::GetUsageRequest {
            developer_id: "dee".into(),
            key_id: key.into(),
            start_time: Some(kit_values::timestamp(now - 10 * MINUTE)),
            end_time: Some(kit_values::timestamp(now + MINUTE)),
            granularity: granularity as i32,
        };
        async move { admin.get_usage(request).await.unwrap().into_inner() }
    };
    let minutes = usage(pb::UsageGranularity::Minute, "").await;
    let counts: Vec<(&str, i64, i64)> = minutes
        .buckets
        .iter()
        .map(|b| {
            (
                b.method.as_str(),
                b.window_start.unwrap().seconds * 1_000_000 - now,
                b.count,
            )
        })
        .collect();
    assert_eq!(counts, [(GET, -MINUTE, 12), (GET, 0, 33), (PLACE, 0, 4)]);
    assert_eq!(minutes.total, 49);
    assert_eq!(usage(pb::UsageGranularity::Minute, "dee-2").await.total, 3);
    let days = usage(pb::UsageGranularity::Day, "").await;
    assert_eq!(days.total, 49);

    let status = api
        .admin()
        .get_usage(pb::GetUsageRequest {
            developer_id: "dee".into(),
            key_id: String::new(),
            start_time: Some(kit_values::timestamp(now)),
            end_time: Some(kit_values::timestamp(now + 3 * 86_400_000_000)),
            granularity: pb::UsageGranularity::Minute as i32,
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "end_time", "at most 1 day");

    let period = {
        let text = kit_values::rfc3339(now);
        text[..7].to_string()
    };
    let invoice = api
        .admin()
        .get_invoice(pb::GetInvoiceRequest {
            developer_id: "dee".into(),
            period,
        })
        .await
        .unwrap()
        .into_inner()
        .invoice
        .unwrap();
    // 45 GetProduct at weight 1, 4 PlaceOrder at weight 5: 65; 10 free; 55 at 2.50 per 1000.
    let lines: Vec<(&str, i64, i32)> = invoice
        .lines
        .iter()
        .map(|l| (l.method.as_str(), l.calls, l.weight))
        .collect();
    assert_eq!(lines, [(GET, 45, 1), (PLACE, 4, 5)]);
    assert_eq!(
        (invoice.weighted_calls, invoice.free_calls, invoice.billable_calls),
        (65, 10, 55)
    );
    let total = invoice.total.unwrap();
    assert_eq!(
        (total.currency_code.as_str(), total.units, total.nanos),
        ("USD", 0, 137_500_000)
    );

    let status = api
        .admin()
        .get_invoice(pb::GetInvoiceRequest {
            developer_id: "dee".into(),
            period: "2026-13".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "period", "YYYY-MM");
    let status = api
        .admin()
        .record_usage(pb::RecordUsageRequest {
            batch_id: "bad".into(),
            records: vec![record("dee-1", "GetProduct", 0, now)],
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "records[0].method", "full method");
    assert_invalid(&status, "records[0].count", "must be 1 to");
}

pub(crate) async fn developers_serve_themselves_through_the_portal(api: &ApiKeys) {
    let registered = api
        .portal()
        .register_developer(pb::RegisterDeveloperRequest {
            email: "Eve@Example.com".into(),
            name: "Eve".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let secret = registered.secret.clone();
    assert!(secret.starts_with("fmk_"));
    let developer = registered.developer.unwrap();
    assert_eq!(
        (developer.email.as_str(), developer.plan_id.as_str()),
        ("eve@example.com", "free")
    );
    let again = api
        .portal()
        .register_developer(pb::RegisterDeveloperRequest {
            email: "eve@example.com".into(),
            name: "Eve".into(),
        })
        .await
        .unwrap_err();
    // Signing up again says the email is taken, and nothing of its developer.
    assert_status(&again, Code::AlreadyExists, "already registered");
    assert!(!again.message().contains(&developer.developer_id), "{again:?}");
    let status = api
        .portal()
        .register_developer(pb::RegisterDeveloperRequest {
            email: "mallöry@example.com".into(),
            name: "Mallory".into(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "must be an ASCII email address");

    let status = api
        .portal()
        .list_my_keys(pb::ListMyKeysRequest {})
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "x-api-key");
    let keys = api
        .portal()
        .list_my_keys(with_key(pb::ListMyKeysRequest {}, &secret))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].prefix, &secret[..12]);

    let key_id = keys[0].key_id.clone();
    api.admin()
        .record_usage(pb::RecordUsageRequest {
            batch_id: "eve-1".into(),
            records: vec![record(&key_id, GET, 5, this_minute())],
        })
        .await
        .unwrap();
    let mine = api
        .portal()
        .get_my_usage(with_key(
            pb::GetMyUsageRequest {
                start_time: Some(kit_values::timestamp(this_minute() - MINUTE)),
                end_time: Some(kit_values::timestamp(this_minute() + MINUTE)),
                granularity: pb::UsageGranularity::Minute as i32,
            },
            &secret,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((mine.total, mine.quota_used, mine.quota_limit), (5, 5, 10_000));

    let rotated = api
        .portal()
        .rotate_my_key(with_key(
            pb::RotateMyKeyRequest {
                grace_period: Some(prost_types::Duration { seconds: 0, nanos: 0 }),
            },
            &secret,
        ))
        .await
        .unwrap()
        .into_inner();
    let status = api
        .portal()
        .list_my_keys(with_key(pb::ListMyKeysRequest {}, &secret))
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "expired");
    let keys = api
        .portal()
        .list_my_keys(with_key(pb::ListMyKeysRequest {}, &rotated.secret))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 2, "the old key is listed as expired: {keys:?}");
    assert!(keys.iter().any(|k| k.status == pb::ApiKeyStatus::Expired as i32));
}

pub(crate) async fn the_same_email_registered_at_once_is_one_developer(api: &ApiKeys) {
    let answers = join_all((0..8).map(|_| {
        let mut portal = api.portal();
        async move {
            portal
                .register_developer(pb::RegisterDeveloperRequest {
                    email: "fay@example.com".into(),
                    name: "Fay".into(),
                })
                .await
        }
    }))
    .await;
    let won: Vec<_> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "one registration: {answers:?}");
    assert!(!won[0].get_ref().secret.is_empty());
    // The others learn that the email is taken, and nothing of its developer.
    for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert_status(refused, Code::AlreadyExists, "already registered");
        assert!(refused.details().is_empty(), "no details: {refused:?}");
        let id = &won[0].get_ref().developer.as_ref().unwrap().developer_id;
        assert!(!refused.message().contains(id.as_str()), "{refused:?}");
    }
    assert_eq!(api.server.db.count("developers").await, 1);
    assert_eq!(api.server.db.count("api_keys").await, 1);
}

pub(crate) async fn developers_revoke_their_own_keys_and_read_their_invoice(api: &ApiKeys) {
    let register = |email: &'static str| {
        let mut portal = api.portal();
        async move {
            portal
                .register_developer(pb::RegisterDeveloperRequest {
                    email: email.into(),
                    name: "Dev".into(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let ann = register("ann@example.com").await;
    let bob = register("bob@example.com").await;
    let ann_key = ann.key.unwrap();
    let bob_key = bob.key.unwrap();

    // Someone else's key is NOT_FOUND, as a missing one; bob's key still works.
    let status = api
        .portal()
        .revoke_my_key(with_key(
            pb::RevokeMyKeyRequest {
                key_id: bob_key.key_id.clone(),
            },
            &ann.secret,
        ))
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, &bob_key.key_id);
    api.portal()
        .list_my_keys(with_key(pb::ListMyKeysRequest {}, &bob.secret))
        .await
        .unwrap();
    let status = api
        .portal()
        .revoke_my_key(with_key(
            pb::RevokeMyKeyRequest {
                key_id: "../x".into(),
            },
            &ann.secret,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The invoice of the month, for the caller only; a bad period says what to write.
    api.admin()
        .record_usage(pb::RecordUsageRequest {
            batch_id: "ann-1".into(),
            records: vec![record(&ann_key.key_id, GET, 7, this_minute())],
        })
        .await
        .unwrap();
    let period = kit_values::rfc3339(this_minute())[..7].to_string();
    let invoice = api
        .portal()
        .get_my_invoice(with_key(
            pb::GetMyInvoiceRequest {
                period: period.clone(),
            },
            &ann.secret,
        ))
        .await
        .unwrap()
        .into_inner()
        .invoice
        .unwrap();
    assert_eq!(
        (invoice.developer_id.as_str(), invoice.weighted_calls),
        (ann.developer.as_ref().unwrap().developer_id.as_str(), 7)
    );
    let bobs = api
        .portal()
        .get_my_invoice(with_key(pb::GetMyInvoiceRequest { period }, &bob.secret))
        .await
        .unwrap()
        .into_inner()
        .invoice
        .unwrap();
    assert_eq!(bobs.weighted_calls, 0);
    let status = api
        .portal()
        .get_my_invoice(with_key(
            pb::GetMyInvoiceRequest {
                period: "11/2026".into(),
            },
            &ann.secret,
        ))
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "YYYY-MM");

    // Operators list developers, a page at a time.
    let mut admin = api.admin();
    let first = admin
        .list_developers(pb::ListDevelopersRequest {
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.developers.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = admin
        .list_developers(pb::ListDevelopersRequest {
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.developers.len(), 1);
    assert_ne!(
        first.developers[0].developer_id,
        second.developers[0].developer_id
    );
    let status = api
        .portal()
        .list_my_keys(with_key(pb::ListMyKeysRequest {}, &bob.secret))
        .await;
    assert!(status.is_ok(), "bob's key is untouched");
}

pub(crate) async fn a_developer_cannot_revoke_their_last_usable_key(api: &ApiKeys) {
    let ann = api
        .portal()
        .register_developer(pb::RegisterDeveloperRequest {
            email: "ann@example.com".into(),
            name: "Ann".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let ann_key = ann.key.clone().unwrap();
    // Her only key cannot be revoked: registering is once per email, so
    // she could never sign in again. The refusal says what to do instead.
    let revoke = |key_id: String, secret: String| {
        let mut portal = api.portal();
        async move {
            portal
                .revoke_my_key(with_key(pb::RevokeMyKeyRequest { key_id }, &secret))
                .await
        }
    };
    let status = revoke(ann_key.key_id.clone(), ann.secret.clone())
        .await
        .unwrap_err();
    assert_status(&status, Code::FailedPrecondition, "last usable key");
    assert!(status.message().contains("RotateMyKey"), "{status:?}");
    // With a second key (a rotation's), one of the two can go, not both:
    // revoking both at once leaves exactly one working.
    let rotated = api
        .portal()
        .rotate_my_key(with_key(
            pb::RotateMyKeyRequest {
                grace_period: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
            },
            &ann.secret,
        ))
        .await
        .unwrap()
        .into_inner();
    let new_key = rotated.new_key.unwrap();
    let both = join_all([
        revoke(ann_key.key_id.clone(), ann.secret.clone()),
        revoke(new_key.key_id.clone(), rotated.secret.clone()),
    ])
    .await;
    let won: Vec<_> = both.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "one of the last two keys is revoked: {both:?}");
    let refused = both.iter().find_map(|a| a.as_ref().err()).unwrap();
    assert_status(refused, Code::FailedPrecondition, "last usable key");
    let revoked = won[0].get_ref().key.clone().unwrap();
    assert_eq!(revoked.status, pb::ApiKeyStatus::Revoked as i32);
    let (gone, kept) = if revoked.key_id == ann_key.key_id {
        (ann.secret.clone(), rotated.secret.clone())
    } else {
        (rotated.secret.clone(), ann.secret.clone())
    };
    // The revoked key is refused at once; the other still works.
    api.portal()
        .list_my_keys(with_key(pb::ListMyKeysRequest {}, &kept))
        .await
        .unwrap();
    let status = api
        .portal()
        .list_my_keys(with_key(pb::ListMyKeysRequest {}, &gone))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::PermissionDenied | Code::Unauthenticated),
        "{status:?}"
    );
}
