//! Metering: every admitted call is counted in memory by (key, method,
//! stage, minute) and the counts are flushed to apikeys in batches. A batch
//! keeps its id until apikeys acknowledges it, so a retried flush is never
//! counted twice; counts are never dropped while apikeys is away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::keys::ApiKeysClient;
use crate::limits::Quotas;
use crate::pb::ferrymesh::apikeys::v1 as pb;

const MINUTE_MICROS: i64 = 60_000_000;
/// Most records per RecordUsage, as apikeys accepts.
const MAX_RECORDS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Counter {
    key_id: Arc<str>,
    developer_id: Arc<str>,
    method: Box<str>,
    stage: Arc<str>,
    minute: i64,
}

#[derive(Debug)]
struct Batch {
    id: String,
    records: Vec<pb::UsageRecord>,
    /// Calls per developer in the batch, for the quota cells.
    per_developer: HashMap<String, i64>,
}

/// Counted calls waiting to be flushed.
#[derive(Debug, Default)]
pub struct Meter {
    counts: Mutex<HashMap<Counter, i64>>,
    unsent: Mutex<Vec<Batch>>,
}

impl Meter {
    /// Counts one call.
    pub fn count(&self, key_id: &Arc<str>, developer_id: &Arc<str>, method: &str, stage: &Arc<str>) {
        let now = kit_values::now_micros();
        let counter = Counter {
            key_id: key_id.clone(),
            developer_id: developer_id.clone(),
            method: method.into(),
            stage: stage.clone(),
            minute: now - now.rem_euclid(MINUTE_MICROS),
        };
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(counter).or_default() += 1;
        }
    }

    /// Moves the counts into batches and sends every unsent batch; a batch
    /// apikeys does not acknowledge is sent again next time, with its id.
    pub async fn flush(&self, client: &ApiKeysClient, quotas: &Quotas) {
        let taken = match self.counts.lock() {
            Ok(mut counts) => std::mem::take(&mut *counts),
            Err(_) => return,
        };
        let mut batches = match self.unsent.lock() {
            Ok(mut unsent) => std::mem::take(&mut *unsent),
            Err(_) => return,
        };
        let mut current: Option<Batch> = None;
        for (counter, n) in taken {
            let batch = current.get_or_insert_with(|| Batch {
                id: format!("gw-{}", uuid::Uuid::new_v4().simple()),
                records: Vec::new(),
                per_developer: HashMap::new(),
            });
            *batch
                .per_developer
                .entry(counter.developer_id.to_string())
                .or_default() += n;
            batch.records.push(pb::UsageRecord {
                key_id: counter.key_id.to_string(),
                method: counter.method.into(),
                count: n,
                window_start: Some(kit_values::timestamp(counter.minute)),
                stage: counter.stage.to_string(),
            });
            if batch.records.len() >= MAX_RECORDS {
                batches.extend(current.take());
            }
        }
        batches.extend(current);
        let mut failed = Vec::new();
        for batch in batches {
            let mut client = client.clone();
            let sent = client
                .record_usage(pb::RecordUsageRequest {
                    batch_id: batch.id.clone(),
                    records: batch.records.clone(),
                })
                .await;
            match sent {
                Ok(answer) => {
                    for q in answer.into_inner().quotas {
                        if let Some(cell) = quotas.get(&q.developer_id) {
                            let flushed = batch.per_developer.get(&q.developer_id).copied().unwrap_or(0);
                            let start = q.period_start.map_or(0, |t| t.seconds * 1_000_000);
                            cell.acknowledged(flushed, q.used, start);
                        }
                    }
                }
                // A batch apikeys refuses as malformed would be refused forever.
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    tracing::error!(batch = %batch.id, error = %status.message(), "apikeys refused a usage batch; dropped");
                }
                Err(status) => {
                    tracing::warn!(batch = %batch.id, code = ?status.code(), error = %status.message(), "usage flush failed; will retry");
                    failed.push(batch);
                }
            }
        }
        if !failed.is_empty()
            && let Ok(mut unsent) = self.unsent.lock()
        {
            unsent.extend(failed);
        }
    }

    /// Whether nothing waits to be flushed.
    pub fn is_empty(&self) -> bool {
        self.counts.lock().map(|c| c.is_empty()).unwrap_or(true)
            && self.unsent.lock().map(|u| u.is_empty()).unwrap_or(true)
    }
}
