import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { LifecycleResponse, PathsResponse, QueryJob, SessionsResponse, SqlResponse, StickinessResponse } from '../src/api/types';
import { sankeyData } from '../src/components/charts/MoreCharts';
import { LifecyclePage } from '../src/pages/LifecyclePage';
import { PathsPage } from '../src/pages/PathsPage';
import { SessionsPage } from '../src/pages/SessionsPage';
import { chartColumns, SqlPage } from '../src/pages/SqlPage';
import { StickinessPage } from '../src/pages/StickinessPage';
import { sanitizePaths, sanitizeSessions, sanitizeStickiness, pathsRequest } from '../src/queries';
import { json, renderAt, stubFetch } from './helpers';

beforeAll(() => {
  vi.stubGlobal(
    'ResizeObserver',
    class {
      observe() {}
      unobserve() {}
      disconnect() {}
    },
  );
});
afterEach(() => vi.unstubAllGlobals());

function done<R>(kind: QueryJob['kind'], result: R): QueryJob<R> {
  return {
    id: `${kind}-1`,
    kind,
    status: 'done',
    progress: { rows_read: 10, total_rows: 10, fraction: 1 },
    cached: false,
    cancel_requested: false,
    query: {},
    created_at: '2026-12-04T10:00:00Z',
    started_at: null,
    finished_at: null,
    result,
    error: null,
  };
}

const stickiness: StickinessResponse = {
  interval: 'day',
  timezone: 'UTC',
  date_from: '2026-12-01T00:00:00+00:00',
  date_to: '2026-12-04T00:00:00+00:00',
  periods: 3,
  results: [{ series: 0, label: '$pageview', data: [12, 5, 2], persons: 19 }],
};

const lifecycle: LifecycleResponse = {
  interval: 'day',
  timezone: 'UTC',
  labels: ['2026-12-01T00:00:00+00:00', '2026-12-02T00:00:00+00:00'],
  new: [4, 2],
  returning: [10, 11],
  resurrecting: [1, 3],
  dormant: [2, 6],
};

const paths: PathsResponse = {
  path_type: 'pathname',
  timezone: 'UTC',
  date_from: '2026-12-01T00:00:00+00:00',
  date_to: '2026-12-04T00:00:00+00:00',
  persons: 30,
  nodes: [
    { step: 1, name: '/', persons: 30, dropped_off: 5 },
    { step: 2, name: '/pricing', persons: 25, dropped_off: 10 },
    { step: 3, name: '/signup', persons: 15, dropped_off: 15 },
  ],
  links: [
    { step: 1, source: '/', target: '/pricing', persons: 25 },
    { step: 2, source: '/pricing', target: '/signup', persons: 15 },
  ],
};

const stats = { sessions: 40, median_duration_seconds: 95, p90_duration_seconds: 600, avg_duration_seconds: 150, avg_events_per_session: 4.25, bounce_rate: 0.25 };
const sessions: SessionsResponse = {
  interval: 'day',
  timezone: 'UTC',
  date_from: '2026-12-01T00:00:00+00:00',
  date_to: '2026-12-03T00:00:00+00:00',
  labels: ['2026-12-01T00:00:00+00:00', '2026-12-02T00:00:00+00:00'],
  series: [stats, { ...stats, sessions: 0 }],
  totals: stats,
  entry_pages: [{ pathname: '/landing', sessions: 30 }],
  exit_pages: [{ pathname: '/thanks', sessions: 12 }],
};

/** Every analysis is a job done at once; what each page sent is recorded. */
function api() {
  return stubFetch(async (c) => {
    if (c.path.endsWith('/event-names') || c.path.endsWith('/property-keys')) return json(200, { results: [] });
    if (c.path === '/api/v1/projects/3/query-jobs' && c.method === 'POST') {
      const kind = (c.body as { kind: QueryJob['kind'] }).kind;
      const result = { stickiness, lifecycle, paths, sessions }[kind as 'stickiness'];
      return json(200, done(kind, result));
    }
    return undefined;
  });
}

