//! Saved insights (a query definition and display settings) and dashboards (insights placed
//! in a grid), per project, in PostgreSQL. Every statement names the project it is scoped to.

use cairn_common::http::ApiError;
use cairn_postgres::api_error as db_error;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::funnels::FunnelsRequest;
use crate::retention::RetentionRequest;
use crate::trends::TrendsRequest;

/// An insight's query: one of the analyses, tagged by `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InsightQuery {
    Trends(TrendsRequest),
    Funnels(FunnelsRequest),
    Retention(RetentionRequest),
    Stickiness(crate::stickiness::StickinessRequest),
    Lifecycle(crate::lifecycle::LifecycleRequest),
    Paths(crate::paths::PathsRequest),
    Sessions(crate::sessions::SessionsRequest),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub query: Value,
    #[serde(default)]
    pub display: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub query: Option<Value>,
    pub display: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, sqlx::FromRow)]
pub struct Insight {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub description: String,
    pub query: Value,
    pub display: Value,
    pub created_by: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileInput {
    pub insight_id: i64,
    #[serde(default)]
    pub layout: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tiles: Vec<TileInput>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Replaces every tile when present.
    pub tiles: Option<Vec<TileInput>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tile {
    pub insight: Insight,
    pub layout: Value,
    pub position: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, sqlx::FromRow)]
pub struct Dashboard {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub description: String,
    pub created_by: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[sqlx(skip)]
    #[serde(default)]
    pub tiles: Vec<Tile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct List<T> {
    pub results: Vec<T>,
    pub total: i64,
}

/// Pagination of lists.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Page {
    fn bounds(&self) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::invalid("limit", "between 1 and 500"));
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::invalid("offset", "0 or more"));
        }
        Ok((limit, offset))
    }
}

fn check_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid(field, "1 to 200 characters"));
    }
    Ok(name.to_string())
}

fn check_description(d: Option<&str>) -> Result<String, ApiError> {
    let d = d.unwrap_or_default();
    if d.chars().count() > 4000 {
        return Err(ApiError::invalid("description", "at most 4000 characters"));
    }
    Ok(d.to_string())
}

/// Parses a stored or submitted query definition, naming the field at fault (`query.series[0].math`).
pub fn parse_query(query: &Value) -> Result<InsightQuery, ApiError> {
    let text = serde_json::to_vec(query).map_err(ApiError::internal)?;
    cairn_common::http::parse_json::<InsightQuery>(&text).map_err(|e| {
        let field = match e.field.as_deref() {
            None | Some("body") => "query".to_string(),
            Some(f) => format!("query.{f}"),
        };
        ApiError::invalid(field, e.message)
    })
}

fn check_display(display: Option<&Value>) -> Result<Value, ApiError> {
    match display {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(ApiError::invalid("display", "expected an object")),
    }
}

/// One page of a project's rows of `table` (a constant of this module), newest first, and their
/// total.
async fn list_scoped<T>(
    pg: &PgPool,
    table: &str,
    columns: &str,
    project_id: i64,
    page: &Page,
) -> Result<List<T>, ApiError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let (limit, offset) = page.bounds()?;
    let results = sqlx::query_as::<_, T>(&format!(
        "SELECT {columns} FROM {table} WHERE project_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(project_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pg)
    .await
    .map_err(db_error)?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE project_id = $1"))
        .bind(project_id)
        .fetch_one(pg)
        .await
        .map_err(db_error)?;
    Ok(List { results, total })
}

/// Deletes row `id` of `table` (a constant of this module) if it belongs to the project; 404
/// naming `what` otherwise.
async fn delete_scoped(pg: &PgPool, table: &str, what: &str, project_id: i64, id: i64) -> Result<(), ApiError> {
    let done = sqlx::query(&format!("DELETE FROM {table} WHERE project_id = $1 AND id = $2"))
        .bind(project_id)
        .bind(id)
        .execute(pg)
        .await
        .map_err(db_error)?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(what));
    }
    Ok(())
}

const INSIGHT_COLUMNS: &str = "id, project_id, name, description, query, display, created_by, created_at, updated_at";

pub async fn list_insights(pg: &PgPool, project_id: i64, page: &Page) -> Result<List<Insight>, ApiError> {
    list_scoped(pg, "insights", INSIGHT_COLUMNS, project_id, page).await
}

