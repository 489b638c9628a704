//! The HTTP API: analyses, the explorer, insights and dashboards, all under
//! `/api/v1/projects/{project_id}/…` and scoped to that project.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_auth_client::{AuthClient, Permission};
use cairn_common::http::{query_params, ApiError, JsonBody};
use jiff::Timestamp;
use serde_json::Value;
use sqlx::PgPool;

use crate::caller::{path_id, Caller, HasAuth};
use crate::cohorts;
use crate::deletions;
use crate::engine::Engine;
use crate::event_changes;
use crate::explorer::{self, EventsParams, Picker, PickerParams};
use crate::funnels::{self, FunnelsRequest};
use crate::insights::{self, DashboardInput, DashboardPatch, InsightInput, InsightPatch, Page};
use crate::jobs::Analysis;
use crate::metrics::{QueryMetrics, RouteLabels, RouteOnly};
use crate::persons_api;
use crate::retention::{self, RetentionRequest};
use crate::trends::{self, TrendsRequest};

/// Every route of the API (method, path), as documented in `schemas/openapi/query.yaml`.
pub const QUERY_ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/projects/{project_id}/query/trends"),
    ("post", "/api/v1/projects/{project_id}/query/funnels"),
    ("post", "/api/v1/projects/{project_id}/query/retention"),
    ("post", "/api/v1/projects/{project_id}/query/stickiness"),
    ("post", "/api/v1/projects/{project_id}/query/lifecycle"),
    ("post", "/api/v1/projects/{project_id}/query/paths"),
    ("post", "/api/v1/projects/{project_id}/query/sessions"),
    ("post", "/api/v1/projects/{project_id}/query/sql"),
    ("post", "/api/v1/projects/{project_id}/query-jobs"),
    ("get", "/api/v1/projects/{project_id}/query-jobs/{job_id}"),
    ("delete", "/api/v1/projects/{project_id}/query-jobs/{job_id}"),
    ("get", "/api/v1/projects/{project_id}/events"),
    ("get", "/api/v1/projects/{project_id}/events/{event_id}"),
    ("put", "/api/v1/projects/{project_id}/events/{event_id}"),
    ("delete", "/api/v1/projects/{project_id}/events/{event_id}"),
    ("get", "/api/v1/projects/{project_id}/sessions/{session_id}/events"),
    ("post", "/api/v1/projects/{project_id}/sample-data"),
    ("get", "/api/v1/projects/{project_id}/persons"),
    ("get", "/api/v1/projects/{project_id}/persons/{person_id}"),
    ("delete", "/api/v1/projects/{project_id}/persons/{person_id}"),
    ("get", "/api/v1/projects/{project_id}/persons/{person_id}/export"),
    ("get", "/api/v1/projects/{project_id}/person-deletions"),
    ("get", "/api/v1/projects/{project_id}/cohorts"),
    ("post", "/api/v1/projects/{project_id}/cohorts"),
    ("get", "/api/v1/projects/{project_id}/cohorts/{cohort_id}"),
    ("delete", "/api/v1/projects/{project_id}/cohorts/{cohort_id}"),
    ("post", "/api/v1/projects/{project_id}/cohorts/{cohort_id}/compute"),
    ("get", "/api/v1/projects/{project_id}/persons/{distinct_id}/events"),
    ("get", "/api/v1/projects/{project_id}/event-names"),
    ("get", "/api/v1/projects/{project_id}/property-keys"),
    ("get", "/api/v1/projects/{project_id}/property-values"),
    ("get", "/api/v1/projects/{project_id}/insights"),
    ("post", "/api/v1/projects/{project_id}/insights"),
    ("get", "/api/v1/projects/{project_id}/insights/{insight_id}"),
    ("patch", "/api/v1/projects/{project_id}/insights/{insight_id}"),
    ("delete", "/api/v1/projects/{project_id}/insights/{insight_id}"),
    ("get", "/api/v1/projects/{project_id}/insights/{insight_id}/result"),
    ("get", "/api/v1/projects/{project_id}/insights/{insight_id}/export"),
    ("get", "/api/v1/projects/{project_id}/exports/events"),
    ("get", "/api/v1/projects/{project_id}/event-exports"),
    ("post", "/api/v1/projects/{project_id}/event-exports"),
    ("get", "/api/v1/projects/{project_id}/event-exports/{export_id}"),
    ("patch", "/api/v1/projects/{project_id}/event-exports/{export_id}"),
    ("delete", "/api/v1/projects/{project_id}/event-exports/{export_id}"),
    ("get", "/api/v1/projects/{project_id}/event-exports/{export_id}/files"),
    ("get", "/api/v1/projects/{project_id}/dashboards"),
    ("post", "/api/v1/projects/{project_id}/dashboards"),
    ("get", "/api/v1/projects/{project_id}/dashboards/{dashboard_id}"),
    ("patch", "/api/v1/projects/{project_id}/dashboards/{dashboard_id}"),
    ("delete", "/api/v1/projects/{project_id}/dashboards/{dashboard_id}"),
    ("get", "/api/docs"),
    ("get", "/api/docs/viewer.js"),
    ("get", "/api/openapi/{name}"),
];

