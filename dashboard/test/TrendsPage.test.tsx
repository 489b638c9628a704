import { act, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { TrendsRequest } from '../src/api/types';
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

function api() {
  return stubFetch(async (c) => {
    if (c.path === '/api/v1/projects/3/event-names') return json(200, { results: [{ name: '$pageview', count: 120 }] });
    if (c.path === '/api/v1/projects/3/property-keys') return json(200, { results: [{ name: '$browser', count: 120 }] });
    if (c.path === '/api/v1/projects/3/query/trends') {
      const body = c.body as TrendsRequest;
      if (body.series[0]?.math === 'sum') return json(400, { error: 'invalid_request', message: 'sum needs a property', field: 'series[0].math_property' });
      const total = body.series[0]?.math === 'unique_users' ? 40 : 120;
      return json(200, { ...trendsSingle, results: [{ ...trendsSingle.results[0]!, math: body.series[0]?.math ?? 'total', data: [total, 0, 0], total, aggregated_value: total }] });
    }
    return undefined;
  });
}

const trendBodies = (calls: ReturnType<typeof api>['calls']) => calls.filter((c) => c.path.endsWith('/query/trends')).map((c) => c.body);

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

  it('says when nothing matches', async () => {
    stubFetch(async (c) =>
      c.path.endsWith('/query/trends') ? json(200, { ...trendsSingle, results: [{ ...trendsSingle.results[0]!, data: [0, 0, 0], total: 0, aggregated_value: 0 }] }) : json(200, { results: [] }),
    );
    renderAt(<TrendsPage />, { url: '/project/3/trends' });
    expect(await screen.findByTestId('empty-state')).toHaveTextContent('No events match this query in this range');
  });
});
