// Types mirroring Cairn's OpenAPI documents: schemas/openapi/query.yaml and
// schemas/openapi/auth.yaml in the repository. Names follow the schemas' names.

// ── errors ───────────────────────────────────────────────────────────────────────────────────

/** Every error body: `{"error": code, "message": text, "field"?: path}`. */
export interface ErrorBody {
  error: string;
  message: string;
  field?: string;
}

// ── auth.yaml ────────────────────────────────────────────────────────────────────────────────

export type Role = 'owner' | 'admin' | 'member' | 'viewer';
export const ROLES: Role[] = ['owner', 'admin', 'member', 'viewer'];
export type Permission = 'query:read' | 'insights:write' | 'persons:delete' | 'events:write';

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: 'Bearer';
  expires_in: number;
}

export interface User {
  id: number;
  email: string;
  name: string;
  created_at: string;
}

export interface Organization {
  id: number;
  name: string;
  created_at: string;
  role: Role;
}

export interface Member {
  user_id: number;
  email: string;
  name: string;
  role: Role;
  joined_at: string;
}

export interface Project {
  id: number;
  organization_id: number;
  name: string;
  timezone: string;
  created_at: string;
}

export interface WriteKey {
  id: number;
  project_id: number;
  name: string;
  display_prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  /** Only in the answer that created it. */
  key?: string;
}

export interface PersonalKey {
  id: number;
  name: string;
  display_prefix: string;
  project_ids: number[] | null;
  scopes: Permission[];
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  revoked_at: string | null;
  /** Only in the answer that created it. */
  key?: string;
}

export interface LoginResponse extends TokenPair {
  user: User;
}

export interface SignupRequest {
  email: string;
  password: string;
  name?: string;
  organization_name?: string;
}

export interface SignupResponse extends TokenPair {
  user: User;
  organization: Organization;
  project: Project;
  write_key: WriteKey;
}

export interface Me {
  user: User;
  organizations: Organization[];
  projects: Project[];
}

export interface PersonalKeyInput {
  name: string;
  project_ids?: number[] | null;
  scopes: Permission[];
  expires_in_days?: number;
}

// ── query.yaml: shared pieces ────────────────────────────────────────────────────────────────

/** `-7d`, `-24h`, `2026-11-01`, or an RFC 3339 timestamp. */
export type DatePoint = string;

export type Interval = 'hour' | 'day' | 'week' | 'month';

export type MathInput =
  | 'total'
  | 'dau'
  | 'unique_users'
  | 'unique_sessions'
  | 'sum'
  | 'avg'
  | 'min'
  | 'max'
  | 'median'
  | 'p90'
  | 'p95'
  | 'p99'
  | 'per_user_avg'
  | 'per_user_min'
  | 'per_user_max'
  | 'per_user_median'
  | 'per_user_p90'
  | 'per_user_p95'
  | 'per_user_p99';

/** A series' math as answered (`dau` comes back as `unique_users`). */
export type Math = Exclude<MathInput, 'dau'>;

export type FilterOperator =
  | 'exact'
  | 'equals'
  | 'eq'
  | 'is_not'
  | 'not_equals'
  | 'neq'
  | 'contains'
  | 'icontains'
  | 'not_contains'
  | 'not_icontains'
  | 'gt'
  | 'gte'
  | 'lt'
  | 'lte'
  | 'is_set'
  | 'is_not_set';

export type FilterScalar = string | number | boolean;

/** Whose property: the event's, or its person's; `cohort`: {key: 'id', value: <cohort id>}. */
export type PropertyKind = 'event' | 'person' | 'cohort' | 'session';

export interface PropertyFilter {
  key: string;
  operator?: FilterOperator;
  value?: FilterScalar | FilterScalar[] | null;
  type?: PropertyKind;
}

/** A property's values (type event or person), or cohorts (type cohort: a group per cohort id). */
export interface Breakdown {
  property?: string;
  type?: PropertyKind;
  limit?: number | null;
  cohorts?: number[];
}

// ── trends ───────────────────────────────────────────────────────────────────────────────────

export interface Series {
  event?: string | null;
  math?: MathInput;
  math_property?: string | null;
  filters?: PropertyFilter[];
  name?: string | null;
}

