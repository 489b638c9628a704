// The analyses' queries as the editors hold them: defaults, and sanitising of a query read from
// a URL or a saved insight (keep the known fields of the right types, drop the rest, since the
// API refuses unknown fields). The shapes are the API's request bodies, so what the URL holds is
// exactly what is sent and what is saved.

import type {
  Breakdown,
  ConversionWindow,
  EventSpec,
  FilterOperator,
  FunnelStep,
  FunnelsRequest,
  Interval,
  MathInput,
  PropertyFilter,
  LifecycleRequest,
  PathsRequest,
  RetentionRequest,
  Series,
  SessionsRequest,
  StickinessRequest,
  StickinessSeries,
  TrendsRequest,
} from './api/types';

export const MATHS: { value: MathInput; label: string; property?: true }[] = [
  { value: 'total', label: 'Total count' },
  { value: 'unique_users', label: 'Unique users' },
  { value: 'unique_sessions', label: 'Unique sessions' },
  { value: 'sum', label: 'Sum of property', property: true },
  { value: 'avg', label: 'Average of property', property: true },
  { value: 'min', label: 'Minimum of property', property: true },
  { value: 'max', label: 'Maximum of property', property: true },
  { value: 'median', label: 'Median of property', property: true },
  { value: 'p90', label: '90th percentile of property', property: true },
  { value: 'p95', label: '95th percentile of property', property: true },
  { value: 'p99', label: '99th percentile of property', property: true },
  { value: 'per_user_avg', label: 'Events per user: average' },
  { value: 'per_user_min', label: 'Events per user: minimum' },
  { value: 'per_user_max', label: 'Events per user: maximum' },
  { value: 'per_user_median', label: 'Events per user: median' },
  { value: 'per_user_p90', label: 'Events per user: 90th percentile' },
  { value: 'per_user_p95', label: 'Events per user: 95th percentile' },
  { value: 'per_user_p99', label: 'Events per user: 99th percentile' },
];
const MATH_VALUES = new Set<string>([...MATHS.map((m) => m.value), 'dau']);

export const mathNeedsProperty = (m: MathInput | undefined) => MATHS.some((x) => x.value === m && x.property);
export const mathLabel = (m: string) => MATHS.find((x) => x.value === m)?.label ?? (m === 'dau' ? 'Unique users' : m);

export const OPERATORS: { value: FilterOperator; label: string }[] = [
  { value: 'exact', label: 'equals' },
  { value: 'is_not', label: 'does not equal' },
  { value: 'icontains', label: 'contains' },
  { value: 'not_icontains', label: 'does not contain' },
  { value: 'gt', label: '>' },
  { value: 'gte', label: '≥' },
  { value: 'lt', label: '<' },
  { value: 'lte', label: '≤' },
  { value: 'is_set', label: 'is set' },
  { value: 'is_not_set', label: 'is not set' },
];
const OPERATOR_VALUES = new Set<string>([
  'exact', 'equals', 'eq', 'is_not', 'not_equals', 'neq', 'contains', 'icontains', 'not_contains',
  'not_icontains', 'gt', 'gte', 'lt', 'lte', 'is_set', 'is_not_set',
]);
export const operatorTakesValue = (op: FilterOperator | undefined) => op !== 'is_set' && op !== 'is_not_set';
export const operatorIsNumeric = (op: FilterOperator | undefined) => op === 'gt' || op === 'gte' || op === 'lt' || op === 'lte';

export const INTERVALS: Interval[] = ['hour', 'day', 'week', 'month'];

// ── defaults ─────────────────────────────────────────────────────────────────────────────────

export function defaultTrends(timezone?: string): TrendsRequest {
  return { series: [{ event: '$pageview', math: 'total' }], date_from: '-7d', interval: 'day', ...(tz(timezone)) };
}

export function defaultFunnels(timezone?: string): FunnelsRequest {
  return {
    steps: [{ event: null }, { event: null }],
    date_from: '-30d',
    conversion_window: { value: 14, unit: 'day' },
    order: 'ordered',
    ...(tz(timezone)),
  };
}

export function defaultRetention(timezone?: string): RetentionRequest {
  return { target_event: { event: null }, returning_event: null, retention_type: 'recurring', period: 'day', periods: 7, ...(tz(timezone)) };
}