pub struct AppState {
    pub engine: Engine,
    pub pg: PgPool,
    pub auth: AuthClient,
    pub metrics: Arc<QueryMetrics>,
    pub slots: crate::caller::CallerSlots,
    pub changes: crate::event_changes::EventsProducer,
    pub jobs: Arc<crate::jobs::Jobs>,
    pub export: crate::export::ExportLimits,
    pub exports: crate::event_exports::ExportsConfig,
}

impl HasAuth for Arc<AppState> {
    fn auth(&self) -> &AuthClient {
        &self.auth
    }

    fn slots(&self) -> Option<&crate::caller::CallerSlots> {
        Some(&self.slots)
    }
}

type S = State<Arc<AppState>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

async fn trends_handler(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(mut req): JsonBody<TrendsRequest>,
) -> ApiResult<trends::TrendsResponse> {
    let project = caller.project(&project, Permission::QueryRead)?;
    cohorts::resolve(&s.pg, project, &mut req).await?;
    trends::run(&deletions::engine_for(&s.engine, &s.pg, project).await?, project, &req, Timestamp::now())
        .await
        .map(Json)
}

async fn funnels_handler(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(mut req): JsonBody<FunnelsRequest>,
) -> ApiResult<funnels::FunnelsResponse> {
    let project = caller.project(&project, Permission::QueryRead)?;
    cohorts::resolve(&s.pg, project, &mut req).await?;
    funnels::run(&deletions::engine_for(&s.engine, &s.pg, project).await?, project, &req, Timestamp::now())
        .await
        .map(Json)
}

async fn retention_handler(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(mut req): JsonBody<RetentionRequest>,
) -> ApiResult<retention::RetentionResponse> {
    let project = caller.project(&project, Permission::QueryRead)?;
    cohorts::resolve(&s.pg, project, &mut req).await?;
    retention::run(&deletions::engine_for(&s.engine, &s.pg, project).await?, project, &req, Timestamp::now())
        .await
        .map(Json)
}

/// Runs `analysis` for the caller's project, as a saved insight or a job would.
async fn run_analysis(s: &AppState, caller: &Caller, project: &str, analysis: Analysis) -> ApiResult<Value> {
    let project = caller.project(project, Permission::QueryRead)?;
    let engine = deletions::engine_for(&s.engine, &s.pg, project).await?;
    analysis.run(&engine, &s.pg, project, Timestamp::now()).await.map(Json)
}

/// `POST …/query/{kind}` for an analysis whose request body is `R`.
fn analysis_route<R>(make: fn(R) -> Analysis) -> axum::routing::MethodRouter<Arc<AppState>>
where
    R: serde::de::DeserializeOwned + Send + 'static,
{
    post(move |State(s): S, caller: Caller, Path(project): Path<String>, JsonBody(req): JsonBody<R>| async move {
        run_analysis(&s, &caller, &project, make(req)).await
    })
}

