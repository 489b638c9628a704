import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { SavedCohort } from '../src/api/types';
import { CohortsPage, idsFromCsv } from '../src/pages/CohortsPage';
import { json, renderAt, stubFetch } from './helpers';

afterEach(() => vi.unstubAllGlobals());

const cohort = (id: number, over: Partial<SavedCohort> = {}): SavedCohort => ({
  id,
  name: `Cohort ${id}`,
  kind: 'dynamic',
  properties: [{ key: 'plan', operator: 'exact', value: 'pro' }],
  behaviour: [{ event: 'purchase', min_count: 2, days: 30 }],
  distinct_id_count: 0,
  size: 118,
  size_computed_at: '2026-12-04T10:00:00Z',
  created_at: '2026-12-04T09:00:00Z',
  updated_at: '2026-12-04T09:00:00Z',
  ...over,
});

describe('CohortsPage', () => {
  it('lists cohorts with their rule and size, and saves a static one from CSV, then counts it', async () => {
    const saved: SavedCohort[] = [cohort(1)];
    const { calls } = stubFetch(async (c) => {
      if (c.path === '/api/v1/projects/3/cohorts' && c.method === 'GET') return json(200, { results: saved });
      if (c.path === '/api/v1/projects/3/cohorts' && c.method === 'POST') {
        const made = cohort(2, { name: 'Beta', kind: 'static', properties: [], behaviour: [], distinct_id_count: 2, size: null, size_computed_at: null });
        saved.unshift(made);
        return json(201, made);
      }
      if (c.path === '/api/v1/projects/3/cohorts/2/compute') {
        saved[0] = { ...saved[0]!, size: 2 };
        return json(200, saved[0]);
      }
      return undefined;
    });
    const user = userEvent.setup();
    renderAt(<CohortsPage />, { url: '/project/3/cohorts' });
    const table = await screen.findByRole('table', { name: 'Cohorts list' });
    expect(table).toHaveTextContent('plan exact pro and did purchase ≥ 2× in 30 days');
    expect(table).toHaveTextContent('118');

    await user.type(screen.getByLabelText('Name'), 'Beta');
    await user.selectOptions(screen.getByLabelText('Persons'), 'static');
    await user.type(screen.getByLabelText(/Distinct ids/), 'distinct_id{Enter}anon-2{Enter}user-3,extra{Enter}anon-2');
    await user.click(screen.getByRole('button', { name: 'Save cohort' }));
    await waitFor(() => expect(calls.some((c) => c.path.endsWith('/cohorts/2/compute'))).toBe(true));
    expect(calls.find((c) => c.method === 'POST' && c.path.endsWith('/cohorts'))!.body).toEqual({ name: 'Beta', distinct_ids: ['anon-2', 'user-3'] });
    await waitFor(() => expect(screen.getByRole('table', { name: 'Cohorts list' })).toHaveTextContent('2 distinct ids'));
  });

  it('reads ids from CSV text', () => {
    expect(idsFromCsv('id\r\n"a",1\nb\n\na')).toEqual(['a', 'b']);
    expect(idsFromCsv('x\ny')).toEqual(['x', 'y']);
  });
});
