import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Person, PersonDetail } from '../src/api/types';
import { PersonPage } from '../src/pages/PersonPage';
import { PersonsPage, personName } from '../src/pages/PersonsPage';
import { json, renderAt, stubFetch } from './helpers';

afterEach(() => vi.unstubAllGlobals());

const person = (i: number, props: Record<string, unknown> = {}): Person => ({
  id: `1116031815403439726${i}`,
  distinct_ids: [`anon-${i}`, `user-${i}`],
  properties: props,
  first_seen: '2026-11-20T09:12:00Z',
  last_seen: `2026-11-26T14:0${i}:00Z`,
});

describe('PersonsPage', () => {
  it('lists persons, searches, loads more by offset, and links to a person', async () => {
    const { calls } = stubFetch(async (c) => {
      if (c.path !== '/api/v1/projects/3/persons') return undefined;
      if (c.search.get('search') === 'ada') return json(200, { results: [person(9, { email: 'ada@example.com' })], next_offset: null });
      return c.search.get('offset') === '50'
        ? json(200, { results: [person(3)], next_offset: null })
        : json(200, { results: [person(1, { email: 'bo@example.com' }), person(2)], next_offset: 50 });
    });
    const user = userEvent.setup();
    renderAt(<PersonsPage />, { url: '/project/3/persons' });
    await screen.findByRole('table', { name: 'Persons list' });
    expect(screen.getByRole('link', { name: 'bo@example.com' })).toHaveAttribute('href', '/project/3/persons/11160318154034397261');
    expect(screen.getByRole('link', { name: 'user-2' })).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Load more' }));
    await screen.findByRole('link', { name: 'user-3' });
    expect(calls.at(-1)!.search.get('offset')).toBe('50');

    await user.type(screen.getByLabelText('Search'), 'ada');
    await screen.findByRole('link', { name: 'ada@example.com' });
    expect(calls.at(-1)!.search.get('search')).toBe('ada');
    expect(screen.queryByRole('link', { name: 'bo@example.com' })).toBeNull();
  });

  it('shows the deletions on request and their state', async () => {
    stubFetch(async (c) => {
      if (c.path.endsWith('/person-deletions')) {
        return json(200, {
          results: [
            { id: 2, person_id: '1', distinct_ids: ['anon-1', 'user-1'], status: 'pending', requested_by: 1, requested_at: '2026-12-04T10:00:00Z', finished_at: null, attempts: 0, last_error: null },
            { id: 1, person_id: '2', distinct_ids: ['user-2'], status: 'done', requested_by: 1, requested_at: '2026-12-03T10:00:00Z', finished_at: '2026-12-03T10:00:03Z', attempts: 1, last_error: null },
          ],
        });
      }
      return json(200, { results: [person(1)], next_offset: null });
    });
    renderAt(<PersonsPage />, { url: '/project/3/persons' });
    const table = await screen.findByRole('table', { name: 'Person deletions' });
    expect(table).toHaveTextContent('anon-1, user-1pending (already left out of every answer)');
    expect(table).toHaveTextContent('user-2deleted');
  });

  it('says when nothing matches', async () => {
    stubFetch(async () => json(200, { results: [], next_offset: null }));
    renderAt(<PersonsPage />, { url: '/project/3/persons?search=nobody' });
    expect(await screen.findByText('No person matches “nobody”')).toBeInTheDocument();
  });

  it('names a person by email, else by their last id', () => {
    expect(personName(person(1, { email: 'x@y.z' }))).toBe('x@y.z');
    expect(personName(person(1))).toBe('user-1');
  });
});