async fn sql_handler(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(req): JsonBody<crate::user_sql::SqlRequest>,
) -> ApiResult<crate::user_sql::SqlResponse> {
    let project = caller.project(&project, Permission::QueryRead)?;
    crate::user_sql::run(&deletions::engine_for(&s.engine, &s.pg, project).await?, project, &req).await.map(Json)
}

/// Starts an analysis as a job: 202 with the job (or the identical one running), 200 with a result
/// still fresh in the cache.
async fn create_job_handler(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(input): JsonBody<crate::jobs::JobInput>,
) -> Result<Response, ApiError> {
    let project_id = caller.project(&project, Permission::QueryRead)?;
    let (status, job) = s.jobs.create(&s.engine, &s.pg, project_id, caller.user_id(), input).await?;
    let location = format!("/api/v1/projects/{project_id}/query-jobs/{}", job.id);
    Ok((status, [(axum::http::header::LOCATION, location)], Json(job)).into_response())
}

/// A job: its state, progress, and result once done.
async fn get_job_handler(
    State(s): S,
    caller: Caller,
    Path((project, job_id)): Path<(String, String)>,
) -> ApiResult<crate::jobs::QueryJob> {
    let project = caller.project(&project, Permission::QueryRead)?;
    crate::jobs::get(&s.pg, project, crate::jobs::job_id(&job_id)?).await.map(Json)
}

/// Cancels a job (an ended job is answered as it is).
async fn cancel_job_handler(
    State(s): S,
    caller: Caller,
    Path((project, job_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<crate::jobs::QueryJob>), ApiError> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let (status, job) = s.jobs.cancel(&s.pg, project, crate::jobs::job_id(&job_id)?, caller.user_id()).await?;
    Ok((status, Json(job)))
}

/// Query strings refused with the parameter named.
async fn events_handler(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    req: Request,
) -> ApiResult<explorer::EventsPage> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let params: EventsParams = query_params(req.uri().query())?;
    explorer::events(&deletions::engine_for(&s.engine, &s.pg, project).await?, project, &params, Timestamp::now())
        .await
        .map(Json)
}

/// One event as it is now (its latest version).
async fn get_event_handler(
    State(s): S,
    caller: Caller,
    Path((project, event_id)): Path<(String, String)>,
) -> ApiResult<event_changes::StoredEvent> {
    let project = caller.project(&project, Permission::QueryRead)?;
    event_changes::get(&deletions::engine_for(&s.engine, &s.pg, project).await?, project, &event_id).await.map(Json)
}

