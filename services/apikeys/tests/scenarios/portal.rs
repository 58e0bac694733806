//! Developers serving themselves: sign-up, their keys, their invoice.

use super::*;

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
    let bob_key = bob.key.clone().unwrap();

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
    invoices_are_the_callers_own(api, &ann, &bob).await;
    operators_list_developers_by_page(api).await;
    let status = api
        .portal()
        .list_my_keys(with_key(pb::ListMyKeysRequest {}, &bob.secret))
        .await;
    assert!(status.is_ok(), "bob's key is untouched");
}

/// The invoice of the month, for the caller only; a bad period says what to write.
async fn invoices_are_the_callers_own(
    api: &ApiKeys,
    ann: &pb::RegisterDeveloperResponse,
    bob: &pb::RegisterDeveloperResponse,
) {
    let ann_key = ann.key.as_ref().unwrap();
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
}

/// Operators list developers, a page at a time.
async fn operators_list_developers_by_page(api: &ApiKeys) {
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
