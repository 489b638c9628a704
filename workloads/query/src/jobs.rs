//! Analyses as jobs (`/api/v1/projects/{id}/query-jobs`): an analysis that takes long runs in the
//! background with progress, can be cancelled, and its result is kept for the next identical
//! request (`schemas/postgres/0010_query_jobs.sql` holds the jobs).
//!
//! - `POST` answers `202` with the job (`queued`), or `200` with a result computed within the
//!   cache TTL, or `202` with the identical job already running (a dashboard left and reopened,
//!   two people opening one board).
//! - The replica that accepted the job runs it: at most `workers` at once, `max_queued` more
//!   waiting; every statement carries the job's id in ClickHouse's `log_comment` (`job`), so its progress
//!   (`read_rows` of `total_rows_approx`) is read from `system.processes`, and a cancel kills its
//!   statements (`KILL QUERY … ASYNC`, and the closed connection).
//! - Any replica answers `GET` and `DELETE` (cancel): the state is in PostgreSQL, the runner
//!   writes progress and a heartbeat twice a second and reads the cancel flag back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use cairn_common::http::ApiError;
use cairn_postgres::api_error as db_error;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::engine::Engine;
use crate::funnels::FunnelsRequest;
use crate::retention::RetentionRequest;
use crate::trends::TrendsRequest;

/// How often a running job writes its progress and heartbeat (and reads its cancel flag).
const HEARTBEAT: Duration = Duration::from_millis(500);
/// A queued or running job whose heartbeat is older than this lost its replica.
const STALE_SECS: i64 = 30;
/// Ended jobs (and cached results) are deleted after this long.
const KEEP_HOURS: i64 = 24;
/// Ended jobs a project keeps at most (the latest).
const KEEP_PER_PROJECT: i64 = 1_000;
/// How long a progress read or a heartbeat may take before the runner goes on without it.
const SIDE_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How far ahead of a change to the events (through Kafka and the consumer) the project's
/// results stop being reused: a job started before the consumer applied it read the old data.
pub const CHANGE_GRACE: Duration = Duration::from_secs(120);

/// What a job may do: from `CAIRN_QUERY_JOB_*` and `CAIRN_QUERY_CACHE_TTL_SECONDS`.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// `CAIRN_QUERY_JOB_TIMEOUT_MS`: a job's analysis is cancelled after this long.
    pub timeout: Duration,
    /// `CAIRN_QUERY_JOB_WORKERS`: jobs one replica runs at once.
    pub workers: usize,
    /// `CAIRN_QUERY_JOB_MAX_QUEUED`: jobs waiting on one replica; 429 beyond.
    pub max_queued: usize,
    /// `CAIRN_QUERY_JOB_MAX_PER_CALLER`: queued or running jobs one user may have; 429 beyond.
    pub max_per_caller: i64,
    /// `CAIRN_QUERY_CACHE_TTL_SECONDS`: how long a result answers identical requests (0: never).
    pub cache_ttl: Duration,
}

/// The analyses a job can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Trends,
    Funnels,
    Retention,
    Stickiness,
    Lifecycle,
    Paths,
    Sessions,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Trends => "trends",
            Kind::Funnels => "funnels",
            Kind::Retention => "retention",
            Kind::Stickiness => "stickiness",
            Kind::Lifecycle => "lifecycle",
            Kind::Paths => "paths",
            Kind::Sessions => "sessions",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "trends" => Some(Kind::Trends),
            "funnels" => Some(Kind::Funnels),
            "retention" => Some(Kind::Retention),
            "stickiness" => Some(Kind::Stickiness),
            "lifecycle" => Some(Kind::Lifecycle),
            "paths" => Some(Kind::Paths),
            "sessions" => Some(Kind::Sessions),
            _ => None,
        }
    }
}

/// `POST …/query-jobs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobInput {
    /// `trends`, `funnels`, `retention`, `stickiness`, `lifecycle`, `paths` or `sessions`.
    pub kind: String,
    /// The analysis' request body, as its synchronous route takes it.
    pub query: Value,
    /// Compute again even if a recent result exists.
    #[serde(default)]
    pub refresh: bool,
}

