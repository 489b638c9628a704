//! "Load sample data" in an empty project (`POST /api/v1/projects/{project_id}/sample-data`): the
//! month of a small shop that `make demo` sends (the same generator, `cairn_demo`), with its saved
//! insights, dashboard and cohorts, so that every page of the dashboard shows something at once.
//!
//! The events are checked by the rule capture applies to every event
//! (`cairn_common::event::validate_event`) and produced to the events topic as capture produces
//! them (same record, same key, acknowledged by Kafka before the answer); the consumer stores them
//! like any others. Only a project without events takes them: sample data never mixes with real
//! data.

use std::collections::HashMap;

use cairn_common::clickhouse::EVENTS_TABLE;
use cairn_common::event::{validate_event, ValidationContext};
use cairn_common::http::ApiError;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::cohorts::{self, CohortInput};
use crate::engine::Engine;
use crate::event_changes::EventsProducer;
use crate::insights::{self, DashboardInput, InsightInput, TileInput};
use crate::sql::Sql;

/// What was loaded (`202`: the events are in Kafka; the consumer stores them within seconds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SampleData {
    pub events: usize,
    pub visitors: usize,
    pub signed_up: usize,
    pub buyers: usize,
    /// The saved insights (made now or already there, by name).
    pub insight_ids: Vec<i64>,
    pub cohort_ids: Vec<i64>,
    /// The dashboard of the insights ("Shop overview").
    pub dashboard_id: i64,
}

/// Ids of the project's rows of `table` (insights, dashboards or cohorts) by name.
async fn ids_by_name(pg: &PgPool, table: &'static str, project_id: u64) -> Result<HashMap<String, i64>, ApiError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(&format!("SELECT id, name FROM {table} WHERE project_id = $1"))
        .bind(project_id as i64)
        .fetch_all(pg)
        .await
        .map_err(cairn_postgres::api_error)?;
    Ok(rows.into_iter().map(|(id, name)| (name, id)).collect())
}

/// Loads the sample data into `project_id`; 409 when the project has events already.
pub async fn load(
    engine: &Engine,
    pg: &PgPool,
    producer: &EventsProducer,
    project_id: u64,
    user_id: i64,
) -> Result<SampleData, ApiError> {
    // One load per project at a time (the lock's transaction holds it; everything else is
    // written outside it, so a failure midway leaves its marks for the next load to complete).
    let mut lock = pg.begin().await.map_err(cairn_postgres::api_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('cairn.sample-data', $1))")
        .bind(project_id as i64)
        .execute(&mut *lock)
        .await
        .map_err(cairn_postgres::api_error)?;
    let load: Option<(OffsetDateTime, Option<OffsetDateTime>)> =
        sqlx::query_as("SELECT started_at, finished_at FROM sample_data_loads WHERE project_id = $1")
            .bind(project_id as i64)
            .fetch_optional(pg)
            .await
            .map_err(cairn_postgres::api_error)?;
    let started = match load {
        Some((_, Some(_))) => return Err(ApiError::conflict("sample data was loaded into this project already")),
        // A load that failed midway: the same events again (those stored collapse with them).
        Some((started, None)) => started,
        None => {
            let mut sql = Sql::new();
            let p = sql.u64(project_id);
            sql.push(&format!("SELECT count() FROM (SELECT 1 FROM {EVENTS_TABLE} WHERE project_id = {p} LIMIT 1)"));
            let stored: Vec<u64> = engine.fetch_all(&sql).await?;
            if stored.first().copied().unwrap_or(0) > 0 {
                return Err(ApiError::conflict(
                    "the project has events already: sample data goes only into an empty project (make a new project for it)",
                ));
            }
            let now = OffsetDateTime::now_utc();
            let started = now.replace_nanosecond(0).unwrap_or(now);
            sqlx::query("INSERT INTO sample_data_loads (project_id, started_at) VALUES ($1, $2)")
                .bind(project_id as i64)
                .bind(started)
                .execute(pg)
                .await
                .map_err(cairn_postgres::api_error)?;
            started
        }
    };

    let now = OffsetDateTime::now_utc();
    let started_ms = (started.unix_timestamp_nanos() / 1_000_000) as i64;
    let (raw, summary) = cairn_demo::generate(&cairn_demo::Options::new(started_ms));
    let ctx = ValidationContext { project_id, now, sent_at: None, max_future: time::Duration::hours(23) };
    let mut records = Vec::with_capacity(raw.len());
    for (i, event) in raw.into_iter().enumerate() {
        let captured = validate_event(Some(i), event, &ctx)
            .map_err(|errors| ApiError::internal(format!("sample event {i} is not valid: {errors:?}")))?;
        let payload = serde_json::to_vec(&captured).map_err(ApiError::internal)?;
        records.push((captured.kafka_key(), payload));
    }
    producer.send_all(&records).await?;

    // The saved views, made once (by name): a load after a failure completes them.
    let mut cohort_ids = Vec::new();
    let have = ids_by_name(pg, "cohorts", project_id).await?;
    for (name, body) in cairn_demo::cohorts() {
        let id = match have.get(name) {
            Some(id) => *id,
            None => {
                let input: CohortInput = serde_json::from_value(body).map_err(ApiError::internal)?;
                cohorts::create(pg, project_id, user_id, input).await?.id
            }
        };
        cohort_ids.push(id);
    }
    let mut insight_ids = Vec::new();
    let have = ids_by_name(pg, "insights", project_id).await?;
    for (name, query) in cairn_demo::insights() {
        let id = match have.get(name) {
            Some(id) => *id,
            None => {
                let input = InsightInput {
                    name: name.to_string(),
                    description: Some("Sample data".into()),
                    query,
                    display: None,
                };
                insights::create_insight(pg, project_id as i64, user_id, &input).await?.id
            }
        };
        insight_ids.push(id);
    }
    let (name, description) = cairn_demo::DASHBOARD;
    let dashboard_id = match ids_by_name(pg, "dashboards", project_id).await?.get(name) {
        Some(id) => *id,
        None => {
            let input = DashboardInput {
                name: name.into(),
                description: Some(description.into()),
                tiles: insight_ids.iter().map(|id| TileInput { insight_id: *id, layout: None }).collect(),
            };
            insights::create_dashboard(pg, project_id as i64, user_id, &input).await?.id
        }
    };
    sqlx::query("UPDATE sample_data_loads SET finished_at = now() WHERE project_id = $1")
        .bind(project_id as i64)
        .execute(pg)
        .await
        .map_err(cairn_postgres::api_error)?;
    lock.commit().await.map_err(cairn_postgres::api_error)?;
    tracing::info!(project_id, events = summary.events, "sample data loaded");
    Ok(SampleData {
        events: summary.events,
        visitors: summary.visitors,
        signed_up: summary.signed_up,
        buyers: summary.buyers,
        insight_ids,
        cohort_ids,
        dashboard_id,
    })
}
