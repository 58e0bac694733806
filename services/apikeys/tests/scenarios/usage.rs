//! Usage, quotas and invoices.

use super::*;

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
    usage_reads_back(api, now).await;
    invoice_weighs_and_prices(api, now).await;
    bad_usage_input_is_refused(api, now).await;
}

/// The 49 calls by minute, by key and by day; a range too long is refused.
async fn usage_reads_back(api: &ApiKeys, now: i64) {
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
}

/// The month's invoice: weights, the free calls, the price.
async fn invoice_weighs_and_prices(api: &ApiKeys, now: i64) {
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
}

async fn bad_usage_input_is_refused(api: &ApiKeys, now: i64) {
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
