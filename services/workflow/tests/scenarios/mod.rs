//! What a caller of workflow sees, one scenario per function.

use futures_util::future::join_all;
use kit_testing::assert_status;
use serde_json::{Value, json};
use tonic::Code;
use workflow::pb::ferrymesh::workflow::v1 as pb;

use crate::support::Workflow;

mod durability;
mod operators;
pub(crate) use durability::*;
pub(crate) use operators::*;

const GET_PRODUCT: &str = "grpc:ferrymesh.catalog.v1.CatalogService/GetProduct";

pub(crate) async fn bad_definitions_are_refused_naming_the_state_and_the_problem(wf: &Workflow) {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}),
            r#"state "A": Next "B" is not a state in this machine"#,
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}}),
            r#"state "B": is unreachable"#,
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}}),
            "no state ends the execution",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "grpc:ferrymesh.nope.v1.Nope/Do", "End": true}}}),
            r#"state "A": Resource "grpc:ferrymesh.nope.v1.Nope/Do" names no method"#,
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "grpc:ferrymesh.orders.v2.OrdersService/WatchOrder", "End": true}}}),
            "is a streaming method",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "order.id", "End": true}}}),
            r#"state "A": InputPath path "order.id" must start with `$`"#,
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"x.$": "$.[["}, "End": true}}}),
            r#"state "A": Parameters: "x.$": path "$.[[" is not JSONPath"#,
        ),
        // Found by the fuzzer: the JSONPath parser's time doubles with each nested query.
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$[?$[?$[?$[?$[?@.a]]]]]", "End": true}}}),
            "nests brackets 5 deep; at most 4",
        ),
        // Found by the fuzzer: the JSONPath parser itself panicked on this.
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"x.$": "$['\\u"}, "End": true}}}),
            r#"state "A": Parameters: "x.$": path "$['\\u" is not JSONPath: it ends inside a \u escape"#,
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": GET_PRODUCT, "End": true,
                "Catch": [{"ErrorEquals": ["PaymentDeclined"], "Next": "A"}]}}}),
            r#"state "A": Catch[0].ErrorEquals names "PaymentDeclined", an unknown error"#,
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": GET_PRODUCT, "End": true,
                "Retry": [{"ErrorEquals": ["States.ALL", "UNAVAILABLE"]}]}}}),
            "States.ALL must appear alone",
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"x.$": "States.Nope(1)"}, "End": true}}}),
            r#""States.Nope" is not an intrinsic function"#,
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": "1", "Next": "B"}]}, "B": {"Type": "Succeed"}}}),
            r#"state "A": Choices[0]: NumericEquals needs a number operand"#,
        ),
        (
            json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
                {"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "Y"}}}]}}}),
            r#"state "P/0/X": Next "Y" is not a state"#,
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Nxt": "B", "End": true}}}),
            r#"state "A": "Nxt" is not a field of a Pass state"#,
        ),
    ];
    for (definition, says) in cases {
        let status = wf.create("bad", &definition).await.unwrap_err();
        assert_status(&status, Code::InvalidArgument, says);
    }
    let status = wf
        .client()
        .create_state_machine(pb::CreateStateMachineRequest {
            name: "bad".into(),
            definition: "{not json".into(),
            description: String::new(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "the definition is not JSON");
    let status = wf.create("no spaces please", &json!({})).await.unwrap_err();
    kit_testing::assert_invalid(&status, "name", "must be 1 to 80 letters");
}

pub(crate) async fn versions_are_immutable_and_executions_stay_pinned(wf: &Workflow) {
    let v1 = json!({"StartAt": "Wait", "States": {
        "Wait": {"Type": "Wait", "Seconds": 0.5, "Next": "Done"},
        "Done": {"Type": "Pass", "Result": {"version": 1}, "End": true}}});
    let v2 = json!({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "Result": {"version": 2}, "End": true}}});
    let created = wf.create("versioned", &v1).await.unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(
        wf.create("versioned", &v1).await.unwrap().version,
        1,
        "the same definition again is the same version"
    );
    let status = wf.create("versioned", &v2).await.unwrap_err();
    assert_status(
        &status,
        Code::AlreadyExists,
        "UpdateStateMachine publishes a new version",
    );
    wf.start_execution("versioned", "on-v1", json!({})).await.unwrap();
    let updated = wf
        .client()
        .update_state_machine(pb::UpdateStateMachineRequest {
            name: "versioned".into(),
            definition: v2.to_string(),
            description: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .state_machine
        .unwrap();
    assert_eq!(updated.version, 2);
    let on_v2 = wf.start_execution("versioned", "on-v2", json!({})).await.unwrap();
    assert_eq!(on_v2.state_machine_version, 2);
    let first = wf.finished("on-v1").await;
    assert_eq!(first.state_machine_version, 1);
    assert_eq!(
        first.output, r#"{"version":1}"#,
        "the running execution finished on the version it started on"
    );
    assert_eq!(wf.finished("on-v2").await.output, r#"{"version":2}"#);
    let old = wf
        .client()
        .get_state_machine(pb::GetStateMachineRequest {
            name: "versioned".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .state_machine
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&old.definition).unwrap(),
        v1,
        "version 1 is unchanged"
    );
    let listed = wf
        .client()
        .list_executions(pb::ListExecutionsRequest {
            state_machine_name: "versioned".into(),
            state_machine_version: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .executions;
    assert_eq!(
        listed
            .iter()
            .map(|e| e.execution_name.as_str())
            .collect::<Vec<_>>(),
        ["on-v1"]
    );
    let status = wf.start_execution("missing", "x", json!({})).await.unwrap_err();
    assert_status(&status, Code::NotFound, "state machine `missing` does not exist");
}

pub(crate) async fn the_language_computes_what_step_functions_would(wf: &Workflow) {
    let definition = json!({
        "Comment": "paths, templates, intrinsics, choice, parallel and map",
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "InputPath": "$.order",
                "Parameters": {"id.$": "$.id", "skus.$": "$.lines[*].sku", "label.$": "States.Format('order {} of {}', $.id, $$.Execution.Name)",
                    "count.$": "States.ArrayLength($.lines)", "total.$": "States.MathAdd($.lines[0].qty, $.lines[1].qty)",
                    "raw.$": "States.JsonToString($.lines[0])", "pair.$": "States.Array($.id, 2)"},
                "ResultPath": "$.prepared", "Next": "Route"},
            "Route": {"Type": "Choice", "Choices": [
                {"And": [{"Variable": "$.prepared.total", "NumericGreaterThanEquals": 3}, {"Not": {"Variable": "$.rush", "IsPresent": true}}], "Next": "Fan out"},
                {"Variable": "$.prepared.label", "StringMatches": "order *", "Next": "Never"}],
                "Default": "Never"},
            "Never": {"Type": "Fail", "Error": "Routing", "Cause": "took the wrong branch"},
            "Fan out": {"Type": "Parallel", "ResultPath": "$.parallel", "ResultSelector": {"first.$": "$[0]", "second.$": "$[1].name"},
                "Branches": [
                    {"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "OutputPath": "$.prepared.id", "End": true}}},
                    {"StartAt": "Look", "States": {"Look": {"Type": "Task", "Resource": GET_PRODUCT,
                        "Parameters": {"product_id": "lamp"}, "ResultSelector": {"name.$": "$.product.name"}, "End": true}}}
                ],
                "Next": "Each"},
            "Each": {"Type": "Map", "ItemsPath": "$.prepared.skus", "MaxConcurrency": 2,
                "ItemSelector": {"sku.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
                "ItemProcessor": {"StartAt": "Name", "States": {"Name": {"Type": "Task", "Resource": GET_PRODUCT,
                    "Parameters": {"product_id.$": "$.sku"}, "ResultSelector": {"name.$": "$.product.name"}, "ResultPath": "$.found", "End": true}}},
                "ResultPath": "$.names", "Next": "Shape"},
            "Shape": {"Type": "Pass", "Parameters": {"label.$": "$.prepared.label", "parallel.$": "$.parallel", "names.$": "$.names[*].found.name",
                "indexes.$": "$.names[*].index", "count.$": "$.prepared.count", "raw.$": "States.StringToJson($.prepared.raw)", "pair.$": "$.prepared.pair"},
                "OutputPath": "$", "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    });
    wf.create("language", &definition).await.unwrap();
    let input = json!({"order": {"id": "o-7", "lines": [{"sku": "mug", "qty": 1}, {"sku": "tote", "qty": 2}, {"sku": "lamp", "qty": 1}]}});
    wf.start_execution("language", "lang-1", input).await.unwrap();
    let done = wf.finished("lang-1").await;
    assert_eq!(done.status, pb::ExecutionStatus::Succeeded as i32, "{done:?}");
    let output: Value = serde_json::from_str(&done.output).unwrap();
    assert_eq!(
        output,
        json!({
            "label": "order o-7 of lang-1",
            "parallel": {"first": "o-7", "second": "LAMP"},
            "names": ["MUG", "TOTE", "LAMP"],
            "indexes": [0, 1, 2],
            "count": 3,
            "raw": {"sku": "mug", "qty": 1},
            "pair": ["o-7", 2]
        })
    );
    let history = wf.history("lang-1").await;
    let kinds: Vec<&str> = history.iter().map(|e| e.type_name.as_str()).collect();
    for kind in [
        "ExecutionStarted",
        "PassStateEntered",
        "ChoiceStateEntered",
        "ChoiceStateExited",
        "ParallelStateStarted",
        "ParallelStateSucceeded",
        "MapStateStarted",
        "MapIterationStarted",
        "MapIterationSucceeded",
        "MapStateSucceeded",
        "TaskScheduled",
        "TaskSucceeded",
        "SucceedStateEntered",
        "ExecutionSucceeded",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(
        history.iter().any(|e| e.state_name == "Each/1/Name"),
        "map iterations are named by index"
    );
    assert!(
        history.windows(2).all(|w| w[0].id + 1 == w[1].id),
        "event ids count up from 1"
    );
    // Four task calls, each with its own idempotency id.
    let calls = wf.script.calls.lock().unwrap().clone();
    let ids: std::collections::BTreeSet<String> = calls.iter().map(|c| c.idempotency_id.clone()).collect();
    assert_eq!((calls.len(), ids.len()), (4, 4));
}

pub(crate) async fn retry_and_catch_follow_the_error_names(wf: &Workflow) {
    let definition = json!({"StartAt": "Get", "States": {
        "Get": {"Type": "Task", "Resource": GET_PRODUCT, "TimeoutSeconds": 0.2,
            "Retry": [{"ErrorEquals": ["UNAVAILABLE"], "IntervalSeconds": 0.01, "MaxAttempts": 3, "BackoffRate": 1.5}],
            "Catch": [{"ErrorEquals": ["FAILED_PRECONDITION"], "ResultPath": "$.error", "Next": "Refused"},
                      {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Slow"}],
            "ResultPath": "$.product", "End": true},
        "Refused": {"Type": "Pass", "End": true},
        "Slow": {"Type": "Pass", "End": true}}});
    wf.create("retry", &definition).await.unwrap();
    for (name, product) in [("flaky", "flaky"), ("refused", "refused"), ("slow", "slow")] {
        wf.start_execution("retry", name, json!({"product_id": product}))
            .await
            .unwrap();
    }
    // Retried twice on UNAVAILABLE, then succeeded with the same idempotency id.
    let flaky = wf.finished("flaky").await;
    assert_eq!(flaky.status, pb::ExecutionStatus::Succeeded as i32, "{flaky:?}");
    let history = wf.history("flaky").await;
    let retries: Vec<i32> = history
        .iter()
        .filter(|e| e.type_name == "TaskRetryScheduled")
        .map(|e| e.retry_attempt)
        .collect();
    assert_eq!(retries, [1, 2]);
    assert!(
        history
            .iter()
            .any(|e| e.type_name == "TaskSucceeded" && e.retry_attempt == 2)
    );
    // A business refusal is caught at once, with the error where ResultPath says.
    let refused = wf.finished("refused").await;
    let output: Value = serde_json::from_str(&refused.output).unwrap();
    assert_eq!(
        output["error"],
        json!({"Error": "FAILED_PRECONDITION", "Cause": "no such thing"})
    );
    assert_eq!(refused.current_state, "Refused");
    assert!(
        !wf.history("refused")
            .await
            .iter()
            .any(|e| e.type_name == "TaskRetryScheduled")
    );
    let slow = wf.finished("slow").await;
    assert_eq!(slow.current_state, "Slow", "{slow:?}");

    // States.ALL does not catch States.Runtime: a path that matches nothing fails the execution.
    let runtime = json!({"StartAt": "Get", "States": {
        "Get": {"Type": "Task", "Resource": GET_PRODUCT, "Parameters": {"product_id.$": "$.missing"},
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
        "Caught": {"Type": "Succeed"}}});
    wf.create("runtime", &runtime).await.unwrap();
    wf.start_execution("runtime", "runtime-1", json!({}))
        .await
        .unwrap();
    let failed = wf.finished("runtime-1").await;
    assert_eq!(failed.status, pb::ExecutionStatus::Failed as i32);
    assert_eq!(failed.error, "States.ParameterPathFailure");
    // A Fail state's error is what the execution reports.
    let fail = json!({"StartAt": "No", "States": {"No": {"Type": "Fail", "ErrorPath": "$.why", "Cause": "because"}}});
    wf.create("fail", &fail).await.unwrap();
    wf.start_execution("fail", "fail-1", json!({"why": "Custom.Error"}))
        .await
        .unwrap();
    let failed = wf.finished("fail-1").await;
    assert_eq!(
        (failed.error.as_str(), failed.cause.as_str()),
        ("Custom.Error", "because")
    );
}

pub(crate) async fn start_is_idempotent_by_name_even_when_raced(wf: &Workflow) {
    let definition =
        json!({"StartAt": "Get", "States": {"Get": {"Type": "Task", "Resource": GET_PRODUCT, "End": true}}});
    wf.create("once", &definition).await.unwrap();
    let input = json!({"product_id": "mug"});
    let calls = (0..16).map(|_| wf.start_execution("once", "same-name", input.clone()));
    let started: Vec<pb::Execution> = join_all(calls).await.into_iter().map(Result::unwrap).collect();
    assert!(
        started
            .iter()
            .all(|e| e.execution_name == "same-name" && e.start_time == started[0].start_time)
    );
    wf.finished("same-name").await;
    let calls = wf.script.calls.lock().unwrap().len();
    assert_eq!(calls, 1, "one execution ran, once");
    let status = wf
        .start_execution("once", "same-name", json!({"product_id": "other"}))
        .await
        .unwrap_err();
    assert_status(&status, Code::AlreadyExists, "already exists with another input");
    for (input, says) in [("[1]", "must be a JSON object"), ("{", "is not JSON")] {
        let status = wf
            .client()
            .start_execution(pb::StartExecutionRequest {
                state_machine_name: "once".into(),
                execution_name: "bad-input".into(),
                input: input.into(),
                state_machine_version: 0,
            })
            .await
            .unwrap_err();
        kit_testing::assert_invalid(&status, "input", says);
    }
}

pub(crate) async fn a_stopped_execution_ends_aborted(wf: &Workflow) {
    let definition =
        json!({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 30, "End": true}}});
    wf.create("long", &definition).await.unwrap();
    wf.start_execution("long", "long-1", json!({})).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let stop = |error: &str| {
        let mut client = wf.client();
        let request = pb::StopExecutionRequest {
            execution_name: "long-1".into(),
            error: error.into(),
            cause: "not needed".into(),
        };
        async move {
            client
                .stop_execution(request)
                .await
                .unwrap()
                .into_inner()
                .execution
                .unwrap()
        }
    };
    let stopped = stop("Operator.Stopped").await;
    assert_eq!(stopped.status, pb::ExecutionStatus::Aborted as i32);
    assert_eq!(stopped.error, "Operator.Stopped");
    let again = stop("Other").await;
    assert_eq!(
        (again.status, again.error.as_str()),
        (pb::ExecutionStatus::Aborted as i32, "Operator.Stopped"),
        "stopping again changes nothing"
    );
    let history = wf.history("long-1").await;
    assert_eq!(history.last().unwrap().type_name, "ExecutionAborted");
    // Aborted executions can be redriven; finished ones cannot.
    let status = wf
        .client()
        .redrive_execution(pb::RedriveExecutionRequest {
            execution_name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

pub(crate) async fn history_and_lists_page(wf: &Workflow) {
    let definition = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": true}}});
    wf.create("pages", &definition).await.unwrap();
    for n in 0..5 {
        wf.start_execution("pages", &format!("page-{n}"), json!({}))
            .await
            .unwrap();
    }
    for n in 0..5 {
        wf.finished(&format!("page-{n}")).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = wf
            .client()
            .list_executions(pb::ListExecutionsRequest {
                state_machine_name: "pages".into(),
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.executions.into_iter().map(|e| e.execution_name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        ["page-4", "page-3", "page-2", "page-1", "page-0"],
        "newest first, each once"
    );
    let first = wf
        .client()
        .get_execution_history(pb::GetExecutionHistoryRequest {
            execution_name: "page-0".into(),
            page_size: 3,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.events.len(), 3);
    let rest = wf
        .client()
        .get_execution_history(pb::GetExecutionHistoryRequest {
            execution_name: "page-0".into(),
            page_size: 100,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.events.first().map(|e| e.id), Some(4));
    let status = wf
        .client()
        .get_execution_history(pb::GetExecutionHistoryRequest {
            execution_name: "page-1".into(),
            page_size: 3,
            page_token: first.next_page_token,
        })
        .await
        .unwrap_err();
    kit_testing::assert_invalid(&status, "page_token", "other filters");
    let status = wf
        .client()
        .list_executions(pb::ListExecutionsRequest {
            status: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    kit_testing::assert_invalid(&status, "status", "is not an ExecutionStatus");
    // The engine brings no state machine of its own: the saga is orders'.
    let status = wf
        .client()
        .get_state_machine(pb::GetStateMachineRequest {
            name: "place-order".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}
