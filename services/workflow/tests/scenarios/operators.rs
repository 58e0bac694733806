//! What an operator needs: executions that need one, orphans taken up, outcomes grouped and found.

use super::*;

/// Looks `product` up; the scripted catalog refuses "refused" (a failure
/// nothing planned) and answers "gone" for "gone" (the planned Fail state).
fn look_up(product: &str) -> serde_json::Value {
    json!({
        "StartAt": "Look up",
        "States": {
            "Look up": {"Type": "Task", "Resource": "grpc:ferrymesh.catalog.v1.CatalogService/GetProduct",
                        "Parameters": {"product_id": product}, "Next": "Gone?"},
            "Gone?": {"Type": "Choice", "Choices": [
                {"Variable": "$.product.product_id", "StringEquals": "gone", "Next": "Gone"}],
                "Default": "Done"},
            "Gone": {"Type": "Fail", "Error": "ProductGone", "Cause": "planned"},
            "Done": {"Type": "Succeed"}
        }
    })
}

pub(crate) async fn an_execution_that_failed_where_nothing_planned_it_needs_an_operator(wf: &Workflow) {
    wf.create("unplanned", &look_up("refused")).await.unwrap();
    wf.create("planned", &look_up("gone")).await.unwrap();
    wf.start_execution("unplanned", "att-1", json!({})).await.unwrap();
    wf.start_execution("planned", "att-2", json!({})).await.unwrap();
    let unplanned = wf.finished("att-1").await;
    let planned = wf.finished("att-2").await;
    assert_eq!(unplanned.status, pb::ExecutionStatus::Failed as i32);
    assert_eq!(planned.status, pb::ExecutionStatus::Failed as i32);
    assert!(
        unplanned.attention.contains("Look up") && unplanned.attention.contains("FAILED_PRECONDITION"),
        "{unplanned:?}"
    );
    assert_eq!(
        planned.attention, "",
        "a Fail state the definition planned needs no one"
    );
    let listed = |needs_attention| {
        let mut client = wf.client();
        async move {
            client
                .list_executions(pb::ListExecutionsRequest {
                    needs_attention,
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .executions
                .into_iter()
                .map(|e| e.execution_name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(true).await, vec!["att-1".to_string()]);
    assert_eq!(listed(false).await.len(), 2);

    // Redriven, it no longer waits for anyone (it fails again, and says so again).
    let redriven = wf
        .client()
        .redrive_execution(pb::RedriveExecutionRequest {
            execution_name: "att-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .execution
        .unwrap();
    assert_eq!(redriven.attention, "");
    let again = wf.finished("att-1").await;
    assert!(!again.attention.is_empty());
}

pub(crate) async fn an_execution_committed_but_never_launched_here_is_taken_up(wf: &Workflow) {
    use workflow::store::{Applied, Journal, Write, event, execution};
    // What a StartExecution whose caller gave up at the wrong moment could
    // leave: the execution and its first events written under this
    // replica's name, and no run of it anywhere.
    let definition = json!({
        "StartAt": "Done",
        "States": {"Done": {"Type": "Pass", "Result": {"ok": true}, "End": true}}
    });
    wf.create("orphan", &definition).await.unwrap();
    let db = kit_store::connect_and_migrate::<workflow::migrations::Migrator>(&wf.server.db.url)
        .await
        .unwrap();
    let cursor = json!({"state": "Done", "input": {}, "attempt": 0, "entered": {"Done": 1}});
    let owner = workflow::lease::default_owner(0);
    let row = execution::Model {
        name: "orphan-1".into(),
        state_machine: "orphan".into(),
        version: 1,
        status: "RUNNING".into(),
        input: "{}".into(),
        output: String::new(),
        error: String::new(),
        cause: String::new(),
        start_micros: kit_values::now_micros(),
        stop_micros: 0,
        current_state: "Done".into(),
        redrive_count: 0,
        transitions: 1,
        cursor: cursor.to_string(),
        traceparent: String::new(),
        correlation_id: String::new(),
        owner: owner.clone(),
        epoch: 1,
        attention: String::new(),
    };
    let event = |id: i64, kind: &str| event::Model {
        execution: "orphan-1".into(),
        id,
        kind: kind.into(),
        micros: kit_values::now_micros(),
        state_name: String::new(),
        details: "{}".into(),
        retry_attempt: 0,
        owner: owner.clone(),
        epoch: 1,
    };
    let written = Journal::start(db)
        .write(Write {
            insert: Some(row),
            execution: "orphan-1".into(),
            events: vec![event(1, "ExecutionStarted"), event(2, "PassStateEntered")],
            update: None,
        })
        .await;
    assert_eq!(written, Ok(Applied::Yes));
    // Its own replica finds it not running and takes it up again.
    let ended = wf.finished("orphan-1").await;
    assert_eq!(ended.status, pb::ExecutionStatus::Succeeded as i32, "{ended:?}");
}

pub(crate) async fn executions_are_grouped_and_found_by_name_error_and_state(wf: &Workflow) {
    wf.create("unplanned", &look_up("refused")).await.unwrap();
    wf.create("planned", &look_up("gone")).await.unwrap();
    wf.start_execution("unplanned", "att-1", json!({})).await.unwrap();
    wf.finished("att-1").await;
    // Three planned failures: the summary counts them apart from the one
    // that needs an operator, which comes first.
    for name in ["att-2", "att-2b", "att-2c"] {
        wf.start_execution("planned", name, json!({})).await.unwrap();
        wf.finished(name).await;
    }
    let summary = wf
        .client()
        .summarize_executions(pb::SummarizeExecutionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.total, 4);
    let groups: Vec<_> = summary
        .groups
        .iter()
        .map(|g| {
            (
                g.needs_attention,
                g.error.as_str(),
                g.current_state.as_str(),
                g.count,
            )
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            (true, "FAILED_PRECONDITION", "Look up", 1),
            (false, "ProductGone", "Gone", 3)
        ]
    );
    // Found by the start of a name, by error, by state; '_' is no wildcard.
    let found = |request: pb::ListExecutionsRequest| {
        let mut client = wf.client();
        async move {
            let mut names: Vec<String> = client
                .list_executions(request)
                .await
                .unwrap()
                .into_inner()
                .executions
                .into_iter()
                .map(|e| e.execution_name)
                .collect();
            names.sort();
            names
        }
    };
    let by = |name_prefix: &str, error: &str, current_state: &str| pb::ListExecutionsRequest {
        name_prefix: name_prefix.into(),
        error: error.into(),
        current_state: current_state.into(),
        ..Default::default()
    };
    assert_eq!(found(by("att-2", "", "")).await, ["att-2", "att-2b", "att-2c"]);
    assert_eq!(found(by("att-2b", "", "")).await, ["att-2b"]);
    assert!(found(by("att_", "", "")).await.is_empty());
    assert_eq!(found(by("", "ProductGone", "")).await.len(), 3);
    assert_eq!(found(by("att", "", "Look up")).await, ["att-1"]);
    let refused = wf
        .client()
        .list_executions(by("att 1", "", ""))
        .await
        .unwrap_err();
    kit_testing::assert_status(&refused, tonic::Code::InvalidArgument, "name_prefix");
}