export function defaultStickiness(timezone?: string): StickinessRequest {
  return { series: [{ event: '$pageview' }], date_from: '-30d', interval: 'day', ...(tz(timezone)) };
}

export function defaultLifecycle(timezone?: string): LifecycleRequest {
  return { event: { event: '$pageview' }, date_from: '-30d', interval: 'day', ...(tz(timezone)) };
}

export function defaultPaths(timezone?: string): PathsRequest {
  return { path_type: 'pathname', date_from: '-7d', depth: 5, min_count: 1, ...(tz(timezone)) };
}

export function defaultSessions(timezone?: string): SessionsRequest {
  return { date_from: '-7d', interval: 'day', ...(tz(timezone)) };
}

function tz(timezone?: string): { timezone?: string } {
  return timezone && timezone !== 'UTC' ? { timezone } : {};
}

// ── sanitising ───────────────────────────────────────────────────────────────────────────────

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);
const str = (x: unknown): string | undefined => (typeof x === 'string' ? x : undefined);
const strOrNull = (x: unknown): string | null | undefined => (x === null ? null : str(x));
const isScalar = (x: unknown): x is string | number | boolean =>
  typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x));

function put(o: object, k: string, v: unknown) {
  if (v !== undefined) (o as Obj)[k] = v;
}

export function sanitizeFilters(x: unknown): PropertyFilter[] | undefined {
  if (!Array.isArray(x)) return undefined;
  const out: PropertyFilter[] = [];
  for (const f of x) {
    if (!isObj(f) || typeof f.key !== 'string') continue;
    const pf: PropertyFilter = { key: f.key };
    if (typeof f.operator === 'string' && OPERATOR_VALUES.has(f.operator)) pf.operator = f.operator as FilterOperator;
    if (isScalar(f.value) || f.value === null) pf.value = f.value;
    else if (Array.isArray(f.value)) pf.value = f.value.filter(isScalar);
    if (f.type === 'person' || f.type === 'event' || f.type === 'cohort') pf.type = f.type;
    out.push(pf);
  }
  return out;
}

function sanitizeBreakdown(x: unknown): Breakdown | null | undefined {
  if (x === null) return null;
  if (isObj(x) && x.type === 'cohort' && Array.isArray(x.cohorts)) {
    const cohorts = x.cohorts.filter((c): c is number => typeof c === 'number' && Number.isInteger(c) && c > 0);
    return cohorts.length ? { type: 'cohort', cohorts } : undefined;
  }
  if (!isObj(x) || typeof x.property !== 'string' || !x.property) return undefined;
  const b: Breakdown = { property: x.property };
  if (x.type === 'person' || x.type === 'event') b.type = x.type;
  if (typeof x.limit === 'number' && Number.isInteger(x.limit)) b.limit = x.limit;
  return b;
}

function sanitizeSeries(x: unknown): Series | null {
  if (!isObj(x)) return null;
  const s: Series = {};
  put(s, 'event', strOrNull(x.event));
  if (typeof x.math === 'string' && MATH_VALUES.has(x.math)) s.math = x.math as MathInput;
  put(s, 'math_property', strOrNull(x.math_property));
  put(s, 'filters', sanitizeFilters(x.filters));
  put(s, 'name', strOrNull(x.name));
  return s;
}

function common(x: Obj, out: object) {
  put(out, 'date_from', strOrNull(x.date_from));
  put(out, 'date_to', strOrNull(x.date_to));
  put(out, 'timezone', strOrNull(x.timezone));
  put(out, 'filters', sanitizeFilters(x.filters));
}

/** A trends query from untrusted JSON, or null when it has no usable series. */
export function sanitizeTrends(x: unknown): TrendsRequest | null {
  if (!isObj(x) || !Array.isArray(x.series)) return null;
  const series = x.series.map(sanitizeSeries).filter((s): s is Series => s !== null).slice(0, 10);
  if (series.length === 0) return null;
  const q: TrendsRequest = { series };
  common(x, q);
  if (typeof x.interval === 'string' && (INTERVALS as string[]).includes(x.interval)) q.interval = x.interval as Interval;
  put(q, 'breakdown', sanitizeBreakdown(x.breakdown));
  put(q, 'formula', strOrNull(x.formula));
  return q;
}

function sanitizeStep(x: unknown): FunnelStep | null {
  if (!isObj(x)) return null;
  const s: FunnelStep = {};
  put(s, 'event', strOrNull(x.event));
  put(s, 'filters', sanitizeFilters(x.filters));
  put(s, 'name', strOrNull(x.name));
  return s;
}

