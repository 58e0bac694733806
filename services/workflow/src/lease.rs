//! Leases: which replica runs which execution, when several share one
//! database.
//!
//! Each replica heartbeats a row of `workflow_replicas` every fifth of the
//! lease. An execution names its owner and a fencing epoch; every journal
//! write of a run checks that epoch in its own transaction
//! ([`crate::store::Fence`]), so a replica that lost an execution (paused,
//! cut off, presumed dead) records nothing more for it. A replica whose
//! heartbeat is older than the lease is dead to the others: the first to
//! scan takes its RUNNING executions at the next epoch and resumes them,
//! each replica taking its share. Times are the database's clock, so the
//! replicas' own clocks do not matter.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement, TransactionTrait,
};

use crate::engine::Engine;
use crate::store::{execution, status};

/// The `workflow_replicas` table: one row per replica, with its heartbeat.
#[allow(unreachable_pub)] // the derive macros make public items
pub mod replica {
    use sea_orm::entity::prelude::*;

    /// A replica of the workflow service.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workflow_replicas")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub owner: String,
        /// Its last heartbeat, on the database's clock.
        pub heartbeat_micros: i64,
        /// When it first heartbeat.
        pub started_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Most executions looked at in one scan.
const SCAN_LIMIT: u64 = 1000;

/// A replica gone this long is forgotten (its executions were taken long ago).
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// This replica's name when none is given: the host, and the port it serves
/// (or its process id when the port is picked at random), so a restarted
/// replica takes its own executions back at once.
pub fn default_owner(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    if port == 0 {
        format!("{host}/pid-{}", std::process::id())
    } else {
        format!("{host}:{port}")
    }
}

/// The database's clock, in microseconds since the epoch.
async fn db_now(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) AS now"
        }
        _ => "SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER) AS now",
    };
    let row = db
        .query_one_raw(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| DbErr::Custom("the database gave no time".into()))?;
    row.try_get::<i64>("", "now")
}

/// Says this replica is alive; the database's time of it.
pub async fn heartbeat(db: &impl ConnectionTrait, owner: &str) -> Result<i64, DbErr> {
    let now = db_now(db).await?;
    replica::Entity::insert(replica::ActiveModel::from(replica::Model {
        owner: owner.to_string(),
        heartbeat_micros: now,
        started_micros: now,
    }))
    .on_conflict(
        OnConflict::column(replica::Column::Owner)
            .update_column(replica::Column::HeartbeatMicros)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(now)
}

/// Replicas whose heartbeat is younger than `lease` at `now`.
pub async fn live_replicas(
    db: &impl ConnectionTrait,
    now: i64,
    lease: Duration,
) -> Result<Vec<String>, DbErr> {
    let since = now.saturating_sub(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
    replica::Entity::find()
        .select_only()
        .column(replica::Column::Owner)
        .filter(replica::Column::HeartbeatMicros.gt(since))
        .order_by_asc(replica::Column::Owner)
        .into_tuple()
        .all(db)
        .await
}

/// RUNNING executions held by `owners` (or by none of `live`, when
/// `outside` is set), as (name, owner, epoch), oldest first.
async fn running_held(
    db: &impl ConnectionTrait,
    owners: &[String],
    outside: bool,
) -> Result<Vec<(String, String, i64)>, DbErr> {
    use execution::Column as C;
    let query = execution::Entity::find()
        .select_only()
        .columns([C::Name, C::Owner, C::Epoch])
        .filter(C::Status.eq(status::RUNNING));
    let query = if outside {
        query.filter(C::Owner.is_not_in(owners.iter().cloned()))
    } else {
        query.filter(C::Owner.is_in(owners.iter().cloned()))
    };
    query
        .order_by_asc(C::StartMicros)
        .limit(SCAN_LIMIT)
        .into_tuple()
        .all(db)
        .await
}

/// Takes `name` from `owner` at `epoch` for `me` at the next epoch; the
/// execution as taken, or None when it moved on meanwhile (stopped, ended,
/// taken by another) or another replica is writing it right now.
pub async fn take(
    db: &kit_store::Db,
    name: &str,
    owner: &str,
    epoch: i64,
    me: &str,
) -> Result<Option<execution::Model>, DbErr> {
    use execution::Column as C;
    let txn = db.write().begin().await?;
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        // A replica cut off inside a transaction holds the row's lock
        // until its server notices; pass it by rather than wait.
        let free: Option<String> = execution::Entity::find_by_id(name.to_string())
            .select_only()
            .column(C::Name)
            .lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            )
            .into_tuple()
            .one(&txn)
            .await?;
        if free.is_none() {
            return Ok(None);
        }
    }
    let taken = execution::Entity::update_many()
        .filter(C::Name.eq(name))
        .filter(C::Owner.eq(owner))
        .filter(C::Epoch.eq(epoch))
        .filter(C::Status.eq(status::RUNNING))
        .col_expr(C::Owner, Expr::value(me.to_string()))
        .col_expr(C::Epoch, Expr::col(C::Epoch).add(1))
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    if !taken {
        return Ok(None);
    }
    let row = execution::Entity::find_by_id(name.to_string()).one(&txn).await?;
    txn.commit().await?;
    Ok(row)
}

