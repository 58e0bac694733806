//! The workflow tables (sea-orm), on SQLite and PostgreSQL, and the journal:
//! one writer that commits the transitions of every running execution in
//! shared transactions (group commit), so each transition is durable before
//! it takes effect without one commit per transition.

use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tokio::sync::{mpsc, oneshot};

use kit_store::Db;

/// The `state_machines` table: one row per version.
#[allow(unreachable_pub)] // the derive macros make public items
pub mod machine {
    use sea_orm::entity::prelude::*;

    /// A version of a state machine.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "state_machines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        pub definition: String,
        pub description: String,
        pub create_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `executions` table.
#[allow(unreachable_pub)]
pub mod execution {
    use sea_orm::entity::prelude::*;

    /// An execution.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "executions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub state_machine: String,
        pub version: i32,
        pub status: String,
        pub input: String,
        pub output: String,
        pub error: String,
        pub cause: String,
        pub start_micros: i64,
        pub stop_micros: i64,
        pub current_state: String,
        pub redrive_count: i32,
        pub transitions: i64,
        /// Where to resume: JSON of [`crate::engine::Cursor`].
        pub cursor: String,
        pub traceparent: String,
        pub correlation_id: String,
        /// The replica that holds the execution's lease.
        pub owner: String,
        /// The fencing epoch: one more each time the execution changes hands.
        pub epoch: i64,
        /// Why it needs an operator; empty when it does not.
        pub attention: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `history_events` table.
#[allow(unreachable_pub)]
pub mod event {
    use sea_orm::entity::prelude::*;

    /// One history event.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "history_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub execution: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        /// The Step Functions event type, e.g. `TaskStateEntered`.
        pub kind: String,
        pub micros: i64,
        pub state_name: String,
        pub details: String,
        pub retry_attempt: i32,
        /// The replica that wrote it.
        pub owner: String,
        /// The epoch it was written under.
        pub epoch: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An execution's status as stored.
pub mod status {
    /// Running.
    pub const RUNNING: &str = "RUNNING";
    /// Succeeded.
    pub const SUCCEEDED: &str = "SUCCEEDED";
    /// Failed.
    pub const FAILED: &str = "FAILED";
    /// Timed out.
    pub const TIMED_OUT: &str = "TIMED_OUT";
    /// Aborted.
    pub const ABORTED: &str = "ABORTED";
}

/// What a transition changes in an execution's row.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// A new status (only a RUNNING execution changes, unless `redrive`).
    pub status: Option<&'static str>,
    /// Where to resume.
    pub cursor: Option<String>,
    /// The top-level state now.
    pub current_state: Option<String>,
    /// Output, error and cause, when it ends.
    pub output: Option<String>,
    /// The error name.
    pub error: Option<String>,
    /// The cause.
    pub cause: Option<String>,
    /// When it ended.
    pub stop_micros: Option<i64>,
    /// Why it now needs an operator.
    pub attention: Option<String>,
    /// How many more transitions it made.
    pub transitions: i64,
    /// A redrive: applies to an ended execution and counts one more redrive.
    pub redrive: bool,
    /// Whose write it is; none only where no runner can race it (tests).
    pub fence: Option<Fence>,
}

/// How a write stands to the execution's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// A runner's write: applies only while the execution is still at this
    /// epoch, so a replica that lost the lease records nothing.
    Holds(i64),
    /// An operator's write (stop, redrive): takes the execution for this
    /// replica at the next epoch, fencing out whoever ran it; its events are
    /// numbered after the last one, in the same transaction.
    Takes(String),
}

/// One write to the journal.
#[derive(Debug, Default)]
pub struct Write {
    /// A new execution to insert (skipped if the name is taken).
    pub insert: Option<execution::Model>,
    /// The execution the update applies to.
    pub execution: String,
    /// Events to append.
    pub events: Vec<event::Model>,
    /// The row change.
    pub update: Option<Update>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written.
    Yes,
    /// The insert found the name taken, or the update found the execution
    /// no longer in the status it expected (stopped meanwhile): nothing written.
    No,
}

struct Job {
    write: Write,
    done: oneshot::Sender<Result<Applied, String>>,
}

/// The group-commit writer.
#[derive(Debug, Clone)]
pub struct Journal {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("execution", &self.write.execution)
            .finish()
    }
}

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 512;

impl Journal {
    /// Starts the writer over `db`.
    pub fn start(db: Db) -> Journal {
        let (jobs, mut rx) = mpsc::channel::<Job>(4096);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while let Some(first) = rx.recv().await {
                group.push(first);
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                match commit(&db, &group).await {
                    Ok(applied) => {
                        for (job, applied) in group.drain(..).zip(applied) {
                            let _ = job.done.send(Ok(applied));
                        }
                    }
                    Err(e) => {
                        // One bad write must not hold the others back: try each
                        // alone, retrying while the database itself is away.
                        tracing::warn!(error = %e, writes = group.len(), "group commit failed; committing one by one");
                        for job in group.drain(..) {
                            let result = commit_alone(&db, &job).await;
                            let _ = job.done.send(result);
                        }
                    }
                }
            }
        });
        Journal { jobs }
    }

    /// Commits `write` with whatever else is waiting; returns once durable.
    pub async fn write(&self, write: Write) -> Result<Applied, String> {
        let (done, rx) = oneshot::channel();
        self.jobs
            .send(Job { write, done })
            .await
            .map_err(|_| "the journal has stopped".to_string())?;
        rx.await.map_err(|_| "the journal has stopped".to_string())?
    }
}

