//! What survives: a bad journal write, a lost lease, replicas migrating together.

use super::*;

pub(crate) async fn a_bad_journal_write_does_not_hold_back_the_others(wf: &Workflow) {
    use workflow::store::{Applied, Journal, Write, event, execution};
    let db = kit_store::connect_and_migrate::<workflow::migrations::Migrator>(&wf.server.db.url)
        .await
        .unwrap();
    let journal = Journal::start(db);
    let row = |name: &str| execution::Model {
        name: name.into(),
        state_machine: "place-order".into(),
        version: 1,
        status: "SUCCEEDED".into(),
        input: "{}".into(),
        output: String::new(),
        error: String::new(),
        cause: String::new(),
        start_micros: 1,
        stop_micros: 2,
        current_state: String::new(),
        redrive_count: 0,
        transitions: 0,
        cursor: "{}".into(),
        traceparent: String::new(),
        correlation_id: String::new(),
        owner: String::new(),
        epoch: 1,
        attention: String::new(),
    };
    let event = |execution: &str, id: i64| event::Model {
        execution: execution.into(),
        id,
        kind: "ExecutionStarted".into(),
        micros: 1,
        state_name: String::new(),
        details: "{}".into(),
        retry_attempt: 0,
        owner: String::new(),
        epoch: 1,
    };
    let first = journal
        .write(Write {
            insert: Some(row("j-a")),
            execution: "j-a".into(),
            events: vec![event("j-a", 1)],
            update: None,
        })
        .await;
    assert_eq!(first, Ok(Applied::Yes));
    // Event 1 of j-a again breaks the primary key; j-c's write beside it must still land.
    let (bad, good) = tokio::join!(
        journal.write(Write {
            insert: None,
            execution: "j-a".into(),
            events: vec![event("j-a", 1)],
            update: None
        }),
        journal.write(Write {
            insert: Some(row("j-c")),
            execution: "j-c".into(),
            events: vec![event("j-c", 1)],
            update: None
        }),
    );
    assert!(bad.is_err(), "{bad:?}");
    assert_eq!(good, Ok(Applied::Yes));
    assert_eq!(
        wf.server.db.count("history_events where execution = 'j-c'").await,
        1
    );
    // The same name again is not inserted twice.
    let again = journal
        .write(Write {
            insert: Some(row("j-c")),
            execution: "j-c".into(),
            events: vec![event("j-c", 2)],
            update: None,
        })
        .await;
    assert_eq!(again, Ok(Applied::No));
    assert_eq!(
        wf.server.db.count("history_events where execution = 'j-c'").await,
        1
    );
}

pub(crate) async fn a_replica_that_lost_the_lease_records_nothing_and_the_execution_goes_on(wf: &Workflow) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    use workflow::store::{Store, event};
    let definition = json!({
        "StartAt": "Look up",
        "States": {
            "Look up": {"Type": "Task", "Resource": "grpc:ferrymesh.catalog.v1.CatalogService/GetProduct",
                        "Parameters": {"product_id": "held"}, "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    });
    wf.create("leased", &definition).await.unwrap();
    wf.start_execution("leased", "lease-1", json!({})).await.unwrap();
    let db = kit_store::connect_and_migrate::<workflow::migrations::Migrator>(&wf.server.db.url)
        .await
        .unwrap();
    let store = Store::new(db.clone());
    let row = store.execution_fresh("lease-1").await.unwrap().unwrap();
    assert_eq!(row.epoch, 1, "{row:?}");
    let ours = row.owner.clone();
    // While its task is in flight, another replica takes the execution (as
    // if this one had been silent past its lease), then dies at once.
    while wf.script.calls.lock().unwrap().is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let taken = workflow::lease::take(&db, "lease-1", &ours, 1, "elsewhere:1")
        .await
        .unwrap()
        .expect("the lease is taken");
    assert_eq!((taken.owner.as_str(), taken.epoch), ("elsewhere:1", 2));
    // The first replica's answer comes back and cannot be recorded; the
    // dead replica holds nothing alive, so the first takes it back and runs
    // it to the end under a third epoch.
    let ended = wf.finished("lease-1").await;
    assert_eq!(ended.status, pb::ExecutionStatus::Succeeded as i32, "{ended:?}");
    let events = event::Entity::find()
        .filter(event::Column::Execution.eq("lease-1"))
        .order_by_asc(event::Column::Id)
        .all(db.read())
        .await
        .unwrap();
    let epochs: Vec<(i64, &str, &str)> = events
        .iter()
        .map(|e| (e.epoch, e.owner.as_str(), e.kind.as_str()))
        .collect();
    assert!(
        epochs.windows(2).all(|w| w[0].0 <= w[1].0),
        "an event of an older epoch came after a newer one: {epochs:?}"
    );
    assert!(
        epochs
            .iter()
            .all(|(epoch, owner, _)| *epoch != 2 && *owner == ours),
        "{epochs:?}"
    );
    assert!(
        epochs
            .iter()
            .any(|(epoch, _, kind)| *epoch == 3 && *kind == "ExecutionResumed"),
        "{epochs:?}"
    );
    assert!(
        !epochs
            .iter()
            .any(|(epoch, _, kind)| *epoch == 1 && *kind == "TaskSucceeded"),
        "the replica that lost the lease recorded its task's outcome: {epochs:?}"
    );
    // The task was called again by the new holder, with the same idempotency id.
    let calls = wf.script.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].idempotency_id, calls[1].idempotency_id);
    let row = store.execution_fresh("lease-1").await.unwrap().unwrap();
    assert_eq!((row.owner.as_str(), row.epoch), (ours.as_str(), 3));
}

pub(crate) async fn replicas_starting_together_migrate_one_database_once(wf: &Workflow) {
    use workflow::store::Store;
    // A fresh database of the same kind, migrated by four replicas at once.
    let fresh = if wf.server.db.backend() == "postgres" {
        kit_testing::TestDatabase::postgres("wf_migrate").await.unwrap()
    } else {
        kit_testing::TestDatabase::sqlite()
    };
    let url = fresh.url.clone();
    let opened =
        join_all((0..4).map(|_| kit_store::connect_and_migrate::<workflow::migrations::Migrator>(&url)))
            .await;
    for db in opened {
        let db = db.expect("every replica opens the database");
        assert!(Store::new(db).running().await.unwrap().is_empty());
    }
    fresh.cleanup().await;
}
