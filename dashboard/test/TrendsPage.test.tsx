import { act, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { QueryJob, TrendsRequest } from '../src/api/types';
import { TrendsPage } from '../src/pages/TrendsPage';
import { searchFor } from '../src/urlState';
import { trendsSingle } from './fixtures/trends';
import { json, renderAt, stubFetch } from './helpers';

beforeAll(() => {
  // recharts measures its container; jsdom has no layout.
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

/** A query job as the API answers it. */
function job(id: string, status: QueryJob['status'], extra: Partial<QueryJob> = {}): QueryJob {
  return {
    id,
    kind: 'trends',
    status,
    progress: { rows_read: 0, total_rows: 0, fraction: status === 'done' ? 1 : null },
    cached: false,
    cancel_requested: false,
    query: {},
    created_at: '2026-12-04T10:00:00Z',
    started_at: null,
    finished_at: null,
    result: null,
    error: null,
    ...extra,
  };
}

/** Trends run as jobs: a valid query's job is done at once; an invalid one fails on the first poll. */
function api() {
  return stubFetch(async (c) => {
    if (c.path === '/api/v1/projects/3/event-names') return json(200, { results: [{ name: '$pageview', count: 120 }] });
    if (c.path === '/api/v1/projects/3/property-keys') return json(200, { results: [{ name: '$browser', count: 120 }] });
    if (c.path === '/api/v1/projects/3/query-jobs' && c.method === 'POST') {
      const body = (c.body as { kind: string; query: TrendsRequest }).query;
      if (body.series[0]?.math === 'sum') return json(202, job('bad', 'running'));
      const total = body.series[0]?.math === 'unique_users' ? 40 : 120;
      return json(200, job('ok', 'done', { result: { ...trendsSingle, results: [{ ...trendsSingle.results[0]!, math: body.series[0]?.math ?? 'total', data: [total, 0, 0], total, aggregated_value: total }] } }));
    }
    if (c.path === '/api/v1/projects/3/query-jobs/bad') {
      return json(200, job('bad', 'failed', { error: { status: 400, error: 'invalid_request', message: 'sum needs a property', field: 'series[0].math_property' } }));
    }
    return undefined;
  });
}

const trendBodies = (calls: ReturnType<typeof api>['calls']) =>
  calls.filter((c) => c.path.endsWith('/query-jobs') && c.method === 'POST').map((c) => (c.body as { query: unknown }).query);

describe('TrendsPage', () => {
  it('runs the query held in the URL and edits it through the URL', async () => {
    const { calls } = api();
    const q: TrendsRequest = { series: [{ event: '$pageview', math: 'total', filters: [{ key: '$browser', operator: 'exact', value: '' }] }], date_from: '-7d', interval: 'day' };
    const user = userEvent.setup();
    const { router } = renderAt(<TrendsPage />, { url: `/project/3/trends${searchFor(q)}` });

    const table = await screen.findByRole('table', { name: 'Trend results' });
    await waitFor(() => expect(within(table).getByTestId('trend-total')).toHaveTextContent('120'));
    // The unfinished filter row stays in the URL but is not sent.
    expect(trendBodies(calls)[0]).toEqual({ series: [{ event: '$pageview', math: 'total' }], date_from: '-7d', interval: 'day' });

    await user.selectOptions(screen.getByLabelText('Series A math'), 'unique_users');
    await waitFor(() => expect(screen.getByTestId('trend-total')).toHaveTextContent('40'));
    const urlQuery = JSON.parse(new URLSearchParams(router.state.location.search).get('q')!);
    expect(urlQuery.series[0].math).toBe('unique_users');

    await user.type(screen.getByLabelText('Breakdown by property'), '$browser{Enter}');
    await waitFor(() => expect(trendBodies(calls).at(-1)).toMatchObject({ breakdown: { property: '$browser' } }));

    await user.selectOptions(screen.getByLabelText('Date range'), '-30d');
    await waitFor(() => expect(trendBodies(calls).at(-1)).toMatchObject({ date_from: '-30d', breakdown: { property: '$browser' } }));

    // Back undoes the last edit.
    await act(async () => router.navigate(-1));
    await waitFor(() => expect(screen.getByLabelText('Date range')).toHaveValue('-7d'));
  });

  it('shows the API’s 400 with its field', async () => {
    api();
    const q: TrendsRequest = { series: [{ event: '$pageview', math: 'sum' }] };
    renderAt(<TrendsPage />, { url: `/project/3/trends${searchFor(q)}` });
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('sum needs a property');
    expect(alert).toHaveTextContent('series[0].math_property');
  });

  it('shows a running job’s progress, and cancels it', async () => {
    let cancelled = false;
    const { calls } = stubFetch(async (c) => {
      if (c.path === '/api/v1/projects/3/query-jobs' && c.method === 'POST') return json(202, job('slow', 'queued'));
      if (c.path === '/api/v1/projects/3/query-jobs/slow' && c.method === 'DELETE') {
        cancelled = true;
        return json(200, job('slow', 'running', { cancel_requested: true, progress: { rows_read: 41_000_000, total_rows: 120_000_000, fraction: 0.34 } }));
      }
      if (c.path === '/api/v1/projects/3/query-jobs/slow') {
        return cancelled
          ? json(200, job('slow', 'cancelled'))
          : json(200, job('slow', 'running', { progress: { rows_read: 41_000_000, total_rows: 120_000_000, fraction: 0.34 } }));
      }
      return json(200, { results: [] });
    });
    const user = userEvent.setup();
    renderAt(<TrendsPage />, { url: '/project/3/trends' });
    await waitFor(() => expect(screen.getByTestId('job-progress')).toHaveTextContent('41.0M of 120.0M rows (34%)'), { timeout: 3000 });
    expect(screen.getByRole('progressbar', { name: 'Query progress' })).toHaveAttribute('value', '0.34');
    await user.click(screen.getByRole('button', { name: 'Cancel' }));
    expect(calls.some((c) => c.method === 'DELETE' && c.path.endsWith('/query-jobs/slow'))).toBe(true);
    expect(await screen.findByRole('alert', {}, { timeout: 3000 })).toHaveTextContent('The query was cancelled.');
  });

  it('says when nothing matches', async () => {
    stubFetch(async (c) =>
      c.path.endsWith('/query-jobs')
        ? json(200, job('empty', 'done', { result: { ...trendsSingle, results: [{ ...trendsSingle.results[0]!, data: [0, 0, 0], total: 0, aggregated_value: 0 }] } }))
        : json(200, { results: [] }),
    );
    renderAt(<TrendsPage />, { url: '/project/3/trends' });
    expect(await screen.findByTestId('empty-state')).toHaveTextContent('No events match this query in this range');
  });
});