/// Sets named fields of a stored event: 202 once Kafka holds the change.
async fn update_event_handler(
    State(s): S,
    caller: Caller,
    Path((project, event_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<event_changes::ChangeAccepted>), ApiError> {
    let project = caller.project(&project, Permission::EventsWrite)?;
    let set = event_changes::parse_update(&body, time::OffsetDateTime::now_utc())?;
    let engine = deletions::engine_for(&s.engine, &s.pg, project).await?;
    let accepted = event_changes::request(&engine, &s.changes, project, &event_id, Some(set)).await?;
    crate::jobs::invalidate(&s.pg, project, crate::jobs::CHANGE_GRACE).await;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Deletes a stored event: 202 once Kafka holds the change.
async fn delete_event_handler(
    State(s): S,
    caller: Caller,
    Path((project, event_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<event_changes::ChangeAccepted>), ApiError> {
    let project = caller.project(&project, Permission::EventsWrite)?;
    let engine = deletions::engine_for(&s.engine, &s.pg, project).await?;
    let accepted = event_changes::request(&engine, &s.changes, project, &event_id, None).await?;
    crate::jobs::invalidate(&s.pg, project, crate::jobs::CHANGE_GRACE).await;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Loads the sample data into an empty project: 202 once Kafka holds the events.
async fn sample_data_handler(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
) -> Result<(StatusCode, Json<crate::sample_data::SampleData>), ApiError> {
    let project = caller.project(&project, Permission::EventsWrite)?;
    let loaded = crate::sample_data::load(&s.engine, &s.pg, &s.changes, project, caller.user_id()).await?;
    crate::jobs::invalidate(&s.pg, project, crate::jobs::CHANGE_GRACE).await;
    Ok((StatusCode::ACCEPTED, Json(loaded)))
}

/// The events of one session (`$session_id`), oldest first.
async fn session_events_handler(
    State(s): S,
    caller: Caller,
    Path((project, session_id)): Path<(String, String)>,
    req: Request,
) -> ApiResult<explorer::EventsPage> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let params: explorer::SessionParams = query_params(req.uri().query())?;
    let engine = deletions::engine_for(&s.engine, &s.pg, project).await?;
    explorer::session_events(&engine, project, &session_id, &params, Timestamp::now()).await.map(Json)
}

async fn person_events_handler(
    State(s): S,
    caller: Caller,
    Path((project, distinct_id)): Path<(String, String)>,
    req: Request,
) -> ApiResult<explorer::EventsPage> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let mut params: EventsParams = query_params(req.uri().query())?;
    params.distinct_id = Some(distinct_id);
    if params.date_from.is_none() {
        params.date_from = Some("-365d".into());
    }
    explorer::events(&deletions::engine_for(&s.engine, &s.pg, project).await?, project, &params, Timestamp::now())
        .await
        .map(Json)
}

async fn persons_handler(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    req: Request,
) -> ApiResult<persons_api::PersonsPage> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let params: persons_api::PersonsParams = query_params(req.uri().query())?;
    persons_api::list(&deletions::engine_for(&s.engine, &s.pg, project).await?, project, &params).await.map(Json)
}

async fn person_handler(
    State(s): S,
    caller: Caller,
    Path((project, person_id)): Path<(String, String)>,
) -> ApiResult<persons_api::PersonDetail> {
    let project = caller.project(&project, Permission::QueryRead)?;
    persons_api::get(&deletions::engine_for(&s.engine, &s.pg, project).await?, project, &person_id).await.map(Json)
}

/// Deletes a person with all their events: 202 with the tracked job.
async fn delete_person_handler(
    State(s): S,
    caller: Caller,
    Path((project, person_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<deletions::PersonDeletion>), ApiError> {
    let project = caller.project(&project, Permission::PersonsDelete)?;
    let engine = deletions::engine_for(&s.engine, &s.pg, project).await?;
    let job = deletions::request(&engine, &s.pg, project, &person_id, caller.user_id()).await?;
    // Jobs that start from now on leave the person out (pending deletions are read per job).
    crate::jobs::invalidate(&s.pg, project, std::time::Duration::ZERO).await;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Everything stored about a person, as a JSON document (streamed).
async fn export_person_handler(
    State(s): S,
    caller: Caller,
    Path((project, person_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let engine = deletions::engine_for(&s.engine, &s.pg, project).await?;
    persons_api::export(&engine, project, &person_id).await
}

async fn list_cohorts(State(s): S, caller: Caller, Path(project): Path<String>) -> ApiResult<cohorts::Cohorts> {
    let project = caller.project(&project, Permission::QueryRead)?;
    cohorts::list(&s.pg, project).await.map(Json)
}

async fn create_cohort(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(input): JsonBody<cohorts::CohortInput>,
) -> Result<(StatusCode, Json<cohorts::Cohort>), ApiError> {
    let project = caller.project(&project, Permission::InsightsWrite)?;
    let cohort = cohorts::create(&s.pg, project, caller.user_id(), input).await?;
    Ok((StatusCode::CREATED, Json(cohort)))
}

async fn get_cohort(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<cohorts::Cohort> {
    let project = caller.project(&project, Permission::QueryRead)?;
    cohorts::get(&s.pg, project, path_id(&id, "cohort_id")?).await.map(Json)
}

async fn delete_cohort(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = caller.project(&project, Permission::InsightsWrite)?;
    cohorts::delete(&s.pg, project, path_id(&id, "cohort_id")?).await.map(|()| StatusCode::NO_CONTENT)
}

/// Counts the cohort's persons now (and stores the size).
async fn compute_cohort(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<cohorts::Cohort> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let engine = deletions::engine_for(&s.engine, &s.pg, project).await?;
    cohorts::compute(&engine, &s.pg, project, path_id(&id, "cohort_id")?).await.map(Json)
}

async fn person_deletions_handler(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<deletions::PersonDeletions> {
    let project = caller.project(&project, Permission::QueryRead)?;
    deletions::list(&s.pg, project).await.map(Json)
}

async fn picker(
    s: Arc<AppState>,
    caller: Caller,
    project: String,
    what: Picker,
    req: Request,
) -> ApiResult<explorer::NameCounts> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let params: PickerParams = query_params(req.uri().query())?;
    explorer::picker(&deletions::engine_for(&s.engine, &s.pg, project).await?, project, what, &params, Timestamp::now())
        .await
        .map(Json)
}

async fn event_names(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    req: Request,
) -> ApiResult<explorer::NameCounts> {
    picker(s, caller, project, Picker::EventNames, req).await
}

async fn property_keys(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    req: Request,
) -> ApiResult<explorer::NameCounts> {
    picker(s, caller, project, Picker::PropertyKeys, req).await
}

async fn property_values(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    req: Request,
) -> ApiResult<explorer::NameCounts> {
    picker(s, caller, project, Picker::PropertyValues, req).await
}

async fn list_insights(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    req: Request,
) -> ApiResult<insights::List<insights::Insight>> {
    let project = caller.project(&project, Permission::QueryRead)? as i64;
    let page: Page = query_params(req.uri().query())?;
    insights::list_insights(&s.pg, project, &page).await.map(Json)
}

async fn create_insight(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(input): JsonBody<InsightInput>,
) -> Result<Response, ApiError> {
    let project = caller.project(&project, Permission::InsightsWrite)? as i64;
    let i = insights::create_insight(&s.pg, project, caller.user_id(), &input).await?;
    Ok((StatusCode::CREATED, Json(i)).into_response())
}

async fn get_insight(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<insights::Insight> {
    let project = caller.project(&project, Permission::QueryRead)? as i64;
    insights::get_insight(&s.pg, project, path_id(&id, "insight_id")?).await.map(Json)
}

async fn update_insight(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
    JsonBody(patch): JsonBody<InsightPatch>,
) -> ApiResult<insights::Insight> {
    let project = caller.project(&project, Permission::InsightsWrite)? as i64;
    insights::update_insight(&s.pg, project, path_id(&id, "insight_id")?, &patch).await.map(Json)
}

async fn delete_insight(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = caller.project(&project, Permission::InsightsWrite)? as i64;
    insights::delete_insight(&s.pg, project, path_id(&id, "insight_id")?).await.map(|_| StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FormatParam {
    format: Option<String>,
}

/// A saved insight's result now, as a CSV or JSON download.
async fn insight_export(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let params: FormatParam = query_params(req.uri().query())?;
    let format = crate::export::Format::parse(params.format.as_deref())?;
    let insight = insights::get_insight(&s.pg, project as i64, path_id(&id, "insight_id")?).await?;
    let analysis = crate::jobs::Analysis::from(insights::parse_query(&insight.query)?);
    let kind = analysis.kind().as_str();
    let (result, _) = s.jobs.result_now(&s.engine, &s.pg, project, caller.user_id(), analysis, false).await?;
    Ok(crate::export::result_download(kind, &format!("insight-{}-{kind}", insight.id), &result, format))
}

/// The events the explorer lists for these filters, every one of them, streamed as CSV or JSON
/// lines.
async fn events_export(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let mut params: std::collections::BTreeMap<String, String> = query_params(req.uri().query())?;
    let format = crate::export::Format::parse(params.remove("format").as_deref())?;
    let params: EventsParams = serde_json::to_value(&params)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::invalid("query", e.to_string()))?;
    let engine = deletions::engine_for(&s.engine, &s.pg, project).await?;
    crate::export::events_download(&engine, &s.export, project, &params, format, Timestamp::now()).await
}

// Scheduled event exports: managed by those who may change events (owners and admins): data
// leaving the platform is as sensitive as data changed in it.

async fn list_event_exports(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<crate::event_exports::EventExports> {
    let project = caller.project(&project, Permission::EventsWrite)?;
    crate::event_exports::list(&s.pg, project).await.map(Json)
}

async fn create_event_export(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(input): JsonBody<crate::event_exports::ExportInput>,
) -> Result<Response, ApiError> {
    let project = caller.project(&project, Permission::EventsWrite)?;
    let export = crate::event_exports::create(&s.pg, &s.exports, project, caller.user_id(), input).await?;
    Ok((StatusCode::CREATED, Json(export)).into_response())
}

async fn get_event_export(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<crate::event_exports::EventExport> {
    let project = caller.project(&project, Permission::EventsWrite)?;
    crate::event_exports::get(&s.pg, project, path_id(&id, "export_id")?).await.map(Json)
}

async fn update_event_export(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
    JsonBody(patch): JsonBody<crate::event_exports::ExportPatch>,
) -> ApiResult<crate::event_exports::EventExport> {
    let project = caller.project(&project, Permission::EventsWrite)?;
    crate::event_exports::update(&s.pg, project, path_id(&id, "export_id")?, patch).await.map(Json)
}

async fn delete_event_export(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = caller.project(&project, Permission::EventsWrite)?;
    crate::event_exports::delete(&s.pg, project, path_id(&id, "export_id")?).await.map(|()| StatusCode::NO_CONTENT)
}

async fn event_export_files(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<crate::event_exports::ExportFiles> {
    let project = caller.project(&project, Permission::EventsWrite)?;
    crate::event_exports::files(&s.pg, project, path_id(&id, "export_id")?).await.map(Json)
}

/// Runs a saved insight's query now.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RefreshParam {
    refresh: Option<bool>,
}

/// A saved insight's result: through the query jobs' cache (a result still fresh answers at
/// once, `X-Cairn-Cached: true`; `refresh=true` computes again).
async fn insight_result(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let project = caller.project(&project, Permission::QueryRead)?;
    let params: RefreshParam = query_params(req.uri().query())?;
    let insight = insights::get_insight(&s.pg, project as i64, path_id(&id, "insight_id")?).await?;
    let analysis = crate::jobs::Analysis::from(insights::parse_query(&insight.query)?);
    let (result, cached) = s
        .jobs
        .result_now(&s.engine, &s.pg, project, caller.user_id(), analysis, params.refresh.unwrap_or(false))
        .await?;
    Ok(([("x-cairn-cached", if cached { "true" } else { "false" })], Json(result)).into_response())
}

async fn list_dashboards(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    req: Request,
) -> ApiResult<insights::List<insights::Dashboard>> {
    let project = caller.project(&project, Permission::QueryRead)? as i64;
    let page: Page = query_params(req.uri().query())?;
    insights::list_dashboards(&s.pg, project, &page).await.map(Json)
}

async fn create_dashboard(
    State(s): S,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(input): JsonBody<DashboardInput>,
) -> Result<Response, ApiError> {
    let project = caller.project(&project, Permission::InsightsWrite)? as i64;
    let d = insights::create_dashboard(&s.pg, project, caller.user_id(), &input).await?;
    Ok((StatusCode::CREATED, Json(d)).into_response())
}

async fn get_dashboard(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<insights::Dashboard> {
    let project = caller.project(&project, Permission::QueryRead)? as i64;
    insights::get_dashboard(&s.pg, project, path_id(&id, "dashboard_id")?).await.map(Json)
}

async fn update_dashboard(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
    JsonBody(patch): JsonBody<DashboardPatch>,
) -> ApiResult<insights::Dashboard> {
    let project = caller.project(&project, Permission::InsightsWrite)? as i64;
    insights::update_dashboard(&s.pg, project, path_id(&id, "dashboard_id")?, &patch).await.map(Json)
}

async fn delete_dashboard(
    State(s): S,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = caller.project(&project, Permission::InsightsWrite)? as i64;
    insights::delete_dashboard(&s.pg, project, path_id(&id, "dashboard_id")?).await.map(|_| StatusCode::NO_CONTENT)
}

/// Counts and times every request by its route template.
async fn observe(State(s): S, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(req).await;
    s.metrics.requests.get_or_create(&RouteLabels { route: route.clone(), status: response.status().as_u16() }).inc();
    s.metrics.duration.get_or_create(&RouteOnly { route }).observe(started.elapsed().as_secs_f64());
    response
}

/// The API; requests no route matches go to `fallback` (the gateway to auth).
pub fn router(state: Arc<AppState>, fallback: Router) -> Router {
    let p = "/api/v1/projects/{project_id}";
    Router::new()
        .route(&format!("{p}/query/trends"), post(trends_handler))
        .route(&format!("{p}/query/funnels"), post(funnels_handler))
        .route(&format!("{p}/query/retention"), post(retention_handler))
        .route(&format!("{p}/query/stickiness"), analysis_route(Analysis::Stickiness))
        .route(&format!("{p}/query/lifecycle"), analysis_route(Analysis::Lifecycle))
        .route(&format!("{p}/query/paths"), analysis_route(Analysis::Paths))
        .route(&format!("{p}/query/sessions"), analysis_route(Analysis::Sessions))
        .route(&format!("{p}/query/sql"), post(sql_handler))
        .route(&format!("{p}/query-jobs"), post(create_job_handler))
        .route(&format!("{p}/query-jobs/{{job_id}}"), get(get_job_handler).delete(cancel_job_handler))
        .route(&format!("{p}/events"), get(events_handler))
        .route(
            &format!("{p}/events/{{event_id}}"),
            get(get_event_handler).put(update_event_handler).delete(delete_event_handler),
        )
        .route(&format!("{p}/sessions/{{session_id}}/events"), get(session_events_handler))
        .route(&format!("{p}/sample-data"), post(sample_data_handler))
        .route(&format!("{p}/persons"), get(persons_handler))
        // One segment, two names in the documentation: a person id alone, a distinct id before
        // `/events` (the router takes one name per position).
        .route(&format!("{p}/persons/{{id}}"), get(person_handler).delete(delete_person_handler))
        .route(&format!("{p}/persons/{{id}}/export"), get(export_person_handler))
        .route(&format!("{p}/person-deletions"), get(person_deletions_handler))
        .route(&format!("{p}/cohorts"), get(list_cohorts).post(create_cohort))
        .route(&format!("{p}/cohorts/{{cohort_id}}"), get(get_cohort).delete(delete_cohort))
        .route(&format!("{p}/cohorts/{{cohort_id}}/compute"), post(compute_cohort))
        .route(&format!("{p}/persons/{{id}}/events"), get(person_events_handler))
        .route(&format!("{p}/event-names"), get(event_names))
        .route(&format!("{p}/property-keys"), get(property_keys))
        .route(&format!("{p}/property-values"), get(property_values))
        .route(&format!("{p}/insights"), get(list_insights).post(create_insight))
        .route(&format!("{p}/insights/{{insight_id}}"), get(get_insight).patch(update_insight).delete(delete_insight))
        .route(&format!("{p}/insights/{{insight_id}}/result"), get(insight_result))
        .route(&format!("{p}/insights/{{insight_id}}/export"), get(insight_export))
        .route(&format!("{p}/exports/events"), get(events_export))
        .route(&format!("{p}/event-exports"), get(list_event_exports).post(create_event_export))
        .route(
            &format!("{p}/event-exports/{{export_id}}"),
            get(get_event_export).patch(update_event_export).delete(delete_event_export),
        )
        .route(&format!("{p}/event-exports/{{export_id}}/files"), get(event_export_files))
        .route(&format!("{p}/dashboards"), get(list_dashboards).post(create_dashboard))
        .route(
            &format!("{p}/dashboards/{{dashboard_id}}"),
            get(get_dashboard).patch(update_dashboard).delete(delete_dashboard),
        )
        .route("/api/docs", get(crate::apidocs::page))
        .route("/api/docs/viewer.js", get(crate::apidocs::viewer))
        .route("/api/openapi/{name}", get(crate::apidocs::openapi))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
        .fallback_service(fallback)
}
