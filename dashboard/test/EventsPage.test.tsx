import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { EventItem } from '../src/api/types';
import { EventsPage } from '../src/pages/EventsPage';
import { searchFor } from '../src/urlState';
import { json, renderAt, stubFetch } from './helpers';

afterEach(() => vi.unstubAllGlobals());

const ev = (i: number): EventItem => ({ uuid: `u-${i}`, event: '$pageview', distinct_id: `user-${i}`, properties: { $browser: 'Chrome', n: i }, timestamp: `2026-11-26T14:0${i}:00Z` });

describe('EventsPage', () => {
  it('lists events with the URL’s filters, loads more by cursor, and expands a row', async () => {
    const { calls } = stubFetch(async (c) => {
      if (c.path === '/api/v1/projects/3/events') {
        return c.search.get('cursor') === 'next-1' ? json(200, { results: [ev(3)], next_cursor: null }) : json(200, { results: [ev(1), ev(2)], next_cursor: 'next-1' });
      }
      return json(200, { results: [] });
    });
    const user = userEvent.setup();
    const filter = { event: '$pageview', properties: [{ key: '$browser', operator: 'exact', value: 'Chrome' }, { key: '', value: '' }] };
    renderAt(<EventsPage />, { url: `/project/3/events${searchFor(filter)}` });

    await screen.findByRole('table', { name: 'Recent events' });
    expect(screen.getAllByText('$pageview', { selector: 'td' })).toHaveLength(2);
    const first = calls.find((c) => c.path.endsWith('/events'))!;
    expect(first.search.get('event')).toBe('$pageview');
    expect(JSON.parse(first.search.get('properties')!)).toEqual([{ key: '$browser', operator: 'exact', value: 'Chrome' }]);

    await user.click(screen.getByRole('button', { name: 'Load more' }));
    await waitFor(() => expect(screen.getAllByText('$pageview', { selector: 'td' })).toHaveLength(3));
    expect(calls.filter((c) => c.path.endsWith('/events')).at(-1)!.search.get('cursor')).toBe('next-1');
    expect(screen.queryByRole('button', { name: 'Load more' })).toBeNull();

    const toggle = screen.getAllByRole('button', { name: /^Show properties of \$pageview/ })[0]!;
    expect(toggle).toHaveAttribute('aria-expanded', 'false');
    await user.click(toggle);
    expect(toggle).toHaveAttribute('aria-expanded', 'true');
    expect(document.getElementById('ev-u-1')).toHaveTextContent('$browserChrome');
  });

  it('refreshes every few seconds unless turned off', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      const { calls } = stubFetch(async (c) => (c.path.endsWith('/events') ? json(200, { results: [ev(1)], next_cursor: null }) : json(200, { results: [] })));
      renderAt(<EventsPage />, { url: '/project/3/events' });
      await screen.findByRole('table', { name: 'Recent events' });
      const count = () => calls.filter((c) => c.path.endsWith('/events')).length;
      expect(count()).toBe(1);
      await vi.advanceTimersByTimeAsync(5100);
      await waitFor(() => expect(count()).toBe(2));
      const box = screen.getByLabelText(/Refresh every 5 s/);
      box.click();
      expect(box).not.toBeChecked();
      await vi.advanceTimersByTimeAsync(11000);
      expect(count()).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('says when no event matches the filters', async () => {
    stubFetch(async () => json(200, { results: [], next_cursor: null }));
    renderAt(<EventsPage />, { url: `/project/3/events${searchFor({ event: 'signup' })}` });
    expect(await screen.findByTestId('empty-state')).toHaveTextContent('No events in the last 30 days match');
    expect(screen.queryByRole('button', { name: 'Load sample data' })).toBeNull();
  });

  it('offers sample data in an empty project and links its dashboard once loaded', async () => {
    const { calls } = stubFetch(async (c) => {
      if (c.method === 'POST' && c.path === '/api/v1/projects/3/sample-data') {
        return json(202, { events: 10769, visitors: 600, signed_up: 260, buyers: 169, insight_ids: [1, 2], cohort_ids: [1], dashboard_id: 9 });
      }
      return json(200, { results: [], next_cursor: null });
    });
    const user = userEvent.setup();
    renderAt(<EventsPage />, { url: '/project/3/events' });
    expect(await screen.findByTestId('empty-state')).toHaveTextContent('No events in the last 30 days');
    await user.click(screen.getByRole('button', { name: 'Load sample data' }));
    const status = await screen.findByRole('status');
    expect(status).toHaveTextContent('Loaded 10,769 events of 600 visitors');
    expect(screen.getByRole('link', { name: /Shop overview/ })).toHaveAttribute('href', '/project/3/dashboards/9');
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(1);
  });

  it('says why sample data was refused', async () => {
    stubFetch(async (c) =>
      c.method === 'POST' ? json(403, { error: 'forbidden', message: 'this credential lacks the events:write permission on this project' }) : json(200, { results: [], next_cursor: null }),
    );
    const user = userEvent.setup();
    renderAt(<EventsPage />, { url: '/project/3/events' });
    await user.click(await screen.findByRole('button', { name: 'Load sample data' }));
    expect(await screen.findByText(/lacks the events:write permission/)).toBeInTheDocument();
  });
});
