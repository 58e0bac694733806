//! Finding executions: ListExecutions' filters and pages, and
//! SummarizeExecutions' groups (status, error, state, needs an operator),
//! which tell an operator the ordinary outcomes from the one to repair.

use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tonic::Status;

use crate::api::{WorkflowError, check_name, execution_to_pb, status_to_pb};
use crate::pb::ferrymesh::workflow::v1 as pb;
use crate::store::{Store, execution, status};
use kit_store::paging::PageRequest;
use kit_values::{Violations, timestamp};

/// What executions are listed or counted.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// The state machine.
    pub machine: Option<String>,
    /// Its version (with `machine`).
    pub version: Option<i32>,
    /// The status, as stored.
    pub status: Option<&'static str>,
    /// Only those that need an operator.
    pub attention: bool,
    /// Names that start so.
    pub name_prefix: Option<String>,
    /// The error they failed with.
    pub error: Option<String>,
    /// The top-level state they are at.
    pub current_state: Option<String>,
}

impl Filter {
    fn condition(&self) -> Condition {
        use execution::Column as C;
        let mut all = Condition::all();
        if self.attention {
            all = all.add(C::Attention.ne(""));
        }
        if let Some(m) = &self.machine {
            all = all.add(C::StateMachine.eq(m.as_str()));
        }
        if let Some(v) = self.version {
            all = all.add(C::Version.eq(v));
        }
        if let Some(s) = self.status {
            all = all.add(C::Status.eq(s));
        }
        if let Some(prefix) = &self.name_prefix {
            // '_' is a wildcard of LIKE and may be in a name.
            let pattern = format!(
                "{}%",
                prefix
                    .replace('\\', "\\\\")
                    .replace('_', "\\_")
                    .replace('%', "\\%")
            );
            all = all.add(C::Name.like(LikeExpr::new(pattern).escape('\\')));
        }
        if let Some(e) = &self.error {
            all = all.add(C::Error.eq(e.as_str()));
        }
        if let Some(s) = &self.current_state {
            all = all.add(C::CurrentState.eq(s.as_str()));
        }
        all
    }
}

/// One group of [`Store::summarize`]: status, error, state, attention, count, newest start.
pub type Group = (String, String, String, i32, i64, i64);

impl Store {
    /// Executions newest first, filtered, after the key `(start_micros, name)`.
    pub async fn list_executions(
        &self,
        filter: &Filter,
        after: Option<(i64, String)>,
        limit: u64,
    ) -> Result<Vec<execution::Model>, DbErr> {
        use execution::Column as C;
        let mut query = execution::Entity::find().filter(filter.condition());
        if let Some((micros, name)) = after {
            query = query.filter(
                Condition::any().add(C::StartMicros.lt(micros)).add(
                    Condition::all()
                        .add(C::StartMicros.eq(micros))
                        .add(C::Name.lt(name)),
                ),
            );
        }
        query
            .order_by_desc(C::StartMicros)
            .order_by_desc(C::Name)
            .limit(limit)
            .all(self.db().read())
            .await
    }

    /// Executions counted by status, error, current state and whether
    /// they need an operator.
    pub async fn summarize(&self, filter: &Filter) -> Result<Vec<Group>, DbErr> {
        use execution::Column as C;
        let needs: sea_orm::sea_query::SimpleExpr =
            Expr::case(Expr::col(C::Attention).eq(""), 0).finally(1).into();
        execution::Entity::find()
            .filter(filter.condition())
            .select_only()
            .column(C::Status)
            .column(C::Error)
            .column(C::CurrentState)
            .column_as(needs, "needs")
            .column_as(Expr::col(C::Name).count(), "n")
            .column_as(Expr::col(C::StartMicros).max(), "latest")
            .group_by(C::Status)
            .group_by(C::Error)
            .group_by(C::CurrentState)
            // By its alias: PostgreSQL sees the CASE's bound values in the
            // select list and in GROUP BY as different expressions.
            .group_by(Expr::cust("needs"))
            .into_tuple::<Group>()
            .all(self.db().read())
            .await
    }
}

fn status_filter(value: i32, v: &mut Violations) -> Option<&'static str> {
    match pb::ExecutionStatus::try_from(value) {
        Ok(pb::ExecutionStatus::Unspecified) => None,
        Ok(pb::ExecutionStatus::Running) => Some(status::RUNNING),
        Ok(pb::ExecutionStatus::Succeeded) => Some(status::SUCCEEDED),
        Ok(pb::ExecutionStatus::Failed) => Some(status::FAILED),
        Ok(pb::ExecutionStatus::TimedOut) => Some(status::TIMED_OUT),
        Ok(pb::ExecutionStatus::Aborted) => Some(status::ABORTED),
        Err(_) => {
            v.add("status", format!("{value} is not an ExecutionStatus"));
            None
        }
    }
}