export interface TrendsRequest {
  series: Series[];
  date_from?: DatePoint | null;
  date_to?: DatePoint | null;
  interval?: Interval;
  timezone?: string | null;
  filters?: PropertyFilter[];
  breakdown?: Breakdown | null;
  formula?: string | null;
}

export interface TrendResult {
  series: number;
  label: string;
  name: string;
  math: Math;
  breakdown_value: string | null;
  data: number[];
  /** The sum of data. */
  total: number;
  /** The value over the whole range (unique users over the range, not a sum of daily uniques). */
  aggregated_value: number;
}

export interface FormulaResult {
  formula: string;
  breakdown_value: string | null;
  data: (number | null)[];
}

export interface TrendsResponse {
  interval: Interval;
  timezone: string;
  date_from: string;
  date_to: string;
  labels: string[];
  results: TrendResult[];
  formula?: FormulaResult[];
}

// ── funnels ──────────────────────────────────────────────────────────────────────────────────

export interface FunnelStep {
  event?: string | null;
  filters?: PropertyFilter[];
  name?: string | null;
}

export type FunnelOrder = 'ordered' | 'strict';
export type WindowUnit = 'minute' | 'hour' | 'day' | 'week';

export interface ConversionWindow {
  value: number;
  unit: WindowUnit;
}

export interface FunnelsRequest {
  steps: FunnelStep[];
  date_from?: DatePoint | null;
  date_to?: DatePoint | null;
  timezone?: string | null;
  filters?: PropertyFilter[];
  conversion_window?: ConversionWindow | null;
  order?: FunnelOrder;
  breakdown?: Breakdown | null;
}

export interface StepResult {
  index: number;
  name: string;
  count: number;
  conversion_rate: number;
  step_conversion_rate: number;
  median_time_to_convert_seconds: number | null;
  average_time_to_convert_seconds: number | null;
}

export interface BreakdownSteps {
  breakdown_value: string;
  steps: StepResult[];
}

export interface FunnelsResponse {
  timezone: string;
  date_from: string;
  date_to: string;
  order: FunnelOrder;
  conversion_window_seconds: number;
  steps: StepResult[];
  breakdown?: BreakdownSteps[];
}

// ── retention ────────────────────────────────────────────────────────────────────────────────

export interface EventSpec {
  event?: string | null;
  filters?: PropertyFilter[];
}

export type RetentionType = 'first_time' | 'recurring';
export type Period = 'day' | 'week' | 'month';

export interface RetentionRequest {
  target_event: EventSpec;
  returning_event?: EventSpec | null;
  retention_type?: RetentionType;
  period?: Period;
  periods?: number | null;
  date_to?: DatePoint | null;
  timezone?: string | null;
  filters?: PropertyFilter[];
}

export interface Cohort {
  date: string;
  size: number;
  values: number[];
}

export interface RetentionResponse {
  timezone: string;
  period: Period;
  retention_type: RetentionType;
  cohorts: Cohort[];
}

// ── stickiness, lifecycle, paths, sessions ───────────────────────────────────────────────────

export interface StickinessSeries {
  event?: string | null;
  filters?: PropertyFilter[];
  name?: string | null;
}

export interface StickinessRequest {
  series: StickinessSeries[];
  date_from?: DatePoint | null;
  date_to?: DatePoint | null;
  interval?: Interval;
  timezone?: string | null;
  filters?: PropertyFilter[];
}

export interface StickinessResponse {
  interval: Interval;
  timezone: string;
  date_from: string;
  date_to: string;
  periods: number;
  results: { series: number; label: string; data: number[]; persons: number }[];
}

export interface LifecycleRequest {
  event: EventSpec;
  date_from?: DatePoint | null;
  date_to?: DatePoint | null;
  interval?: Interval;
  timezone?: string | null;
  filters?: PropertyFilter[];
}

export interface LifecycleResponse {
  interval: Interval;
  timezone: string;
  labels: string[];
  new: number[];
  returning: number[];
  resurrecting: number[];
  dormant: number[];
}

export type PathType = 'event' | 'pathname';