/// Takes back, at start-up, every RUNNING execution this replica held
/// before it restarted (and any from before leases existed), and resumes
/// them; how many.
pub async fn resume_own(engine: &Arc<Engine>) -> Result<usize, DbErr> {
    let db = engine.store().db().clone();
    let me = engine.owner().to_string();
    heartbeat(db.write(), &me).await?;
    let mut resumed = 0;
    let held = running_held(db.write(), &[me.clone(), String::new()], false).await?;
    for (name, owner, epoch) in held {
        if let Some(row) = take(&db, &name, &owner, epoch, &me).await? {
            engine.launch(row, true, None);
            resumed += 1;
        }
    }
    Ok(resumed)
}

/// Hands this replica's executions over at shutdown: its runs stop where
/// they are, and its heartbeat is set to never, so the others take them at
/// their next scan rather than after the lease.
pub async fn release(engine: &Engine) {
    engine.leave();
    let stopped = engine.stop_all();
    let released = replica::Entity::update_many()
        .filter(replica::Column::Owner.eq(engine.owner()))
        .col_expr(replica::Column::HeartbeatMicros, Expr::value(0i64))
        .exec(engine.store().db().write())
        .await;
    match released {
        Ok(_) => tracing::info!(
            executions = stopped,
            "executions handed over to the other replicas"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not hand executions over; the others take them after the lease")
        }
    }
}

/// Heartbeats and takes over dead replicas' executions until the process
/// ends.
pub fn spawn(engine: Arc<Engine>, lease: Duration) {
    tokio::spawn(async move {
        let mut keeper = Keeper {
            engine,
            lease,
            last_beat: Instant::now(),
            fenced: false,
            suspects: HashSet::new(),
            scans: 0,
        };
        loop {
            let every = lease / 5;
            // Spread the replicas' scans so they do not race for the same rows.
            let jitter = rand::random_range(0..=every.as_millis() as u64 / 4);
            tokio::time::sleep(every + Duration::from_millis(jitter)).await;
            keeper.round().await;
        }
    });
}

struct Keeper {
    engine: Arc<Engine>,
    lease: Duration,
    last_beat: Instant,
    /// Whether its runs were stopped for a heartbeat gap not yet ended.
    fenced: bool,
    /// This replica's own RUNNING executions found not running here at the
    /// last scan: taken back if still so at the next (one scan apart, so an
    /// execution just started is never mistaken for one left behind).
    suspects: HashSet<String>,
    scans: u64,
}

impl Keeper {
    async fn round(&mut self) {
        if self.engine.is_leaving() {
            return;
        }
        let db = self.engine.store().db().clone();
        let me = self.engine.owner().to_string();
        let sent = Instant::now();
        let beat = heartbeat(db.write(), &me).await;
        if self.last_beat.elapsed() > self.lease && !self.fenced {
            // Others may have taken this replica's executions meanwhile: its
            // runs would be fenced at their next write anyway; stop them now,
            // and take back at the next scans whatever is still ours.
            self.fenced = true;
            let stopped = self.engine.stop_all();
            tracing::warn!(
                executions = stopped,
                silent_for = ?self.last_beat.elapsed(),
                "no heartbeat for longer than the lease: stopped every execution here; those still ours resume at the next scans"
            );
        }
        let now = match beat {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "workflow heartbeat failed");
                return;
            }
        };
        self.last_beat = sent;
        self.fenced = false;
        if let Err(e) = self.scan(&db, &me, now).await {
            tracing::warn!(error = %e, "workflow lease scan failed");
        }
        self.scans += 1;
        if self.scans.is_multiple_of(600) {
            let before = now.saturating_sub(i64::try_from(FORGET_AFTER.as_micros()).unwrap_or(i64::MAX));
            let _ = replica::Entity::delete_many()
                .filter(replica::Column::HeartbeatMicros.lt(before))
                .exec(db.write())
                .await;
        }
    }

    async fn scan(&mut self, db: &kit_store::Db, me: &str, now: i64) -> Result<(), DbErr> {
        let live = live_replicas(db.write(), now, self.lease).await?;
        let mut orphans = running_held(db.write(), &live, true).await?;
        // One still running here (taken from this replica while it was
        // silent) is taken once its run has seen it is fenced and stopped.
        orphans.retain(|(name, _, _)| !self.engine.is_running(name));
        // Each live replica takes its share, so a dead one's load spreads.
        let share = orphans.len().div_ceil(live.len().max(1));
        orphans.shuffle(&mut rand::rng());
        orphans.truncate(share);
        let own = running_held(db.write(), &[me.to_string()], false).await?;
        let mut suspects = HashSet::new();
        for (name, owner, epoch) in own {
            if self.engine.is_running(&name) || self.engine.stalled_recently(&name) {
                continue;
            }
            if self.suspects.contains(&name) {
                orphans.push((name, owner, epoch));
            } else {
                suspects.insert(name);
            }
        }
        self.suspects = suspects;
        for (name, owner, epoch) in orphans {
            if let Some(row) = take(db, &name, &owner, epoch, me).await? {
                tracing::info!(execution = %name, from = %owner, epoch = row.epoch, "execution taken over");
                self.engine.launch(row, true, None);
            }
        }
        Ok(())
    }
}