/// A free-text filter: at most 200 characters, no control characters.
fn text(field: &str, value: &str, v: &mut Violations) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.chars().count() > 200 || value.chars().any(char::is_control) {
        v.add(
            field,
            "must be at most 200 characters, without control characters",
        );
        return None;
    }
    Some(value.to_string())
}

/// ListExecutions.
pub async fn list(store: &Store, r: pb::ListExecutionsRequest) -> Result<pb::ListExecutionsResponse, Status> {
    let mut v = Violations::new();
    if !r.state_machine_name.is_empty() {
        check_name("state_machine_name", &r.state_machine_name, &mut v);
    }
    let version = match r.state_machine_version {
        0 => None,
        n if n < 0 => {
            v.add("state_machine_version", "must be 0 (any) or a version number");
            None
        }
        _ if r.state_machine_name.is_empty() => {
            v.add(
                "state_machine_version",
                "needs state_machine_name: versions belong to a state machine",
            );
            None
        }
        n => Some(n),
    };
    if !r.name_prefix.is_empty()
        && (r.name_prefix.len() > 80
            || !r
                .name_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        v.add(
            "name_prefix",
            "must be at most 80 letters, digits, '-' or '_' (the start of an execution name or an order id)",
        );
    }
    let filter = Filter {
        machine: (!r.state_machine_name.is_empty()).then(|| r.state_machine_name.clone()),
        version,
        status: status_filter(r.status, &mut v),
        attention: r.needs_attention,
        name_prefix: (!r.name_prefix.is_empty()).then(|| r.name_prefix.clone()),
        error: text("error", &r.error, &mut v),
        current_state: text("current_state", &r.current_state, &mut v),
    };
    // A token is good only for the filter it was issued under.
    let fingerprint = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        r.state_machine_name,
        r.state_machine_version,
        r.status,
        r.needs_attention,
        r.name_prefix,
        r.error,
        r.current_state
    );
    let page = PageRequest::parse(r.page_size, &r.page_token, &fingerprint, &mut v);
    v.into_result(()).map_err(WorkflowError::from)?;
    let Some(page) = page else {
        return Err(Status::internal("page request missing"));
    };
    let after = match &page.after {
        None => None,
        Some(key) => {
            let parsed = key
                .split_once(':')
                .and_then(|(micros, name)| micros.parse::<i64>().ok().map(|m| (m, name.to_string())));
            if parsed.is_none() {
                let mut v = Violations::new();
                v.add(
                    "page_token",
                    "is not a token this service issued: pass back next_page_token unchanged",
                );
                return Err(WorkflowError::from(v).into());
            }
            parsed
        }
    };
    let mut rows = store
        .list_executions(&filter, after, u64::from(page.size) + 1)
        .await
        .map_err(WorkflowError::from)?;
    let next = page.finish(&mut rows, |r| format!("{}:{}", r.start_micros, r.name));
    Ok(pb::ListExecutionsResponse {
        executions: rows.into_iter().map(execution_to_pb).collect(),
        next_page_token: next,
    })
}

/// SummarizeExecutions.
pub async fn summarize(
    store: &Store,
    r: pb::SummarizeExecutionsRequest,
) -> Result<pb::SummarizeExecutionsResponse, Status> {
    let mut v = Violations::new();
    if !r.state_machine_name.is_empty() {
        check_name("state_machine_name", &r.state_machine_name, &mut v);
    }
    v.into_result(()).map_err(WorkflowError::from)?;
    let filter = Filter {
        machine: (!r.state_machine_name.is_empty()).then(|| r.state_machine_name.clone()),
        ..Filter::default()
    };
    let rows = store.summarize(&filter).await.map_err(WorkflowError::from)?;
    let total = rows.iter().map(|g| g.4).sum();
    let mut groups: Vec<pb::ExecutionGroup> = rows
        .into_iter()
        .map(
            |(status, error, current_state, needs, count, latest)| pb::ExecutionGroup {
                status: status_to_pb(&status) as i32,
                error,
                current_state,
                needs_attention: needs != 0,
                count,
                latest_start_time: Some(timestamp(latest)),
            },
        )
        .collect();
    groups.sort_by(|a, b| {
        b.needs_attention
            .cmp(&a.needs_attention)
            .then(b.count.cmp(&a.count))
            .then(a.current_state.cmp(&b.current_state))
    });
    Ok(pb::SummarizeExecutionsResponse { groups, total })
}
