import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Dashboard, Insight, TileInput } from '../src/api/types';
import { DashboardPage } from '../src/pages/DashboardPage';
import { trendsSingle } from './fixtures/trends';
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

const insight = (id: number, name: string, kind: 'trends' | 'funnels' = 'trends'): Insight => ({
  id,
  project_id: 3,
  name,
  description: '',
  query: kind === 'trends' ? { kind, series: [{ event: '$pageview' }], date_from: '-7d' } : { kind, steps: [{ event: 'a' }, { event: 'b' }] },
  display: {},
  created_by: 1,
  created_at: 't',
  updated_at: 't',
});

function backend() {
  let dash: Dashboard = {
    id: 5,
    project_id: 3,
    name: 'Growth',
    description: '',
    created_by: 1,
    created_at: 't',
    updated_at: 't',
    tiles: [
      { insight: insight(1, 'Pageviews'), layout: { x: 0, y: 0, w: 6, h: 2 }, position: 0 },
      { insight: insight(2, 'Signup funnel', 'funnels'), layout: { x: 6, y: 0, w: 6, h: 2 }, position: 1 },
    ],
  };
  const all = new Map([1, 2].map((id) => [id, dash.tiles[id - 1]!.insight]));
  const stub = stubFetch(async (c) => {
    if (c.path === '/api/v1/projects/3/dashboards/5' && c.method === 'GET') return json(200, dash);
    if (c.path === '/api/v1/projects/3/dashboards/5' && c.method === 'PATCH') {
      const body = c.body as { name?: string; tiles?: TileInput[] };
      if (body.name) dash = { ...dash, name: body.name };
      if (body.tiles) dash = { ...dash, tiles: body.tiles.map((t, position) => ({ insight: all.get(t.insight_id)!, layout: (t.layout ?? {}) as Dashboard['tiles'][0]['layout'], position })) };
      return json(200, dash);
    }
    if (c.path === '/api/v1/projects/3/dashboards/5' && c.method === 'DELETE') return json(204);
    if (c.path === '/api/v1/projects/3/insights') return json(200, { results: [...all.values()], total: 2 });
    if (c.path === '/api/v1/projects/3/insights/1/result') return json(200, trendsSingle);
    if (c.path === '/api/v1/projects/3/insights/2/result') return json(400, { error: 'invalid_request', message: 'at least 2 steps', field: 'steps' });
    return undefined;
  });
  return stub;
}

const render = () => renderAt(<DashboardPage />, { url: '/project/3/dashboards/5', path: '/project/:projectId/dashboards/:dashboardId' });

describe('DashboardPage', () => {
  it('shows each tile’s live result, or its error', async () => {
    backend();
    render();
    const tiles = await screen.findAllByTestId('tile');
    expect(tiles.map((t) => t.getAttribute('aria-label'))).toEqual(['Pageviews', 'Signup funnel']);
    await waitFor(() => expect(within(tiles[0]!).getByTestId('tile-total')).toHaveTextContent('120'));
    expect(await within(tiles[1]!).findByRole('alert')).toHaveTextContent('at least 2 steps');
    // A tile's title opens the insight in its editor.
    const link = within(tiles[0]!).getByRole('link', { name: 'Pageviews' });
    const u = new URL(link.getAttribute('href')!, 'http://x');
    expect(u.pathname).toBe('/project/3/trends');
    expect(u.searchParams.get('insight')).toBe('1');
    expect(JSON.parse(u.searchParams.get('q')!)).toEqual({ series: [{ event: '$pageview' }], date_from: '-7d' });
  });

  it('moves and resizes tiles through the layout field', async () => {
    const { calls } = backend();
    const user = userEvent.setup();
    render();
    await screen.findAllByTestId('tile');
    await user.click(screen.getByRole('button', { name: 'Move Pageviews later' }));
    await waitFor(() => expect(screen.getAllByTestId('tile').map((t) => t.getAttribute('aria-label'))).toEqual(['Signup funnel', 'Pageviews']));
    const patches = () => calls.filter((c) => c.method === 'PATCH').map((c) => c.body);
    expect(patches()[0]).toEqual({
      tiles: [
        { insight_id: 2, layout: { x: 0, y: 0, w: 6, h: 2 } },
        { insight_id: 1, layout: { x: 6, y: 0, w: 6, h: 2 } },
      ],
    });
    await user.click(screen.getByRole('button', { name: 'Make Signup funnel wider' }));
    await waitFor(() => expect(patches()).toHaveLength(2));
    expect(patches()[1]).toEqual({
      tiles: [
        { insight_id: 2, layout: { x: 0, y: 0, w: 9, h: 2 } },
        { insight_id: 1, layout: { x: 0, y: 2, w: 6, h: 2 } },
      ],
    });
    await waitFor(() => expect(screen.getByRole('listitem', { name: 'Pageviews' }).style.gridRow).toBe('3 / span 2'));
    expect(screen.getByRole('button', { name: 'Move Signup funnel earlier' })).toBeDisabled();
  });

  it('removes a tile after confirming, and renames the dashboard', async () => {
    const { calls } = backend();
    const user = userEvent.setup();
    render();
    await screen.findAllByTestId('tile');
    await user.click(screen.getByRole('button', { name: 'Remove Signup funnel from the dashboard' }));
    const dialog = screen.getByRole('alertdialog', { name: 'Remove tile' });
    await user.click(within(dialog).getByRole('button', { name: 'Remove' }));
    await waitFor(() => expect(screen.getAllByTestId('tile')).toHaveLength(1));
    expect(calls.find((c) => c.method === 'PATCH')!.body).toEqual({ tiles: [{ insight_id: 1, layout: { x: 0, y: 0, w: 6, h: 2 } }] });

    await user.click(screen.getByRole('button', { name: 'Rename' }));
    const name = screen.getByLabelText('Dashboard name');
    await user.clear(name);
    await user.type(name, 'Weekly growth{Enter}');
    expect(await screen.findByRole('heading', { name: 'Weekly growth' })).toBeInTheDocument();
    expect(calls.filter((c) => c.method === 'PATCH').at(-1)!.body).toEqual({ name: 'Weekly growth' });
  });

  it('is a clear error when the dashboard is missing', async () => {
    stubFetch(async () => json(404, { error: 'not_found', message: 'no such dashboard' }));
    render();
    expect(await screen.findByRole('alert')).toHaveTextContent('no such dashboard');
  });
});