/// Commits one write; retries a failure a few times (a database that is
/// away), then reports it to the writer, whose execution stops here and
/// resumes at the next start.
async fn commit_alone(db: &Db, job: &Job) -> Result<Applied, String> {
    let mut delays = kit::backoff::Doubling::new(Duration::from_millis(50), Duration::from_secs(2));
    for attempt in 1..=8 {
        match commit(db, std::slice::from_ref(job)).await {
            Ok(applied) => return Ok(applied.first().copied().unwrap_or(Applied::No)),
            Err(e) if attempt == 8 => {
                tracing::error!(execution = %job.write.execution, error = %e, "journal write failed");
                return Err(e.to_string());
            }
            Err(_) => tokio::time::sleep(delays.next_delay()).await,
        }
    }
    Err("journal write failed".into())
}

async fn commit(db: &Db, group: &[Job]) -> Result<Vec<Applied>, DbErr> {
    let txn = db.write().begin().await?;
    let mut applied = Vec::with_capacity(group.len());
    let mut events = Vec::new();
    for job in group {
        let write = &job.write;
        let mut ok = true;
        if let Some(row) = &write.insert {
            let model: execution::ActiveModel = row.clone().into();
            let inserted = execution::Entity::insert(model)
                .on_conflict(
                    OnConflict::column(execution::Column::Name)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
            ok = inserted == 1;
        }
        if ok && let Some(update) = &write.update {
            ok = apply(&txn, &write.execution, update).await?;
            if ok && matches!(update.fence, Some(Fence::Takes(_))) {
                // Number them after every event committed or queued before,
                // under the row lock the update took.
                insert_events(&txn, std::mem::take(&mut events)).await?;
                events.extend(renumbered(&txn, &write.execution, &write.events).await?);
                applied.push(Applied::Yes);
                continue;
            }
        }
        if ok {
            events.extend(write.events.iter().cloned().map(event::ActiveModel::from));
        }
        applied.push(if ok { Applied::Yes } else { Applied::No });
    }
    insert_events(&txn, events).await?;
    txn.commit().await?;
    Ok(applied)
}

async fn insert_events(txn: &impl ConnectionTrait, mut events: Vec<event::ActiveModel>) -> Result<(), DbErr> {
    // SQLite takes at most 32766 bound values a statement: 9 columns, 3000 rows.
    while !events.is_empty() {
        let rest = events.split_off(events.len().min(3000));
        let chunk = std::mem::replace(&mut events, rest);
        event::Entity::insert_many(chunk)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// `events` numbered after the execution's last one and stamped with the
/// owner and epoch it has now.
async fn renumbered(
    txn: &impl ConnectionTrait,
    name: &str,
    events: &[event::Model],
) -> Result<Vec<event::ActiveModel>, DbErr> {
    let last: Option<Option<i64>> = event::Entity::find()
        .select_only()
        .column_as(event::Column::Id.max(), "max")
        .filter(event::Column::Execution.eq(name))
        .into_tuple()
        .one(txn)
        .await?;
    let holder: Option<(String, i64)> = execution::Entity::find_by_id(name.to_string())
        .select_only()
        .column(execution::Column::Owner)
        .column(execution::Column::Epoch)
        .into_tuple()
        .one(txn)
        .await?;
    let (owner, epoch) = holder.unwrap_or_default();
    let mut id = last.flatten().unwrap_or(0);
    Ok(events
        .iter()
        .map(|e| {
            id += 1;
            event::ActiveModel::from(event::Model {
                id,
                owner: owner.clone(),
                epoch,
                ..e.clone()
            })
        })
        .collect())
}

async fn apply(txn: &impl ConnectionTrait, name: &str, update: &Update) -> Result<bool, DbErr> {
    use execution::Column as C;
    let mut query = execution::Entity::update_many().filter(C::Name.eq(name));
    query = if update.redrive {
        query
            .filter(C::Status.is_in([status::FAILED, status::TIMED_OUT, status::ABORTED]))
            .col_expr(C::RedriveCount, Expr::col(C::RedriveCount).add(1))
            .col_expr(C::StopMicros, Expr::value(0i64))
            .col_expr(C::Error, Expr::value(""))
            .col_expr(C::Cause, Expr::value(""))
            .col_expr(C::Attention, Expr::value(""))
    } else {
        query.filter(C::Status.eq(status::RUNNING))
    };
    query = match &update.fence {
        Some(Fence::Holds(epoch)) => query.filter(C::Epoch.eq(*epoch)),
        Some(Fence::Takes(owner)) => query
            .col_expr(C::Owner, Expr::value(owner.clone()))
            .col_expr(C::Epoch, Expr::col(C::Epoch).add(1)),
        None => query,
    };
    if let Some(s) = update.status {
        query = query.col_expr(C::Status, Expr::value(s));
    }
    if let Some(v) = &update.cursor {
        query = query.col_expr(C::Cursor, Expr::value(v.clone()));
    }
    if let Some(v) = &update.current_state {
        query = query.col_expr(C::CurrentState, Expr::value(v.clone()));
    }
    if let Some(v) = &update.output {
        query = query.col_expr(C::Output, Expr::value(v.clone()));
    }
    if let Some(v) = &update.error {
        query = query.col_expr(C::Error, Expr::value(v.clone()));
    }
    if let Some(v) = &update.cause {
        query = query.col_expr(C::Cause, Expr::value(v.clone()));
    }
    if let Some(v) = update.stop_micros {
        query = query.col_expr(C::StopMicros, Expr::value(v));
    }
    if let Some(v) = &update.attention {
        query = query.col_expr(C::Attention, Expr::value(v.clone()));
    }
    // Always set: it also keeps the statement's SET list non-empty.
    query = query.col_expr(C::Transitions, Expr::col(C::Transitions).add(update.transitions));
    Ok(query.exec(txn).await?.rows_affected == 1)
}

/// Reads of the workflow tables.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over a migrated database.
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A state machine at a version, or its latest (`version` 0).
    pub async fn machine(&self, name: &str, version: i32) -> Result<Option<machine::Model>, DbErr> {
        let mut query = machine::Entity::find().filter(machine::Column::Name.eq(name));
        if version > 0 {
            query = query.filter(machine::Column::Version.eq(version));
        }
        query
            .order_by_desc(machine::Column::Version)
            .one(self.db.read())
            .await
    }

    /// Inserts a version unless (name, version) is taken; whether it was inserted.
    pub async fn insert_machine(&self, row: machine::Model) -> Result<bool, DbErr> {
        let model: machine::ActiveModel = row.into();
        let inserted = machine::Entity::insert(model)
            .on_conflict(
                OnConflict::columns([machine::Column::Name, machine::Column::Version])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(self.db.write())
            .await?;
        Ok(inserted == 1)
    }

    /// The latest version of each state machine, by name, after `after`.
    pub async fn list_machines(&self, after: Option<&str>, limit: u64) -> Result<Vec<machine::Model>, DbErr> {
        let mut query = machine::Entity::find()
            .order_by_asc(machine::Column::Name)
            .order_by_desc(machine::Column::Version);
        if let Some(after) = after {
            query = query.filter(machine::Column::Name.gt(after));
        }
        // Versions of one name are adjacent; keep the first (latest) of each.
        let rows = query.all(self.db.read()).await?;
        let mut out: Vec<machine::Model> = Vec::new();
        for row in rows {
            if out.last().is_some_and(|l| l.name == row.name) {
                continue;
            }
            out.push(row);
            if out.len() as u64 > limit {
                break;
            }
        }
        Ok(out)
    }

    /// An execution by name.
    pub async fn execution(&self, name: &str) -> Result<Option<execution::Model>, DbErr> {
        execution::Entity::find_by_id(name.to_string())
            .one(self.db.read())
            .await
    }

    /// The same, read from the writer (just after a write, on SQLite's separate readers).
    pub async fn execution_fresh(&self, name: &str) -> Result<Option<execution::Model>, DbErr> {
        execution::Entity::find_by_id(name.to_string())
            .one(self.db.write())
            .await
    }

    /// Names of RUNNING executions, to resume at start-up.
    pub async fn running(&self) -> Result<Vec<String>, DbErr> {
        use execution::Column as C;
        execution::Entity::find()
            .select_only()
            .column(C::Name)
            .filter(C::Status.eq(status::RUNNING))
            .order_by_asc(C::StartMicros)
            .into_tuple()
            .all(self.db.write())
            .await
    }

    /// Events of an execution with ids after `after`, oldest first.
    pub async fn events(&self, execution: &str, after: i64, limit: u64) -> Result<Vec<event::Model>, DbErr> {
        event::Entity::find()
            .filter(event::Column::Execution.eq(execution))
            .filter(event::Column::Id.gt(after))
            .order_by_asc(event::Column::Id)
            .limit(limit)
            .all(self.db.read())
            .await
    }

    /// The highest event id of an execution (0 when none), from the writer.
    pub async fn last_event_id(&self, execution: &str) -> Result<i64, DbErr> {
        let max: Option<Option<i64>> = event::Entity::find()
            .select_only()
            .column_as(event::Column::Id.max(), "max")
            .filter(event::Column::Execution.eq(execution))
            .into_tuple()
            .one(self.db.write())
            .await?;
        Ok(max.flatten().unwrap_or(0))
    }
}