export function sanitizeFunnels(x: unknown): FunnelsRequest | null {
  if (!isObj(x) || !Array.isArray(x.steps)) return null;
  const steps = x.steps.map(sanitizeStep).filter((s): s is FunnelStep => s !== null).slice(0, 10);
  if (steps.length < 2) return null;
  const q: FunnelsRequest = { steps };
  common(x, q);
  const w = x.conversion_window;
  if (w === null) q.conversion_window = null;
  else if (isObj(w) && typeof w.value === 'number' && ['minute', 'hour', 'day', 'week'].includes(String(w.unit))) {
    q.conversion_window = { value: w.value, unit: w.unit as ConversionWindow['unit'] };
  }
  if (x.order === 'ordered' || x.order === 'strict') q.order = x.order;
  put(q, 'breakdown', sanitizeBreakdown(x.breakdown));
  return q;
}

function sanitizeSpec(x: unknown): EventSpec | null | undefined {
  if (x === null) return null;
  if (!isObj(x)) return undefined;
  const s: EventSpec = {};
  put(s, 'event', strOrNull(x.event));
  put(s, 'filters', sanitizeFilters(x.filters));
  return s;
}

export function sanitizeRetention(x: unknown): RetentionRequest | null {
  if (!isObj(x)) return null;
  const target = sanitizeSpec(x.target_event);
  if (!target) return null;
  const q: RetentionRequest = { target_event: target };
  put(q, 'returning_event', sanitizeSpec(x.returning_event));
  if (x.retention_type === 'first_time' || x.retention_type === 'recurring') q.retention_type = x.retention_type;
  if (x.period === 'day' || x.period === 'week' || x.period === 'month') q.period = x.period;
  if (typeof x.periods === 'number' && Number.isInteger(x.periods)) q.periods = x.periods;
  put(q, 'date_to', strOrNull(x.date_to));
  put(q, 'timezone', strOrNull(x.timezone));
  put(q, 'filters', sanitizeFilters(x.filters));
  return q;
}

const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
const numOrNull = (x: unknown): number | null | undefined => (x === null ? null : num(x));

function interval(x: Obj, out: { interval?: Interval }) {
  if (typeof x.interval === 'string' && (INTERVALS as string[]).includes(x.interval)) out.interval = x.interval as Interval;
}

export function sanitizeStickiness(x: unknown): StickinessRequest | null {
  if (!isObj(x) || !Array.isArray(x.series)) return null;
  const series: StickinessSeries[] = [];
  for (const s of x.series.slice(0, 10)) {
    if (!isObj(s)) continue;
    const one: StickinessSeries = {};
    put(one, 'event', strOrNull(s.event));
    put(one, 'filters', sanitizeFilters(s.filters));
    put(one, 'name', strOrNull(s.name));
    series.push(one);
  }
  if (series.length === 0) return null;
  const q: StickinessRequest = { series };
  common(x, q);
  interval(x, q);
  return q;
}

export function sanitizeLifecycle(x: unknown): LifecycleRequest | null {
  if (!isObj(x)) return null;
  const event = sanitizeSpec(x.event);
  if (!event) return null;
  const q: LifecycleRequest = { event };
  common(x, q);
  interval(x, q);
  return q;
}

export function sanitizePaths(x: unknown): PathsRequest | null {
  if (!isObj(x)) return null;
  const q: PathsRequest = {};
  if (x.path_type === 'event' || x.path_type === 'pathname') q.path_type = x.path_type;
  put(q, 'start_point', strOrNull(x.start_point));
  put(q, 'end_point', strOrNull(x.end_point));
  put(q, 'depth', numOrNull(x.depth));
  put(q, 'min_count', numOrNull(x.min_count));
  put(q, 'max_links', numOrNull(x.max_links));
  if (Array.isArray(x.exclude)) q.exclude = x.exclude.filter((e): e is string => typeof e === 'string');
  common(x, q);
  return q;
}

export function sanitizeSessions(x: unknown): SessionsRequest | null {
  if (!isObj(x)) return null;
  const q: SessionsRequest = {};
  common(x, q);
  interval(x, q);
  put(q, 'min_duration_seconds', numOrNull(x.min_duration_seconds));
  put(q, 'max_duration_seconds', numOrNull(x.max_duration_seconds));
  put(q, 'entry_pathname', strOrNull(x.entry_pathname));
  put(q, 'breakdown', strOrNull(x.breakdown));
  put(q, 'limit', numOrNull(x.limit));
  return q;
}

