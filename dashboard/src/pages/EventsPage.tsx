import { Fragment, useMemo, useState } from 'react';
import { useInfiniteQuery, useMutation, useQueryClient } from '@tanstack/react-query';
import { Link } from 'react-router';
import { listEvents, loadSampleData } from '../api/query';
import type { EventItem } from '../api/types';
import { ExportButtons } from '../components/ExportButtons';
import { PageHeader } from '../components/PageHeader';
import { EventPicker } from '../components/Pickers';
import { PropertyFilters } from '../components/PropertyFilters';
import { Empty, ErrorState, Loading } from '../components/States';
import { formatNumber, formatTimestamp } from '../format';
import { useProject } from '../project';
import { completeFilters, sanitizeEventsFilter, type EventsFilter } from '../queries';
import { useUrlQuery } from '../urlState';

const PAGE_SIZE = 50;
export const AUTO_REFRESH_MS = 5000;
const SUMMARY_KEYS = ['$current_url', '$pathname', '$browser', '$os', 'plan'];
const NO_FILTER: EventsFilter = {};

function summary(e: EventItem): string {
  const props = e.properties ?? {};
  const parts: string[] = [];
  for (const k of SUMMARY_KEYS) {
    const v = props[k];
    if (v !== undefined && v !== null && v !== '') parts.push(`${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
    if (parts.length >= 2) break;
  }
  const n = Object.keys(props).length;
  return parts.length ? `${parts.join(' · ')}${n > parts.length ? ` (+${n - parts.length})` : ''}` : `${n} properties`;
}

/** "Load sample data": a month of a sample shop in an empty project, to look around at once. */
function SampleData({ projectId }: { projectId: number }) {
  const queryClient = useQueryClient();
  const load = useMutation({
    mutationFn: () => loadSampleData(projectId),
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: ['events', projectId] });
      void queryClient.invalidateQueries({ queryKey: ['insights', projectId] });
      void queryClient.invalidateQueries({ queryKey: ['dashboards', projectId] });
      void queryClient.invalidateQueries({ queryKey: ['cohorts', projectId] });
    },
  });
  if (load.data) {
    const d = load.data;
    return (
      <p role="status">
        Loaded {formatNumber(d.events)} events of {formatNumber(d.visitors)} visitors over the last 30 days; they appear
        here within seconds. <Link to={`/project/${projectId}/dashboards/${d.dashboard_id}`}>Open the “Shop overview” dashboard</Link>.
      </p>
    );
  }
  return (
    <div className="sample-data">
      <p>Or explore Cairn with a month of a sample shop: visitors who sign up, browse, buy and come back, with six insights, a dashboard and two cohorts.</p>
      <button type="button" className="btn btn-primary" onClick={() => load.mutate()} disabled={load.isPending}>
        {load.isPending ? 'Loading sample data…' : 'Load sample data'}
      </button>
      {load.error ? <ErrorState error={load.error} title="Could not load sample data" /> : null}
    </div>
  );
}

export function EventsPage() {
  const project = useProject();
  const { value: filter, setQuery } = useUrlQuery<EventsFilter>(NO_FILTER, sanitizeEventsFilter);
  const [auto, setAuto] = useState(true);
  const [open, setOpen] = useState<Set<string>>(new Set());
  const params = useMemo(() => ({ event: filter.event, properties: completeFilters(filter.properties) }), [filter]);

  const events = useInfiniteQuery({
    queryKey: ['events', project.id, params],
    queryFn: ({ pageParam, signal }) => listEvents(project.id, { ...params, limit: PAGE_SIZE, cursor: pageParam ?? undefined }, signal),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.next_cursor,
    refetchInterval: auto ? AUTO_REFRESH_MS : false,
    refetchIntervalInBackground: false,
  });
  const rows = events.data?.pages.flatMap((p) => p.results) ?? [];
  const toggle = (uuid: string) =>
    setOpen((prev) => {
      const next = new Set(prev);
      if (next.has(uuid)) next.delete(uuid);
      else next.add(uuid);
      return next;
    });

  return (
    <div className="page page-events">
      <PageHeader title="Events">
        <div className="field field-check">
          <input id="events-auto" type="checkbox" checked={auto} onChange={(e) => setAuto(e.target.checked)} />
          <label htmlFor="events-auto">Refresh every {AUTO_REFRESH_MS / 1000} s</label>
        </div>
        <button type="button" className="btn" onClick={() => void events.refetch()} disabled={events.isFetching}>
          {events.isFetching ? 'Refreshing…' : 'Refresh'}
        </button>
        <ExportButtons
          label="Export these events (last 30 days)"
          path={`/api/v1/projects/${project.id}/exports/events`}
          query={{ event: filter.event, properties: filter.properties?.length ? JSON.stringify(filter.properties) : undefined }}
        />
      </PageHeader>
      <form className="editor editor-inline" aria-label="Event filters" onSubmit={(e) => e.preventDefault()}>
        <EventPicker label="Event name" value={filter.event ?? null} onChange={(event) => setQuery({ ...filter, event: event ?? undefined })} />
        <PropertyFilters label="Property filters" value={filter.properties} event={filter.event} onChange={(properties) => setQuery({ ...filter, properties })} />
      </form>
      <section className="results" aria-label="Events" aria-busy={events.isFetching}>
        {events.error && rows.length === 0 ? (
          <ErrorState error={events.error} onRetry={() => void events.refetch()} />
        ) : events.isPending ? (
          <Loading label="Loading events…" />
        ) : rows.length === 0 && !filter.event && !filter.properties?.length ? (
          <Empty title="No events in the last 30 days">
            <p>Events appear here a few seconds after capture accepts them: send some with an SDK and a write key (Settings).</p>
            <SampleData projectId={project.id} />
          </Empty>
        ) : rows.length === 0 ? (
          <Empty title="No events in the last 30 days match">Events appear here a few seconds after capture accepts them.</Empty>
        ) : (
          <>
            {events.error ? <ErrorState error={events.error} title="Could not refresh" /> : null}
            <div className="table-scroll">
              <table className="data-table events-table" aria-label="Recent events">
                <thead>
                  <tr>
                    <th scope="col">
                      <span className="visually-hidden">Details</span>
                    </th>
                    <th scope="col">Time</th>
                    <th scope="col">Event</th>
                    <th scope="col">Distinct ID</th>
                    <th scope="col">Properties</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((e) => {
                    const isOpen = open.has(e.uuid);
                    return (
                      <Fragment key={e.uuid}>
                        <tr className="event-row" data-event={e.event}>
                          <td>
                            <button
                              type="button"
                              className="btn-icon"
                              aria-expanded={isOpen}
                              aria-controls={`ev-${e.uuid}`}
                              aria-label={`${isOpen ? 'Hide' : 'Show'} properties of ${e.event} at ${formatTimestamp(e.timestamp)}`}
                              onClick={() => toggle(e.uuid)}
                            >
                              {isOpen ? '▾' : '▸'}
                            </button>
                          </td>
                          <td className="nowrap">
                            <time dateTime={e.timestamp}>{formatTimestamp(e.timestamp)}</time>
                          </td>
                          <td className="event-name">{e.event}</td>
                          <td className="mono">{e.distinct_id}</td>
                          <td className="muted ellipsis">{summary(e)}</td>
                        </tr>
                        {isOpen ? (
                          <tr className="event-details" id={`ev-${e.uuid}`}>
                            <td />
                            <td colSpan={4}>
                              <dl className="props">
                                <dt>uuid</dt>
                                <dd className="mono">{e.uuid}</dd>
                                {Object.entries(e.properties ?? {}).map(([k, v]) => (
                                  <Fragment key={k}>
                                    <dt>{k}</dt>
                                    <dd className="mono">{typeof v === 'string' ? v : JSON.stringify(v)}</dd>
                                  </Fragment>
                                ))}
                              </dl>
                            </td>
                          </tr>
                        ) : null}
                      </Fragment>
                    );
                  })}
                </tbody>
              </table>
            </div>
            <div className="load-more">
              {events.hasNextPage ? (
                <button type="button" className="btn" onClick={() => void events.fetchNextPage()} disabled={events.isFetchingNextPage}>
                  {events.isFetchingNextPage ? 'Loading…' : 'Load more'}
                </button>
              ) : (
                <span className="muted">No older events in the last 30 days.</span>
              )}
            </div>
          </>
        )}
      </section>
    </div>
  );
}