export interface PathsRequest {
  path_type?: PathType;
  start_point?: string | null;
  end_point?: string | null;
  depth?: number | null;
  min_count?: number | null;
  max_links?: number | null;
  exclude?: string[];
  date_from?: DatePoint | null;
  date_to?: DatePoint | null;
  timezone?: string | null;
  filters?: PropertyFilter[];
}

export interface PathNode {
  step: number;
  name: string;
  persons: number;
  dropped_off: number;
}

export interface PathLink {
  step: number;
  source: string;
  target: string;
  persons: number;
}

export interface PathsResponse {
  path_type: PathType;
  timezone: string;
  date_from: string;
  date_to: string;
  persons: number;
  nodes: PathNode[];
  links: PathLink[];
}

export interface SessionsRequest {
  date_from?: DatePoint | null;
  date_to?: DatePoint | null;
  interval?: Interval;
  timezone?: string | null;
  filters?: PropertyFilter[];
  min_duration_seconds?: number | null;
  max_duration_seconds?: number | null;
  entry_pathname?: string | null;
  breakdown?: string | null;
  limit?: number | null;
}

export interface SessionStats {
  sessions: number;
  median_duration_seconds: number;
  p90_duration_seconds: number;
  avg_duration_seconds: number;
  avg_events_per_session: number;
  bounce_rate: number;
}

export interface SessionsResponse {
  interval: Interval;
  timezone: string;
  date_from: string;
  date_to: string;
  labels: string[];
  series: SessionStats[];
  totals: SessionStats;
  entry_pages: { pathname: string; sessions: number }[];
  exit_pages: { pathname: string; sessions: number }[];
  breakdown?: (SessionStats & { value: string })[];
}

// ── SQL ──────────────────────────────────────────────────────────────────────────────────────

export interface SqlRequest {
  query: string;
  limit?: number;
}

export interface SqlResponse {
  columns: { name: string; type: string }[];
  rows: unknown[][];
  truncated: boolean;
  statement: string;
}

// ── explorer ─────────────────────────────────────────────────────────────────────────────────

export interface EventItem {
  uuid: string;
  event: string;
  distinct_id: string;
  properties: Record<string, unknown>;
  timestamp: string;
}

export interface EventsPage {
  results: EventItem[];
  next_cursor: string | null;
}

export interface NameCount {
  name: string;
  count: number;
}

export interface NameCounts {
  results: NameCount[];
}

export interface EventsListParams {
  event?: string;
  distinct_id?: string;
  properties?: PropertyFilter[];
  date_from?: DatePoint;
  date_to?: DatePoint;
  limit?: number;
  cursor?: string;
}

// ── insights and dashboards ──────────────────────────────────────────────────────────────────

export type TrendsQuery = TrendsRequest & { kind: 'trends' };
export type FunnelsQuery = FunnelsRequest & { kind: 'funnels' };
export type RetentionQuery = RetentionRequest & { kind: 'retention' };
export type StickinessQuery = StickinessRequest & { kind: 'stickiness' };
export type LifecycleQuery = LifecycleRequest & { kind: 'lifecycle' };
export type PathsQuery = PathsRequest & { kind: 'paths' };
export type SessionsQuery = SessionsRequest & { kind: 'sessions' };
export type InsightQuery =
  | TrendsQuery
  | FunnelsQuery
  | RetentionQuery
  | StickinessQuery
  | LifecycleQuery
  | PathsQuery
  | SessionsQuery;
export type InsightKind = InsightQuery['kind'];

export interface InsightInput {
  name: string;
  description?: string | null;
  query: InsightQuery;
  display?: Record<string, unknown> | null;
}

export type InsightPatch = Partial<{
  name: string | null;
  description: string | null;
  query: InsightQuery | null;
  display: Record<string, unknown> | null;
}>;

export interface Insight {
  id: number;
  project_id: number;
  name: string;
  description: string;
  query: InsightQuery;
  display: Record<string, unknown>;
  created_by: number | null;
  created_at: string;
  updated_at: string;
}

export interface InsightList {
  results: Insight[];
  total: number;
}

export type InsightResult =
  | TrendsResponse
  | FunnelsResponse
  | RetentionResponse
  | StickinessResponse
  | LifecycleResponse
  | PathsResponse
  | SessionsResponse;