/** The events explorer's filters (its URL state). */
export interface EventsFilter {
  event?: string;
  properties?: PropertyFilter[];
}

export function sanitizeEventsFilter(x: unknown): EventsFilter | null {
  if (!isObj(x)) return null;
  const f: EventsFilter = {};
  put(f, 'event', str(x.event) || undefined);
  put(f, 'properties', sanitizeFilters(x.properties));
  return f;
}

/** A filter list without the rows still being edited (no key yet), as the API wants it. */
export function completeFilters(filters: PropertyFilter[] | undefined): PropertyFilter[] | undefined {
  if (!filters) return undefined;
  const done = filters.filter((f) => f.key.trim() !== '' && (!operatorTakesValue(f.operator) || (f.value !== undefined && f.value !== '' && f.value !== null)));
  return done.length ? done : undefined;
}

// ── what is sent ─────────────────────────────────────────────────────────────────────────────

const clean = <T extends object>(o: T): T => {
  const r = o as Obj;
  for (const k of Object.keys(r)) if (r[k] === undefined) delete r[k];
  return o;
};

/** A breakdown ready to send: a property named, or at least one cohort chosen. */
export function breakdownComplete(b: Breakdown | null | undefined): b is Breakdown {
  if (!b) return false;
  return b.type === 'cohort' ? (b.cohorts?.length ?? 0) > 0 : !!b.property?.trim();
}

/** The heading of a breakdown's column: its property, or "Cohort (id)". */
export function breakdownLabel(b: Breakdown | null | undefined): string | undefined {
  if (!b) return undefined;
  return b.type === 'cohort' ? 'Cohort (id)' : b.property;
}

/** The trends request for the editor's query: filter rows still being edited and an empty formula or breakdown left out. */
export function trendsRequest(q: TrendsRequest): TrendsRequest {
  return clean({
    ...q,
    series: q.series.map((s) => clean({ ...s, filters: completeFilters(s.filters), math_property: mathNeedsProperty(s.math) ? s.math_property : undefined })),
    filters: completeFilters(q.filters),
    formula: q.formula && q.formula.trim() ? q.formula.trim() : undefined,
    breakdown: breakdownComplete(q.breakdown) ? q.breakdown : undefined,
  });
}

export function funnelsRequest(q: FunnelsRequest): FunnelsRequest {
  return clean({
    ...q,
    steps: q.steps.map((s) => clean({ ...s, filters: completeFilters(s.filters) })),
    filters: completeFilters(q.filters),
    breakdown: breakdownComplete(q.breakdown) ? q.breakdown : undefined,
  });
}

export function retentionRequest(q: RetentionRequest): RetentionRequest {
  const spec = (s: EventSpec) => clean({ ...s, filters: completeFilters(s.filters) });
  return clean({
    ...q,
    target_event: spec(q.target_event),
    returning_event: q.returning_event ? spec(q.returning_event) : undefined,
    filters: completeFilters(q.filters),
  });
}

export function stickinessRequest(q: StickinessRequest): StickinessRequest {
  return clean({
    ...q,
    series: q.series.map((s) => clean({ ...s, filters: completeFilters(s.filters), name: s.name?.trim() ? s.name : undefined })),
    filters: completeFilters(q.filters),
  });
}

export function lifecycleRequest(q: LifecycleRequest): LifecycleRequest {
  return clean({ ...q, event: clean({ ...q.event, filters: completeFilters(q.event.filters) }), filters: completeFilters(q.filters) });
}

const blank = (s: string | null | undefined) => (s && s.trim() ? s.trim() : undefined);

export function pathsRequest(q: PathsRequest): PathsRequest {
  return clean({
    ...q,
    start_point: blank(q.start_point),
    end_point: blank(q.end_point),
    exclude: q.exclude && q.exclude.length ? q.exclude : undefined,
    filters: completeFilters(q.filters),
  });
}

export function sessionsRequest(q: SessionsRequest): SessionsRequest {
  return clean({
    ...q,
    entry_pathname: blank(q.entry_pathname),
    breakdown: blank(q.breakdown),
    filters: completeFilters(q.filters),
  });
}
