import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { InsightQuery } from '../src/api/types';
import { SaveInsightDialog } from '../src/components/SaveInsightDialog';
import { json, renderAt, stubFetch, type Call } from './helpers';

afterEach(() => vi.unstubAllGlobals());

const query: InsightQuery = { kind: 'trends', series: [{ event: '$pageview', math: 'total' }], date_from: '-7d', interval: 'day' };
const insight = (id: number, name: string) => ({ id, project_id: 3, name, description: '', query, display: {}, created_by: 1, created_at: 't', updated_at: 't' });
const dashboard = (id: number, name: string, tiles: unknown[] = []) => ({ id, project_id: 3, name, description: '', created_by: 1, created_at: 't', updated_at: 't', tiles });

function api(extra?: (c: Call) => Response | undefined) {
  return stubFetch(async (c) => {
    const r = extra?.(c);
    if (r) return r;
    if (c.method === 'GET' && c.path === '/api/v1/projects/3/dashboards') return json(200, { results: [dashboard(5, 'Growth')], total: 1 });
    if (c.method === 'POST' && c.path === '/api/v1/projects/3/insights') return json(201, insight(7, (c.body as { name: string }).name));
    if (c.method === 'POST' && c.path === '/api/v1/projects/3/dashboards') return json(201, dashboard(9, (c.body as { name: string }).name));
    if (c.method === 'GET' && c.path === '/api/v1/projects/3/dashboards/5')
      return json(200, dashboard(5, 'Growth', [{ insight: insight(2, 'Old'), layout: { x: 0, y: 0, w: 12, h: 3, note: 'kept' }, position: 0 }]));
    if (c.method === 'PATCH' && c.path === '/api/v1/projects/3/dashboards/5') return json(200, dashboard(5, 'Growth'));
    if (c.method === 'PATCH' && c.path === '/api/v1/projects/3/insights/4') return json(200, insight(4, (c.body as { name: string }).name));
    return undefined;
  });
}

describe('SaveInsightDialog', () => {
  it('saves a new insight onto a new dashboard', async () => {
    const { calls } = api();
    const onSaved = vi.fn();
    const user = userEvent.setup();
    renderAt(<SaveInsightDialog projectId={3} query={query} defaultName="Trend of $pageview" onClose={() => {}} onSaved={onSaved} />);

    const dialog = screen.getByRole('dialog', { name: 'Save as a new insight' });
    expect(dialog).toBeInTheDocument();
    const name = screen.getByLabelText('Name');
    expect(name).toHaveValue('Trend of $pageview');
    await user.clear(name);
    await user.type(name, '  Weekly pageviews ');
    await user.click(screen.getByLabelText('A new dashboard'));
    const save = screen.getByRole('button', { name: 'Save' });
    expect(save).toBeDisabled(); // the new dashboard needs a name
    await user.type(screen.getByLabelText("New dashboard's name"), 'E2E dashboard');
    await user.click(save);

    await waitFor(() => expect(onSaved).toHaveBeenCalled());
    const post = calls.find((c) => c.method === 'POST' && c.path.endsWith('/insights'))!;
    expect(post.body).toEqual({ name: 'Weekly pageviews', query });
    const dash = calls.find((c) => c.method === 'POST' && c.path.endsWith('/dashboards'))!;
    expect(dash.body).toEqual({ name: 'E2E dashboard', tiles: [{ insight_id: 7, layout: { x: 0, y: 0, w: 6, h: 2 } }] });
    expect(onSaved.mock.calls[0]![0]).toMatchObject({ insight: { id: 7, name: 'Weekly pageviews' }, dashboard: { id: 9, name: 'E2E dashboard' } });
  });

  it('adds to an existing dashboard, keeping its tiles', async () => {
    const { calls } = api();
    const onSaved = vi.fn();
    const user = userEvent.setup();
    renderAt(<SaveInsightDialog projectId={3} query={query} defaultName="x" onClose={() => {}} onSaved={onSaved} />);
    await waitFor(() => expect(screen.getByLabelText('An existing dashboard')).toBeEnabled());
    await user.click(screen.getByLabelText('An existing dashboard'));
    await user.selectOptions(screen.getByLabelText('Dashboard'), 'Growth');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    await waitFor(() => expect(onSaved).toHaveBeenCalled());
    const patch = calls.find((c) => c.method === 'PATCH')!;
    expect(patch.path).toBe('/api/v1/projects/3/dashboards/5');
    expect(patch.body).toEqual({
      tiles: [
        { insight_id: 2, layout: { x: 0, y: 0, w: 12, h: 3, note: 'kept' } },
        { insight_id: 7, layout: { x: 0, y: 3, w: 6, h: 2 } },
      ],
    });
  });

  it('updates the insight being edited unless “save as new” is ticked', async () => {
    const { calls } = api();
    const onSaved = vi.fn();
    const user = userEvent.setup();
    renderAt(<SaveInsightDialog projectId={3} query={query} insight={{ id: 4, name: 'Signups' }} defaultName="x" onClose={() => {}} onSaved={onSaved} />);
    expect(screen.getByRole('dialog', { name: 'Save insight' })).toBeInTheDocument();
    expect(screen.getByLabelText('Name')).toHaveValue('Signups');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    await waitFor(() => expect(onSaved).toHaveBeenCalled());
    expect(calls.filter((c) => c.method !== 'GET').map((c) => `${c.method} ${c.path}`)).toEqual(['PATCH /api/v1/projects/3/insights/4']);
    expect(calls.find((c) => c.method === 'PATCH')!.body).toEqual({ name: 'Signups', query });
  });

  it('shows the API’s error and the field at fault', async () => {
    api((c) => (c.method === 'POST' && c.path.endsWith('/insights') ? json(400, { error: 'invalid_request', message: 'unknown math', field: 'query.series[0].math' }) : undefined));
    const onSaved = vi.fn();
    const user = userEvent.setup();
    renderAt(<SaveInsightDialog projectId={3} query={query} defaultName="n" onClose={() => {}} onSaved={onSaved} />);
    await user.click(screen.getByRole('button', { name: 'Save' }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('unknown math');
    expect(alert).toHaveTextContent('query.series[0].math');
    expect(onSaved).not.toHaveBeenCalled();
  });

  it('needs a name, and closes on Escape', async () => {
    api();
    const onClose = vi.fn();
    const user = userEvent.setup();
    renderAt(<SaveInsightDialog projectId={3} query={query} defaultName="" onClose={onClose} onSaved={() => {}} />);
    expect(screen.getByRole('button', { name: 'Save' })).toBeDisabled();
    await user.keyboard('{Escape}');
    expect(onClose).toHaveBeenCalled();
  });
});