pub async fn create_insight(
    pg: &PgPool,
    project_id: i64,
    user_id: i64,
    input: &InsightInput,
) -> Result<Insight, ApiError> {
    let name = check_name("name", &input.name)?;
    let description = check_description(input.description.as_deref())?;
    parse_query(&input.query)?;
    let display = check_display(input.display.as_ref())?;
    sqlx::query_as::<_, Insight>(&format!(
        "INSERT INTO insights (project_id, name, description, query, display, created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {INSIGHT_COLUMNS}"
    ))
    .bind(project_id)
    .bind(name)
    .bind(description)
    .bind(&input.query)
    .bind(display)
    .bind(user_id)
    .fetch_one(pg)
    .await
    .map_err(db_error)
}

pub async fn get_insight(pg: &PgPool, project_id: i64, id: i64) -> Result<Insight, ApiError> {
    sqlx::query_as::<_, Insight>(&format!("SELECT {INSIGHT_COLUMNS} FROM insights WHERE project_id = $1 AND id = $2"))
        .bind(project_id)
        .bind(id)
        .fetch_optional(pg)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::not_found("insight"))
}

pub async fn update_insight(pg: &PgPool, project_id: i64, id: i64, patch: &InsightPatch) -> Result<Insight, ApiError> {
    let name = patch.name.as_deref().map(|n| check_name("name", n)).transpose()?;
    let description = patch.description.as_deref().map(|d| check_description(Some(d))).transpose()?;
    if let Some(q) = &patch.query {
        parse_query(q)?;
    }
    let display = patch.display.as_ref().map(|d| check_display(Some(d))).transpose()?;
    sqlx::query_as::<_, Insight>(&format!(
        "UPDATE insights SET name = COALESCE($3, name), description = COALESCE($4, description), \
         query = COALESCE($5, query), display = COALESCE($6, display), updated_at = now() \
         WHERE project_id = $1 AND id = $2 RETURNING {INSIGHT_COLUMNS}"
    ))
    .bind(project_id)
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(&patch.query)
    .bind(display)
    .fetch_optional(pg)
    .await
    .map_err(db_error)?
    .ok_or_else(|| ApiError::not_found("insight"))
}

pub async fn delete_insight(pg: &PgPool, project_id: i64, id: i64) -> Result<(), ApiError> {
    delete_scoped(pg, "insights", "insight", project_id, id).await
}

const DASHBOARD_COLUMNS: &str = "id, project_id, name, description, created_by, created_at, updated_at";

pub async fn list_dashboards(pg: &PgPool, project_id: i64, page: &Page) -> Result<List<Dashboard>, ApiError> {
    list_scoped(pg, "dashboards", DASHBOARD_COLUMNS, project_id, page).await
}

