// Analyses, the events explorer and its pickers (schemas/openapi/query.yaml).
import { api } from './client';
import type {
  SavedCohort,
  CohortInput,
  EventExport,
  EventExportInput,
  EventsListParams,
  EventsPage,
  FunnelsRequest,
  FunnelsResponse,
  NameCounts,
  PersonDeletion,
  SampleData,
  PersonDetail,
  PersonsListParams,
  PersonsPage,
  QueryJob,
  QueryJobKind,
  RetentionRequest,
  RetentionResponse,
  SqlRequest,
  SqlResponse,
  TrendsRequest,
  TrendsResponse,
} from './types';

const base = (projectId: number) => `/api/v1/projects/${projectId}`;

export const queryTrends = (projectId: number, req: TrendsRequest, signal?: AbortSignal) =>
  api<TrendsResponse>(`${base(projectId)}/query/trends`, { method: 'POST', body: req, signal });

export const queryFunnels = (projectId: number, req: FunnelsRequest, signal?: AbortSignal) =>
  api<FunnelsResponse>(`${base(projectId)}/query/funnels`, { method: 'POST', body: req, signal });

export const queryRetention = (projectId: number, req: RetentionRequest, signal?: AbortSignal) =>
  api<RetentionResponse>(`${base(projectId)}/query/retention`, { method: 'POST', body: req, signal });

export const listEventExports = (projectId: number) =>
  api<{ results: EventExport[] }>(`${base(projectId)}/event-exports`).then((r) => r.results);

export const createEventExport = (projectId: number, input: EventExportInput) =>
  api<EventExport>(`${base(projectId)}/event-exports`, { method: 'POST', body: input });

export const updateEventExport = (projectId: number, id: number, patch: { name?: string; paused?: boolean }) =>
  api<EventExport>(`${base(projectId)}/event-exports/${id}`, { method: 'PATCH', body: patch });

export const deleteEventExport = (projectId: number, id: number) =>
  api<void>(`${base(projectId)}/event-exports/${id}`, { method: 'DELETE' });

/** Runs one read-only SQL statement over the project's events and persons. */
export const querySql = (projectId: number, req: SqlRequest, signal?: AbortSignal) =>
  api<SqlResponse>(`${base(projectId)}/query/sql`, { method: 'POST', body: req, signal });

/** Starts an analysis as a job, or finds the identical one running or recently done. */
export const createQueryJob = <R>(projectId: number, kind: QueryJobKind, query: unknown, refresh = false, signal?: AbortSignal) =>
  api<QueryJob<R>>(`${base(projectId)}/query-jobs`, { method: 'POST', body: { kind, query, ...(refresh ? { refresh } : {}) }, signal });

export const getQueryJob = <R>(projectId: number, id: string, signal?: AbortSignal) =>
  api<QueryJob<R>>(`${base(projectId)}/query-jobs/${encodeURIComponent(id)}`, { signal });

export const cancelQueryJob = (projectId: number, id: string) =>
  api<QueryJob>(`${base(projectId)}/query-jobs/${encodeURIComponent(id)}`, { method: 'DELETE' });

export const listEvents = (projectId: number, p: EventsListParams, signal?: AbortSignal) =>
  api<EventsPage>(`${base(projectId)}/events`, {
    query: {
      event: p.event,
      distinct_id: p.distinct_id,
      properties: p.properties && p.properties.length > 0 ? JSON.stringify(p.properties) : undefined,
      date_from: p.date_from,
      date_to: p.date_to,
      limit: p.limit,
      cursor: p.cursor,
    },
    signal,
  });

export const listEventNames = (projectId: number, signal?: AbortSignal) =>
  api<NameCounts>(`${base(projectId)}/event-names`, { query: { limit: 500 }, signal });

export const listPropertyKeys = (projectId: number, event?: string | null, signal?: AbortSignal) =>
  api<NameCounts>(`${base(projectId)}/property-keys`, { query: { event: event ?? undefined, limit: 500 }, signal });

export const listPropertyValues = (projectId: number, key: string, event?: string | null, signal?: AbortSignal) =>
  api<NameCounts>(`${base(projectId)}/property-values`, { query: { key, event: event ?? undefined, limit: 200 }, signal });

export const listPersons = (projectId: number, p: PersonsListParams, signal?: AbortSignal) =>
  api<PersonsPage>(`${base(projectId)}/persons`, {
    query: { search: p.search || undefined, distinct_id: p.distinct_id, limit: p.limit, offset: p.offset },
    signal,
  });

export const getPerson = (projectId: number, personId: string, signal?: AbortSignal) =>
  api<PersonDetail>(`${base(projectId)}/persons/${encodeURIComponent(personId)}`, { signal });

/** Loads a month of a sample shop's events, insights, a dashboard and cohorts into an empty project. */
export const loadSampleData = (projectId: number) =>
  api<SampleData>(`${base(projectId)}/sample-data`, { method: 'POST' });

export const deletePerson = (projectId: number, personId: string) =>
  api<PersonDeletion>(`${base(projectId)}/persons/${encodeURIComponent(personId)}`, { method: 'DELETE' });

/** Everything stored about a person (their properties and every event), as the API's JSON document. */
export const exportPerson = (projectId: number, personId: string) =>
  api<unknown>(`${base(projectId)}/persons/${encodeURIComponent(personId)}/export`);

export const listCohorts = (projectId: number, signal?: AbortSignal) =>
  api<{ results: SavedCohort[] }>(`${base(projectId)}/cohorts`, { signal });

export const createCohort = (projectId: number, input: CohortInput) =>
  api<SavedCohort>(`${base(projectId)}/cohorts`, { method: 'POST', body: input });

export const computeCohort = (projectId: number, id: number) =>
  api<SavedCohort>(`${base(projectId)}/cohorts/${id}/compute`, { method: 'POST' });

export const deleteCohort = (projectId: number, id: number) =>
  api<void>(`${base(projectId)}/cohorts/${id}`, { method: 'DELETE' });

export const listPersonDeletions = (projectId: number, signal?: AbortSignal) =>
  api<{ results: PersonDeletion[] }>(`${base(projectId)}/person-deletions`, { signal });