/// A request parsed as its analysis takes it.
#[derive(Debug, Clone)]
pub enum Analysis {
    Trends(TrendsRequest),
    Funnels(FunnelsRequest),
    Retention(RetentionRequest),
    Stickiness(crate::stickiness::StickinessRequest),
    Lifecycle(crate::lifecycle::LifecycleRequest),
    Paths(crate::paths::PathsRequest),
    Sessions(crate::sessions::SessionsRequest),
}

impl From<crate::insights::InsightQuery> for Analysis {
    fn from(q: crate::insights::InsightQuery) -> Self {
        use crate::insights::InsightQuery as Q;
        match q {
            Q::Trends(r) => Analysis::Trends(r),
            Q::Funnels(r) => Analysis::Funnels(r),
            Q::Retention(r) => Analysis::Retention(r),
            Q::Stickiness(r) => Analysis::Stickiness(r),
            Q::Lifecycle(r) => Analysis::Lifecycle(r),
            Q::Paths(r) => Analysis::Paths(r),
            Q::Sessions(r) => Analysis::Sessions(r),
        }
    }
}

impl Analysis {
    /// Parses `query` as `kind`'s request: 400 naming the field, as the synchronous routes do.
    pub fn parse(kind: Kind, query: Value) -> Result<Self, ApiError> {
        fn typed<T: serde::de::DeserializeOwned>(query: Value) -> Result<T, ApiError> {
            serde_json::from_value(query).map_err(|e| ApiError::invalid("query", e.to_string()))
        }
        Ok(match kind {
            Kind::Trends => Analysis::Trends(typed(query)?),
            Kind::Funnels => Analysis::Funnels(typed(query)?),
            Kind::Retention => Analysis::Retention(typed(query)?),
            Kind::Stickiness => Analysis::Stickiness(typed(query)?),
            Kind::Lifecycle => Analysis::Lifecycle(typed(query)?),
            Kind::Paths => Analysis::Paths(typed(query)?),
            Kind::Sessions => Analysis::Sessions(typed(query)?),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Analysis::Trends(_) => Kind::Trends,
            Analysis::Funnels(_) => Kind::Funnels,
            Analysis::Retention(_) => Kind::Retention,
            Analysis::Stickiness(_) => Kind::Stickiness,
            Analysis::Lifecycle(_) => Kind::Lifecycle,
            Analysis::Paths(_) => Kind::Paths,
            Analysis::Sessions(_) => Kind::Sessions,
        }
    }

    /// The request as parsed (fields in a fixed order, defaults filled in): what is stored.
    pub fn canonical(&self) -> Result<Value, ApiError> {
        match self {
            Analysis::Trends(r) => serde_json::to_value(r),
            Analysis::Funnels(r) => serde_json::to_value(r),
            Analysis::Retention(r) => serde_json::to_value(r),
            Analysis::Stickiness(r) => serde_json::to_value(r),
            Analysis::Lifecycle(r) => serde_json::to_value(r),
            Analysis::Paths(r) => serde_json::to_value(r),
            Analysis::Sessions(r) => serde_json::to_value(r),
        }
        .map_err(|e| ApiError::internal(format!("a parsed request does not serialise: {e}")))
    }

    /// What identifies identical requests: SHA-256 of the kind and the canonical request.
    pub fn key(&self) -> Result<String, ApiError> {
        let text = serde_json::to_string(&self.canonical()?)
            .map_err(|e| ApiError::internal(format!("a parsed request does not serialise: {e}")))?;
        let mut h = sha2::Sha256::new();
        h.update(self.kind().as_str().as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        Ok(hex::encode(h.finalize()))
    }

    /// Runs the analysis as its synchronous route does (cohorts resolved, then the statements).
    pub async fn run(self, engine: &Engine, pg: &PgPool, project_id: u64, now: Timestamp) -> Result<Value, ApiError> {
        fn value<T: Serialize>(r: T) -> Result<Value, ApiError> {
            serde_json::to_value(r).map_err(|e| ApiError::internal(format!("a result does not serialise: {e}")))
        }
        match self {
            Analysis::Trends(mut req) => {
                crate::cohorts::resolve(pg, project_id, &mut req).await?;
                value(crate::trends::run(engine, project_id, &req, now).await?)
            }
            Analysis::Funnels(mut req) => {
                crate::cohorts::resolve(pg, project_id, &mut req).await?;
                value(crate::funnels::run(engine, project_id, &req, now).await?)
            }
            Analysis::Retention(mut req) => {
                crate::cohorts::resolve(pg, project_id, &mut req).await?;
                value(crate::retention::run(engine, project_id, &req, now).await?)
            }
            Analysis::Stickiness(mut req) => {
                crate::cohorts::resolve(pg, project_id, &mut req).await?;
                value(crate::stickiness::run(engine, project_id, &req, now).await?)
            }
            Analysis::Lifecycle(mut req) => {
                crate::cohorts::resolve(pg, project_id, &mut req).await?;
                value(crate::lifecycle::run(engine, project_id, &req, now).await?)
            }
            Analysis::Paths(mut req) => {
                crate::cohorts::resolve(pg, project_id, &mut req).await?;
                value(crate::paths::run(engine, project_id, &req, now).await?)
            }
            Analysis::Sessions(mut req) => {
                crate::cohorts::resolve(pg, project_id, &mut req).await?;
                value(crate::sessions::run(engine, project_id, &req, now).await?)
            }
        }
    }
}

/// The error a failed job recorded, as the synchronous route would have answered it.
fn job_error(error: Option<&Value>) -> ApiError {
    const CODES: &[&str] = &[
        "invalid_request",
        "not_found",
        "timeout",
        "too_expensive",
        "unavailable",
        "rate_limited",
        "forbidden",
        "internal",
    ];
    let Some(e) = error else {
        return ApiError::internal("a failed query job recorded no error");
    };
    let status = e["status"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = CODES.iter().find(|c| e["error"].as_str() == Some(**c)).copied().unwrap_or("job_failed");
    let mut err = ApiError::new(status, code, e["message"].as_str().unwrap_or("the query failed"));
    err.field = e["field"].as_str().map(String::from);
    err
}

impl Jobs {
    /// An analysis' result now, through the jobs and their cache: a result computed within the
    /// cache TTL (and after the project's data last changed) answers at once, an identical job
    /// running is joined, otherwise one runs and is waited for. What a dashboard's tiles (saved
    /// insights' results) are read through: a dashboard opened twice computes each tile once.
    pub async fn result_now(
        self: &Arc<Self>,
        engine: &Engine,
        pg: &PgPool,
        project_id: u64,
        user_id: i64,
        analysis: Analysis,
        refresh: bool,
    ) -> Result<(Value, bool), ApiError> {
        let input = JobInput { kind: analysis.kind().as_str().to_string(), query: analysis.canonical()?, refresh };
        let (_, mut job) = self.create(engine, pg, project_id, user_id, input).await?;
        let deadline = tokio::time::Instant::now() + self.cfg.timeout + Duration::from_secs(STALE_SECS as u64);
        loop {
            match job.status.as_str() {
                "done" => {
                    return job
                        .result
                        .map(|r| (r, job.cached))
                        .ok_or_else(|| ApiError::internal("a done job has no result"))
                }
                "failed" => return Err(job_error(job.error.as_ref())),
                "cancelled" => return Err(ApiError::unavailable("the query was cancelled; try again")),
                _ => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(crate::sql::timed_out(self.cfg.timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            job = get(pg, project_id, job.id).await?;
        }
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryJob {
    pub id: Uuid,
    pub kind: String,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    pub progress: Progress,
    /// Answered from an earlier identical job's result (`POST` only).
    pub cached: bool,
    /// A cancel was asked for and the job has not stopped yet.
    pub cancel_requested: bool,
    /// The request as the analysis parsed it.
    pub query: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The analysis' answer (`done`), as its synchronous route gives it.
    pub result: Option<Value>,
    /// Why it failed (`failed`): the error body the synchronous route would have answered, with
    /// its HTTP status.
    pub error: Option<Value>,
}

/// Rows read of the rows to read, over the job's statements (ClickHouse's estimate).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub rows_read: u64,
    pub total_rows: u64,
    /// rows_read / total_rows (1 when done; null while nothing is known).
    pub fraction: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    kind: String,
    status: String,
    rows_read: i64,
    total_rows: i64,
    cancel_requested: bool,
    request: Value,
    created_at: OffsetDateTime,
    started_at: Option<OffsetDateTime>,
    finished_at: Option<OffsetDateTime>,
    result: Option<Value>,
    error: Option<Value>,
}

const COLUMNS: &str = "id, kind, status, rows_read, total_rows, cancel_requested, request, created_at, started_at, \
                       finished_at, result, error";

impl Row {
    fn into_job(self, cached: bool) -> QueryJob {
        let (rows_read, total_rows) = (self.rows_read.max(0) as u64, self.total_rows.max(0) as u64);
        let fraction = if self.status == "done" {
            Some(1.0)
        } else if total_rows > 0 {
            Some((rows_read as f64 / total_rows as f64).min(1.0))
        } else {
            None
        };
        QueryJob {
            id: self.id,
            kind: self.kind,
            cancel_requested: self.cancel_requested && matches!(self.status.as_str(), "queued" | "running"),
            status: self.status,
            progress: Progress { rows_read, total_rows, fraction },
            cached,
            query: self.request,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            result: self.result,
            error: self.error,
        }
    }
}

/// An error as a job keeps it: the body its route would answer (`error`, `message`, `field`),
/// with the HTTP status.
fn error_value(e: &ApiError) -> Value {
    json!({"status": e.status.as_u16(), "error": e.code, "message": e.message, "field": e.field})
}

/// Jobs outcomes, for `cairn_query_jobs_total{outcome}`.
pub type JobCounter = prometheus_client::metrics::family::Family<
    crate::metrics::OutcomeLabels,
    prometheus_client::metrics::counter::Counter,
>;

/// This replica's job runner.
pub struct Jobs {
    cfg: JobsConfig,
    /// This process (written on the jobs it runs).
    runner: String,
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    /// The jobs this replica runs, by id: cancelled at once when the cancel comes here.
    local: Mutex<HashMap<Uuid, CancellationToken>>,
    outcomes: JobCounter,
    /// The replica is shutting down: its jobs end failed, not cancelled.
    stopping: std::sync::atomic::AtomicBool,
}

impl Jobs {
    pub fn new(cfg: JobsConfig, outcomes: JobCounter) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(cfg.workers.max(1))),
            runner: format!("query-{}", Uuid::new_v4().simple()),
            cfg,
            queued: AtomicUsize::new(0),
            local: Mutex::new(HashMap::new()),
            outcomes,
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn count(&self, outcome: &'static str) {
        self.outcomes.get_or_create(&crate::metrics::OutcomeLabels { outcome }).inc();
    }

    /// `POST`: an identical job (running, or done within the TTL) or a new one.
    pub async fn create(
        self: &Arc<Self>,
        engine: &Engine,
        pg: &PgPool,
        project_id: u64,
        user_id: i64,
        input: JobInput,
    ) -> Result<(StatusCode, QueryJob), ApiError> {
        let kind = Kind::parse(&input.kind).ok_or_else(|| {
            ApiError::invalid(
                "kind",
                "must be one of trends, funnels, retention, stickiness, lifecycle, paths, sessions",
            )
        })?;
        let analysis = Analysis::parse(kind, input.query)?;
        let key = analysis.key()?;
        let canonical = analysis.canonical()?;
        if !input.refresh {
            let found: Option<Row> = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM query_jobs WHERE project_id = $1 AND request_key = $2 AND ( \
                 (status IN ('queued', 'running') AND NOT cancel_requested \
                  AND heartbeat_at > now() - make_interval(secs => $3)) \
                 OR (status = 'done' AND cacheable AND finished_at > now() - make_interval(secs => $4))) \
                 AND COALESCE(started_at, now()) > COALESCE( \
                     (SELECT not_before FROM query_cache_barriers WHERE project_id = $1), '-infinity'::timestamptz) \
                 ORDER BY created_at DESC LIMIT 1"
            ))
            .bind(project_id as i64)
            .bind(&key)
            .bind(STALE_SECS as f64)
            .bind(self.cfg.cache_ttl.as_secs_f64())
            .fetch_optional(pg)
            .await
            .map_err(db_error)?;
            if let Some(row) = found {
                return Ok(if row.status == "done" {
                    self.count("cached");
                    (StatusCode::OK, row.into_job(true))
                } else {
                    self.count("joined");
                    (StatusCode::ACCEPTED, row.into_job(false))
                });
            }
        }
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM query_jobs WHERE created_by = $1 AND status IN ('queued', 'running') \
             AND heartbeat_at > now() - make_interval(secs => $2)",
        )
        .bind(user_id)
        .bind(STALE_SECS as f64)
        .fetch_one(pg)
        .await
        .map_err(db_error)?;
        if active >= self.cfg.max_per_caller {
            return Err(ApiError::too_many_requests(
                format!("{active} query jobs of yours are queued or running; wait for one to end or cancel one"),
                Duration::from_secs(5),
            ));
        }
        // The replica's queue: counted before the row exists, so two requests cannot both take
        // the last place.
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.cfg.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::too_many_requests(
                "this query replica has as many jobs waiting as it may queue; try again shortly",
                Duration::from_secs(5),
            ));
        }
        // Given back when the job gets a worker or ends, or here if this request is dropped.
        let slot = QueuedSlot(self.clone());
        let id = Uuid::now_v7();
        let inserted: Result<Row, ApiError> = sqlx::query_as(&format!(
            "INSERT INTO query_jobs (id, project_id, created_by, kind, request, request_key, runner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(project_id as i64)
        .bind(user_id)
        .bind(kind.as_str())
        .bind(&canonical)
        .bind(&key)
        .bind(&self.runner)
        .fetch_one(pg)
        .await
        .map_err(db_error);
        let row = inserted?;
        let token = CancellationToken::new();
        if let Ok(mut local) = self.local.lock() {
            local.insert(id, token.clone());
        }
        let (jobs, engine, pg) = (self.clone(), engine.clone(), pg.clone());
        tokio::spawn(async move { jobs.run(engine, pg, Accepted { id, project_id, analysis, token, slot }).await });
        self.count("started");
        Ok((StatusCode::ACCEPTED, row.into_job(false)))
    }

    /// Runs one job to its end, writing its state as it goes.
    async fn run(self: Arc<Self>, engine: Engine, pg: PgPool, job: Accepted) {
        let id = job.id;
        let outcome = self.run_inner(&engine, &pg, job).await;
        let (status, result, error) = match outcome {
            Ended::Done(v) => ("done", Some(v), None),
            Ended::Failed(e) => ("failed", None, Some(error_value(&e))),
            // Stopped with the replica, not by anyone: failed, to be run again.
            Ended::Cancelled if self.stopping.load(Ordering::SeqCst) => (
                "failed",
                None,
                Some(error_value(&ApiError::unavailable("the query replica running this job stopped; run it again"))),
            ),
            Ended::Cancelled => ("cancelled", None, None),
        };
        self.count(status);
        let written = sqlx::query(
            "UPDATE query_jobs SET status = $2, result = $3, error = $4, finished_at = now(), heartbeat_at = now(), \
             rows_read = CASE WHEN $2 = 'done' THEN greatest(rows_read, total_rows) ELSE rows_read END \
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(id)
        .bind(status)
        .bind(result)
        .bind(error)
        .execute(&pg)
        .await;
        if let Err(e) = written {
            // The heartbeat stops: readers report the job failed within STALE_SECS.
            tracing::warn!(job = %id, error = %e, "cannot record the end of a query job");
        }
        if let Ok(mut local) = self.local.lock() {
            local.remove(&id);
        }
    }

    async fn run_inner(&self, engine: &Engine, pg: &PgPool, job: Accepted) -> Ended {
        let Accepted { id, project_id, analysis, token, slot } = job;
        // The job's time limit counts from its acceptance, waiting included.
        let deadline = tokio::time::sleep(self.cfg.timeout);
        tokio::pin!(deadline);
        // Waiting for a worker (heartbeat included, so the job is not taken for lost).
        let permit = {
            let acquire = self.permits.clone().acquire_owned();
            tokio::pin!(acquire);
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    p = &mut acquire => break p,
                    _ = token.cancelled() => return Ended::Cancelled,
                    _ = &mut deadline => return Ended::Failed(crate::sql::timed_out(self.cfg.timeout)),
                    _ = tick.tick() => {
                        if heartbeat(pg, id, None).await {
                            token.cancel();
                        }
                    }
                }
            }
        };
        drop(slot);
        let Ok(_permit) = permit else {
            return Ended::Failed(ApiError::internal("the job runner's semaphore is closed"));
        };
        if let Err(e) = sqlx::query(
            "UPDATE query_jobs SET status = 'running', started_at = now(), heartbeat_at = now() WHERE id = $1",
        )
        .bind(id)
        .execute(pg)
        .await
        {
            return Ended::Failed(db_error(e));
        }
        let comment = format!("cairn-job:{id}");
        let mut job_engine = match crate::deletions::engine_for(engine, pg, project_id).await {
            Ok(e) => e,
            Err(e) => return Ended::Failed(e),
        };
        job_engine.timeout = self.cfg.timeout;
        job_engine.comment = Some(Arc::from(comment.as_str()));
        let analysis = analysis.run(&job_engine, pg, project_id, Timestamp::now());
        tokio::pin!(analysis);
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut statements: HashMap<String, (u64, u64)> = HashMap::new();
        loop {
            tokio::select! {
                out = &mut analysis => {
                    return match out {
                        Ok(v) => Ended::Done(v),
                        Err(e) => Ended::Failed(e),
                    };
                }
                _ = token.cancelled() => {
                    // Dropping the analysis closes its connection; the kill stops what ClickHouse
                    // still runs of it.
                    kill(&engine.ch, &comment).await;
                    return Ended::Cancelled;
                }
                _ = &mut deadline => {
                    kill(&engine.ch, &comment).await;
                    return Ended::Failed(crate::sql::timed_out(self.cfg.timeout));
                }
                _ = tick.tick() => {
                    match tokio::time::timeout(SIDE_CALL_TIMEOUT, progress(&engine.ch, &comment)).await {
                        Ok(Ok(now)) => {
                            for (query_id, (read, total)) in now {
                                let seen = statements.entry(query_id).or_default();
                                *seen = (seen.0.max(read), seen.1.max(total));
                            }
                        }
                        Ok(Err(e)) => tracing::debug!(job = %id, error = %e, "cannot read a job's progress"),
                        Err(_) => tracing::debug!(job = %id, "reading a job's progress timed out"),
                    }
                    let read: u64 = statements.values().map(|s| s.0).sum();
                    let total: u64 = statements.values().map(|s| s.1.max(s.0)).sum();
                    if heartbeat(pg, id, Some((read, total))).await {
                        token.cancel();
                    }
                }
            }
        }
    }

    /// `DELETE`: asks for the job to stop (at once if it runs here; within a heartbeat on the
    /// replica that runs it). An ended job is answered as it is.
    pub async fn cancel(
        &self,
        pg: &PgPool,
        project_id: u64,
        id: Uuid,
        user_id: i64,
    ) -> Result<(StatusCode, QueryJob), ApiError> {
        let found: Option<(Option<i64>, String)> =
            sqlx::query_as("SELECT created_by, status FROM query_jobs WHERE project_id = $1 AND id = $2")
                .bind(project_id as i64)
                .bind(id)
                .fetch_optional(pg)
                .await
                .map_err(db_error)?;
        let (created_by, status) = found.ok_or_else(|| ApiError::not_found("query job"))?;
        if !matches!(status.as_str(), "queued" | "running") {
            return Ok((StatusCode::OK, get(pg, project_id, id).await?));
        }
        if created_by != Some(user_id) {
            // Others may have joined it: it runs on for them.
            return Err(ApiError::forbidden("only the user who started a query job may cancel it"));
        }
        sqlx::query(
            "UPDATE query_jobs SET cancel_requested = true WHERE project_id = $1 AND id = $2 \
             AND status IN ('queued', 'running')",
        )
        .bind(project_id as i64)
        .bind(id)
        .execute(pg)
        .await
        .map_err(db_error)?;
        let token = self.local.lock().ok().and_then(|local| local.get(&id).cloned());
        if let Some(token) = token {
            token.cancel();
            // The runner records the end in a moment: answer with it when it is there.
            for _ in 0..40 {
                let job = get(pg, project_id, id).await?;
                if job.status != "queued" && job.status != "running" {
                    return Ok((StatusCode::OK, job));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        // Another replica runs it: it stops within a heartbeat.
        let job = get(pg, project_id, id).await?;
        let status =
            if matches!(job.status.as_str(), "queued" | "running") { StatusCode::ACCEPTED } else { StatusCode::OK };
        Ok((status, job))
    }

    /// At shutdown: stops this replica's jobs (recorded failed, to be run again) and waits up to
    /// `grace` for their ends to be written.
    pub async fn stop_all(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        let tokens: Vec<CancellationToken> =
            self.local.lock().map(|l| l.values().cloned().collect()).unwrap_or_default();
        for t in &tokens {
            t.cancel();
        }
        let start = std::time::Instant::now();
        while start.elapsed() < grace && self.local.lock().map(|l| !l.is_empty()).unwrap_or(false) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A place in this replica's queue, given back on drop.
struct QueuedSlot(Arc<Jobs>);

impl Drop for QueuedSlot {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A job as the runner takes it.
struct Accepted {
    id: Uuid,
    project_id: u64,
    analysis: Analysis,
    token: CancellationToken,
    slot: QueuedSlot,
}

enum Ended {
    Done(Value),
    Failed(ApiError),
    Cancelled,
}

/// Writes a running job's heartbeat (and progress); true when the job must stop: a cancel was
/// asked for, or a reader took it for lost (its heartbeat was late) and failed it.
async fn heartbeat(pg: &PgPool, id: Uuid, progress: Option<(u64, u64)>) -> bool {
    match tokio::time::timeout(SIDE_CALL_TIMEOUT, write_heartbeat(pg, id, progress)).await {
        Ok(stop) => stop,
        Err(_) => {
            tracing::debug!(job = %id, "writing a job's heartbeat timed out");
            false
        }
    }
}

async fn write_heartbeat(pg: &PgPool, id: Uuid, progress: Option<(u64, u64)>) -> bool {
    let q = match progress {
        Some((read, total)) => sqlx::query_scalar(
            "UPDATE query_jobs SET heartbeat_at = now(), rows_read = $2, total_rows = $3 WHERE id = $1 \
             RETURNING cancel_requested OR status NOT IN ('queued', 'running')",
        )
        .bind(id)
        .bind(read.min(i64::MAX as u64) as i64)
        .bind(total.min(i64::MAX as u64) as i64),
        None => sqlx::query_scalar(
            "UPDATE query_jobs SET heartbeat_at = now() WHERE id = $1 \
             RETURNING cancel_requested OR status NOT IN ('queued', 'running')",
        )
        .bind(id),
    };
    match q.fetch_optional(pg).await {
        Ok(Some(stop)) => stop,
        // The job's row is gone (its project was deleted): stop.
        Ok(None) => true,
        Err(e) => {
            tracing::debug!(job = %id, error = %e, "cannot write a job's heartbeat");
            false
        }
    }
}

#[derive(clickhouse::Row, Deserialize)]
struct Running {
    query_id: String,
    read_rows: u64,
    total_rows_approx: u64,
}

/// The job's statements running now: rows read and to read, by statement.
async fn progress(
    ch: &clickhouse::Client,
    comment: &str,
) -> Result<Vec<(String, (u64, u64))>, clickhouse::error::Error> {
    let rows: Vec<Running> = ch
        .query(
            "SELECT query_id, read_rows, total_rows_approx FROM system.processes \
             WHERE JSONExtractString(Settings['log_comment'], 'job') = ? AND query NOT LIKE 'KILL%'",
        )
        .bind(comment)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(|r| (r.query_id, (r.read_rows, r.total_rows_approx))).collect())
}

/// Stops the job's statements that ClickHouse still runs.
async fn kill(ch: &clickhouse::Client, comment: &str) {
    let killed = ch
        .query("KILL QUERY WHERE JSONExtractString(Settings['log_comment'], 'job') = ? ASYNC")
        .bind(comment)
        .execute()
        .await;
    if let Err(e) = killed {
        tracing::warn!(error = %e, job = comment, "cannot kill a cancelled job's statements");
    }
}

/// `GET`: the job as it is; a job whose replica stopped is failed here.
pub async fn get(pg: &PgPool, project_id: u64, id: Uuid) -> Result<QueryJob, ApiError> {
    sqlx::query(
        "UPDATE query_jobs SET status = 'failed', finished_at = now(), error = $3 \
         WHERE project_id = $1 AND id = $2 AND status IN ('queued', 'running') \
         AND heartbeat_at < now() - make_interval(secs => $4)",
    )
    .bind(project_id as i64)
    .bind(id)
    .bind(lost_error())
    .bind(STALE_SECS as f64)
    .execute(pg)
    .await
    .map_err(db_error)?;
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM query_jobs WHERE project_id = $1 AND id = $2"))
            .bind(project_id as i64)
            .bind(id)
            .fetch_optional(pg)
            .await
            .map_err(db_error)?;
    row.map(|r| r.into_job(false)).ok_or_else(|| ApiError::not_found("query job"))
}

/// The project's data changed in a way analyses must see (a person deleted, an event changed,
/// sample data loaded): its results are not reused, and no job started before `grace` from now
/// is joined or reused. A failure is logged, not answered: the change itself is accepted.
pub async fn invalidate(pg: &PgPool, project_id: u64, grace: Duration) {
    let barrier = sqlx::query(
        "INSERT INTO query_cache_barriers (project_id, not_before) VALUES ($1, now() + make_interval(secs => $2)) \
         ON CONFLICT (project_id) DO UPDATE SET not_before = greatest(query_cache_barriers.not_before, EXCLUDED.not_before)",
    )
    .bind(project_id as i64)
    .bind(grace.as_secs_f64())
    .execute(pg)
    .await;
    let uncached = sqlx::query("UPDATE query_jobs SET cacheable = false WHERE project_id = $1 AND cacheable")
        .bind(project_id as i64)
        .execute(pg)
        .await;
    if let Some(e) = barrier.err().or(uncached.err()) {
        tracing::warn!(project_id, error = %e, "cannot end the reuse of a project's query results");
    }
}

/// Fails the jobs whose replica stopped, deletes those that ended more than a day ago and those
/// past a project's latest 1,000; returns how many were deleted.
pub async fn delete_old(pg: &PgPool) -> Result<u64, ApiError> {
    sqlx::query(
        "UPDATE query_jobs SET status = 'failed', finished_at = now(), error = $1 \
         WHERE status IN ('queued', 'running') AND heartbeat_at < now() - make_interval(secs => $2)",
    )
    .bind(lost_error())
    .bind(STALE_SECS as f64)
    .execute(pg)
    .await
    .map_err(db_error)?;
    let old = sqlx::query("DELETE FROM query_jobs WHERE finished_at < now() - make_interval(hours => $1)")
        .bind(KEEP_HOURS as i32)
        .execute(pg)
        .await
        .map_err(db_error)?;
    let surplus = sqlx::query(
        "DELETE FROM query_jobs WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER \
         (PARTITION BY project_id ORDER BY created_at DESC) AS n FROM query_jobs WHERE finished_at IS NOT NULL) ranked \
         WHERE n > $1)",
    )
    .bind(KEEP_PER_PROJECT)
    .execute(pg)
    .await
    .map_err(db_error)?;
    Ok(old.rows_affected() + surplus.rows_affected())
}

/// The error of a job whose replica stopped before it ended.
fn lost_error() -> Value {
    json!({"status": 503, "error": "unavailable",
        "message": "the query replica running this job stopped before it ended; run it again", "field": null})
}

/// A job id from the path: 404 for anything that is not a UUID (no job has such an id).
pub fn job_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::not_found("query job"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_requests_share_a_key_whatever_their_field_order() {
        let a = Analysis::parse(
            Kind::Trends,
            json!({"series": [{"event": "pageview"}], "date_from": "-7d", "interval": "day"}),
        )
        .unwrap();
        let b = Analysis::parse(
            Kind::Trends,
            json!({"interval": "day", "date_from": "-7d", "series": [{"event": "pageview"}]}),
        )
        .unwrap();
        assert_eq!(a.key().unwrap(), b.key().unwrap());
        let c = Analysis::parse(Kind::Trends, json!({"series": [{"event": "signup"}], "date_from": "-7d"})).unwrap();
        assert_ne!(a.key().unwrap(), c.key().unwrap());
    }

    #[test]
    fn a_request_its_analysis_refuses_is_a_400_naming_query() {
        let e = Analysis::parse(Kind::Funnels, json!({"steps": [], "bogus": 1})).unwrap_err();
        assert_eq!((e.status.as_u16(), e.field.as_deref()), (400, Some("query")));
        assert!(e.message.contains("bogus"), "{}", e.message);
    }

    #[test]
    fn progress_is_a_fraction_and_done_is_whole() {
        let row = |status: &str, read, total| Row {
            id: Uuid::nil(),
            kind: "trends".into(),
            status: status.into(),
            rows_read: read,
            total_rows: total,
            cancel_requested: true,
            request: json!({}),
            created_at: OffsetDateTime::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
        };
        let running = row("running", 25, 100).into_job(false);
        assert_eq!(running.progress.fraction, Some(0.25));
        assert!(running.cancel_requested);
        assert_eq!(row("running", 0, 0).into_job(false).progress.fraction, None);
        let done = row("done", 90, 100).into_job(true);
        assert_eq!((done.progress.fraction, done.cached, done.cancel_requested), (Some(1.0), true, false));
    }
}