/// Replaces a dashboard's tiles within `tx`; every insight must belong to the project.
async fn set_tiles(
    tx: &mut sqlx::PgConnection,
    project_id: i64,
    dashboard_id: i64,
    tiles: &[TileInput],
) -> Result<(), ApiError> {
    if tiles.len() > 100 {
        return Err(ApiError::invalid("tiles", "at most 100 tiles"));
    }
    let ids: Vec<i64> = tiles.iter().map(|t| t.insight_id).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != ids.len() {
        return Err(ApiError::invalid("tiles", "an insight may appear once per dashboard"));
    }
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM insights WHERE project_id = $1 AND id = ANY($2)")
        .bind(project_id)
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    if found != ids.len() as i64 {
        return Err(ApiError::invalid("tiles", "every tile must name an insight of this project"));
    }
    sqlx::query("DELETE FROM dashboard_tiles WHERE dashboard_id = $1")
        .bind(dashboard_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    for (i, t) in tiles.iter().enumerate() {
        let layout = match &t.layout {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err(ApiError::invalid(format!("tiles[{i}].layout"), "expected an object")),
        };
        sqlx::query("INSERT INTO dashboard_tiles (dashboard_id, insight_id, layout, position) VALUES ($1, $2, $3, $4)")
            .bind(dashboard_id)
            .bind(t.insight_id)
            .bind(layout)
            .bind(i as i32)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

pub async fn create_dashboard(
    pg: &PgPool,
    project_id: i64,
    user_id: i64,
    input: &DashboardInput,
) -> Result<Dashboard, ApiError> {
    let name = check_name("name", &input.name)?;
    let description = check_description(input.description.as_deref())?;
    let mut tx = pg.begin().await.map_err(db_error)?;
    let d = sqlx::query_as::<_, Dashboard>(&format!(
        "INSERT INTO dashboards (project_id, name, description, created_by) VALUES ($1, $2, $3, $4) RETURNING {DASHBOARD_COLUMNS}"
    ))
    .bind(project_id)
    .bind(name)
    .bind(description)
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    set_tiles(&mut tx, project_id, d.id, &input.tiles).await?;
    tx.commit().await.map_err(db_error)?;
    get_dashboard(pg, project_id, d.id).await
}

#[derive(sqlx::FromRow)]
struct TileRow {
    layout: Value,
    position: i32,
    #[sqlx(flatten)]
    insight: Insight,
}

pub async fn get_dashboard(pg: &PgPool, project_id: i64, id: i64) -> Result<Dashboard, ApiError> {
    let mut d = sqlx::query_as::<_, Dashboard>(&format!(
        "SELECT {DASHBOARD_COLUMNS} FROM dashboards WHERE project_id = $1 AND id = $2"
    ))
    .bind(project_id)
    .bind(id)
    .fetch_optional(pg)
    .await
    .map_err(db_error)?
    .ok_or_else(|| ApiError::not_found("dashboard"))?;
    let tiles = sqlx::query_as::<_, TileRow>(
        "SELECT t.layout, t.position, i.id, i.project_id, i.name, i.description, i.query, i.display, i.created_by, i.created_at, i.updated_at \
         FROM dashboard_tiles t JOIN insights i ON i.id = t.insight_id \
         WHERE t.dashboard_id = $1 AND i.project_id = $2 ORDER BY t.position",
    )
    .bind(id)
    .bind(project_id)
    .fetch_all(pg)
    .await
    .map_err(db_error)?;
    d.tiles = tiles.into_iter().map(|t| Tile { insight: t.insight, layout: t.layout, position: t.position }).collect();
    Ok(d)
}

pub async fn update_dashboard(
    pg: &PgPool,
    project_id: i64,
    id: i64,
    patch: &DashboardPatch,
) -> Result<Dashboard, ApiError> {
    let name = patch.name.as_deref().map(|n| check_name("name", n)).transpose()?;
    let description = patch.description.as_deref().map(|d| check_description(Some(d))).transpose()?;
    let mut tx = pg.begin().await.map_err(db_error)?;
    let updated = sqlx::query(
        "UPDATE dashboards SET name = COALESCE($3, name), description = COALESCE($4, description), updated_at = now() \
         WHERE project_id = $1 AND id = $2",
    )
    .bind(project_id)
    .bind(id)
    .bind(name)
    .bind(description)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    if updated.rows_affected() == 0 {
        return Err(ApiError::not_found("dashboard"));
    }
    if let Some(tiles) = &patch.tiles {
        set_tiles(&mut tx, project_id, id, tiles).await?;
    }
    tx.commit().await.map_err(db_error)?;
    get_dashboard(pg, project_id, id).await
}

pub async fn delete_dashboard(pg: &PgPool, project_id: i64, id: i64) -> Result<(), ApiError> {
    delete_scoped(pg, "dashboards", "dashboard", project_id, id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_definitions_are_checked_with_the_field_named() {
        assert!(matches!(
            parse_query(&json!({"kind": "trends", "series": [{"event": "a"}]})).unwrap(),
            InsightQuery::Trends(_)
        ));
        assert!(matches!(
            parse_query(&json!({"kind": "funnels", "steps": [{"event": "a"}, {"event": "b"}]})).unwrap(),
            InsightQuery::Funnels(_)
        ));
        let e = parse_query(&json!({"kind": "pie"})).unwrap_err();
        assert!(e.field.as_deref().unwrap_or("").starts_with("query"), "{e}");
        let e = parse_query(&json!({"kind": "trends", "series": [{"event": "a", "math": "mode"}]})).unwrap_err();
        assert!(e.message.contains("mode"), "{e}");
    }
}