describe('PersonPage', () => {
  it('shows the properties, ids and latest events of every id', async () => {
    const detail: PersonDetail = {
      ...person(4, { email: 'ada@example.com', plan: 'pro', seats: 3 }),
      event_count: 1234,
      recent_events: [
        { uuid: 'u-2', event: 'purchase', distinct_id: 'user-4', properties: {}, timestamp: '2026-11-26T14:05:12Z' },
        { uuid: 'u-1', event: '$pageview', distinct_id: 'anon-4', properties: {}, timestamp: '2026-11-20T09:12:00Z' },
      ],
    };
    stubFetch(async (c) => (c.path === `/api/v1/projects/3/persons/${detail.id}` ? json(200, detail) : undefined));
    renderAt(<PersonPage />, { url: `/project/3/persons/${detail.id}`, path: '/project/:projectId/persons/:personId' });
    expect(await screen.findByRole('heading', { name: 'ada@example.com' })).toBeInTheDocument();
    expect(screen.getByRole('list', { name: 'Distinct IDs' })).toHaveTextContent('anon-4user-4');
    expect(screen.getByLabelText('Person properties')).toHaveTextContent('emailada@example.complanproseats3');
    expect(screen.getByText('1,234')).toBeInTheDocument();
    const rows = screen.getByRole('table', { name: 'Latest events' }).querySelectorAll('tbody tr');
    expect(rows).toHaveLength(2);
    expect(rows[1]).toHaveTextContent('anon-4');
  });

  it('deletes a person after confirmation', async () => {
    const detail: PersonDetail = { ...person(5), event_count: 3, recent_events: [] };
    const { calls } = stubFetch(async (c) => {
      if (c.path !== `/api/v1/projects/3/persons/${detail.id}`) return json(200, { results: [], next_offset: null });
      if (c.method === 'DELETE') return json(202, { id: 1, person_id: detail.id, distinct_ids: detail.distinct_ids, status: 'pending', requested_by: 1, requested_at: '2026-12-04T10:00:00Z', finished_at: null, attempts: 0, last_error: null });
      return json(200, detail);
    });
    const user = userEvent.setup();
    const { router } = renderAt(<PersonPage />, { url: `/project/3/persons/${detail.id}`, path: '/project/:projectId/persons/:personId?' });
    await user.click(await screen.findByRole('button', { name: 'Delete person' }));
    const dialog = screen.getByRole('alertdialog', { name: 'Delete this person?' });
    expect(dialog).toHaveTextContent('anon-5, user-5 (3 events)');
    await user.click(screen.getByRole('button', { name: 'Delete person and events' }));
    await waitFor(() => expect(router.state.location.pathname).toBe('/project/3/persons'));
    expect(calls.filter((c) => c.method === 'DELETE')).toHaveLength(1);
  });

  it('exports a person as a JSON download', async () => {
    const detail: PersonDetail = { ...person(6), event_count: 1, recent_events: [] };
    const doc = { person: person(6), events: [] };
    stubFetch(async (c) => {
      if (c.path === `/api/v1/projects/3/persons/${detail.id}/export`) return json(200, doc);
      if (c.path === `/api/v1/projects/3/persons/${detail.id}`) return json(200, detail);
      return undefined;
    });
    const created: Blob[] = [];
    class DownloadURL extends URL {
      static override createObjectURL(b: Blob) {
        created.push(b);
        return 'blob:x';
      }
      static override revokeObjectURL() {}
    }
    vi.stubGlobal('URL', DownloadURL);
    const click = vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(() => {});
    const user = userEvent.setup();
    renderAt(<PersonPage />, { url: `/project/3/persons/${detail.id}`, path: '/project/:projectId/persons/:personId' });
    await user.click(await screen.findByRole('button', { name: 'Export JSON' }));
    await waitFor(() => expect(click).toHaveBeenCalled());
    const text = await new Promise<string>((resolve) => {
      const r = new FileReader();
      r.onload = () => resolve(String(r.result));
      r.readAsText(created[0]!);
    });
    expect(JSON.parse(text)).toEqual(doc);
    click.mockRestore();
  });

  it('shows a missing person as not found', async () => {
    stubFetch(async () => json(404, { error: 'not_found', message: 'no such person in this project' }));
    renderAt(<PersonPage />, { url: '/project/3/persons/1', path: '/project/:projectId/persons/:personId' });
    await waitFor(() => expect(screen.getByText('Not found, or no access')).toBeInTheDocument());
  });
});