/**
 * A tile's grid placement. The API keeps `layout` as given; the dashboard writes
 * `{x, y, w, h}` on a 12-column grid (y and h in rows).
 */
export interface TileLayout {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface TileInput {
  insight_id: number;
  layout?: Partial<TileLayout> | Record<string, unknown> | null;
}

export interface DashboardInput {
  name: string;
  description?: string | null;
  tiles?: TileInput[];
}

export type DashboardPatch = Partial<{
  name: string | null;
  description: string | null;
  tiles: TileInput[] | null;
}>;

export interface Tile {
  insight: Insight;
  layout: Partial<TileLayout> & Record<string, unknown>;
  position: number;
}

export interface Dashboard {
  id: number;
  project_id: number;
  name: string;
  description: string;
  created_by: number | null;
  created_at: string;
  updated_at: string;
  tiles: Tile[];
}

export interface DashboardList {
  results: Dashboard[];
  total: number;
}

// ── persons ──────────────────────────────────────────────────────────────────────────────────

/** A person: distinct ids joined by $identify/$create_alias, with properties from $set and co. */
export interface Person {
  /** A 64-bit number as a decimal string. */
  id: string;
  distinct_ids: string[];
  properties: Record<string, unknown>;
  first_seen: string;
  last_seen: string;
}

export interface PersonsPage {
  results: Person[];
  next_offset: number | null;
}

export interface PersonsListParams {
  search?: string;
  distinct_id?: string;
  limit?: number;
  offset?: number;
}

export interface PersonDetail extends Person {
  event_count: number;
  recent_events: EventItem[];
}

/** A person deletion job (GDPR/CCPA): pending (left out of every answer) until its rows are removed. */
export interface PersonDeletion {
  id: number;
  person_id: string;
  distinct_ids: string[];
  status: 'pending' | 'done';
  requested_by: number | null;
  requested_at: string;
  finished_at: string | null;
  attempts: number;
  last_error: string | null;
}

/** "Did `event` at least `min_count` times in the last `days` days." */
export interface Behaviour {
  event: string;
  min_count?: number;
  days: number;
}

/** A saved cohort (schemas/openapi/query.yaml: SavedCohort). */
export interface SavedCohort {
  id: number;
  name: string;
  kind: 'dynamic' | 'static';
  properties: PropertyFilter[];
  behaviour: Behaviour[];
  distinct_id_count: number;
  size: number | null;
  size_computed_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface CohortInput {
  name: string;
  properties?: PropertyFilter[];
  behaviour?: Behaviour[];
  distinct_ids?: string[];
}

/** `POST …/sample-data`: what was loaded into an empty project. */
export interface SampleData {
  events: number;
  visitors: number;
  signed_up: number;
  buyers: number;
  insight_ids: number[];
  cohort_ids: number[];
  dashboard_id: number;
}


/** The analyses that run as jobs (POST /query-jobs). */
export type QueryJobKind = 'trends' | 'funnels' | 'retention' | 'stickiness' | 'lifecycle' | 'paths' | 'sessions';

/** An analysis run as a job (schemas/openapi/query.yaml QueryJob). */
export interface QueryJob<R = unknown> {
  id: string;
  kind: QueryJobKind;
  status: 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
  progress: { rows_read: number; total_rows: number; fraction: number | null };
  cached: boolean;
  cancel_requested: boolean;
  query: unknown;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  result: R | null;
  error: ({ status: number } & ErrorBody) | null;
}

// ── scheduled event exports ──────────────────────────────────────────────────────────────────

export type ExportDestination = { kind: 'local'; path?: string } | { kind: 's3'; bucket: string; prefix?: string };

export interface EventExportInput {
  name: string;
  destination: ExportDestination;
  format?: 'jsonl' | 'csv';
  interval_seconds?: number;
  start_at?: string | null;
}

export interface EventExport {
  id: number;
  project_id: number;
  name: string;
  destination: ExportDestination;
  format: 'jsonl' | 'csv';
  interval_seconds: number;
  exported_until: string;
  paused: boolean;
  files_written: number;
  events_exported: number;
  last_run_at: string | null;
  last_error: string | null;
  created_at: string;
}