describe('the analyses added with issue 21', () => {
  it('stickiness shows persons by periods active', async () => {
    const { calls } = api();
    renderAt(<StickinessPage />, { url: '/?q=' + encodeURIComponent(JSON.stringify({ series: [{ event: '$pageview' }] })) });
    const table = await screen.findByRole('table', { name: 'Stickiness' });
    expect(within(table).getByRole('columnheader', { name: '3 days' })).toBeInTheDocument();
    expect(within(table).getByRole('rowheader', { name: '$pageview' }).closest('tr')).toHaveTextContent('19');
    const job = calls.find((c) => c.path.endsWith('/query-jobs'));
    expect(job?.body).toMatchObject({ kind: 'stickiness', query: { series: [{ event: '$pageview' }] } });
  });

  it('lifecycle shows the four states per period', async () => {
    api();
    renderAt(<LifecyclePage />);
    const table = await screen.findByRole('table', { name: 'Lifecycle' });
    const rows = within(table).getAllByRole('row');
    expect(rows[1]).toHaveTextContent(/4\s*10\s*1\s*2/);
    expect(screen.getByRole('img', { name: /Stacked bar chart/ })).toBeInTheDocument();
  });

  it('paths show the links and the persons who followed them', async () => {
    const { calls } = api();
    renderAt(<PathsPage />, { url: '/?q=' + encodeURIComponent(JSON.stringify({ path_type: 'pathname', start_point: '/', exclude: [] })) });
    const table = await screen.findByRole('table', { name: 'Path links' });
    expect(within(table).getAllByRole('row')).toHaveLength(3);
    expect(screen.getByText(/30 persons followed these paths/)).toBeInTheDocument();
    const body = calls.find((c) => c.path.endsWith('/query-jobs'))?.body as { query: Record<string, unknown> };
    expect(body.query.start_point).toBe('/');
    expect(body.query).not.toHaveProperty('exclude');
  });

  it('sessions show totals, entry and exit pages', async () => {
    api();
    renderAt(<SessionsPage />);
    const totals = await screen.findByRole('list', { name: 'Session totals' });
    expect(totals).toHaveTextContent('1m 35s');
    expect(totals).toHaveTextContent('25');
    expect(screen.getByRole('table', { name: 'Entry page' })).toHaveTextContent('/landing');
    expect(screen.getByRole('table', { name: 'Exit page' })).toHaveTextContent('/thanks');
  });

  it('the Sankey diagram has a node per step and element', () => {
    const d = sankeyData(paths);
    expect(d.nodes.map((n) => n.name)).toEqual(['1. /', '2. /pricing', '3. /signup']);
    expect(d.links).toEqual([
      { source: 0, target: 1, value: 25 },
      { source: 1, target: 2, value: 15 },
    ]);
  });

  it('queries from URLs keep only what the API takes', () => {
    expect(sanitizeStickiness({ series: [{ event: 'a', math: 'sum' }], interval: 'week', junk: 1 })).toEqual({ series: [{ event: 'a' }], interval: 'week' });
    expect(sanitizePaths({ path_type: 'x', depth: 4, exclude: ['a', 3] })).toEqual({ depth: 4, exclude: ['a'] });
    expect(sanitizeSessions({ min_duration_seconds: 'x', breakdown: '$browser' })).toEqual({ breakdown: '$browser' });
    expect(pathsRequest({ start_point: '  ', end_point: '/signup', exclude: [] })).toEqual({ end_point: '/signup' });
  });
});

describe('the SQL page', () => {
  const result: SqlResponse = {
    columns: [
      { name: 'browser', type: 'String' },
      { name: 'persons', type: 'UInt64' },
    ],
    rows: [
      ['Chrome', '1204'],
      ['Firefox', '391'],
    ],
    truncated: true,
    statement: 'SELECT …',
  };

  it('runs the statement and shows its rows, a chart, and the 400 of a refused one', async () => {
    const { calls } = stubFetch(async (c) => {
      if (c.path !== '/api/v1/projects/3/query/sql') return undefined;
      const q = (c.body as { query: string }).query;
      if (q.includes('system')) return json(400, { error: 'invalid_request', message: '`system.tables` is not a table here', field: 'query' });
      return json(200, result);
    });
    const user = userEvent.setup();
    renderAt(<SqlPage />);
    expect(screen.getByText('Write a query and run it')).toBeInTheDocument();
    const text = screen.getByRole('textbox');
    await user.clear(text);
    await user.type(text, 'SELECT browser, persons FROM events');
    await user.click(screen.getByRole('button', { name: /Run/ }));
    const table = await screen.findByRole('table', { name: 'Query result' });
    expect(within(table).getAllByRole('row')).toHaveLength(3);
    expect(screen.getByText(/more were left out/)).toBeInTheDocument();
    expect(calls[0]?.body).toEqual({ query: 'SELECT browser, persons FROM events', limit: 1000 });
    await user.click(screen.getByRole('button', { name: 'Chart' }));
    expect(screen.getByRole('img', { name: /Bar chart of persons by browser/ })).toBeInTheDocument();

    await user.clear(text);
    await user.type(text, 'SELECT * FROM system.tables{Control>}{Enter}{/Control}');
    await waitFor(() => expect(screen.getByRole('alert')).toHaveTextContent('is not a table here'));
  });

  it('charts the numeric columns after the first', () => {
    expect(chartColumns(result)).toEqual([1]);
    expect(chartColumns({ ...result, columns: [{ name: 'n', type: 'UInt64' }, { name: 's', type: 'String' }] })).toEqual([]);
  });
});
