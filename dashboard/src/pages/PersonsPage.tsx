import { useEffect, useState } from 'react';
import { useInfiniteQuery, useQuery } from '@tanstack/react-query';
import { Link, useSearchParams } from 'react-router';
import { listPersonDeletions, listPersons } from '../api/query';
import type { Person } from '../api/types';
import { PageHeader } from '../components/PageHeader';
import { Empty, ErrorState, Loading } from '../components/States';
import { formatTimestamp } from '../format';
import { useProject } from '../project';

const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 300;

/** What a person is called: their email or name property, else their first identified-looking id. */
export function personName(p: Pick<Person, 'distinct_ids' | 'properties'>): string {
  for (const k of ['email', '$email', 'name', '$name']) {
    const v = p.properties?.[k];
    if (typeof v === 'string' && v.trim()) return v;
  }
  return p.distinct_ids[p.distinct_ids.length - 1] ?? '(no id)';
}

/** The persons list: most recently active first, searchable by distinct id or property. */
export function PersonsPage() {
  const project = useProject();
  const [params, setParams] = useSearchParams();
  const search = params.get('search') ?? '';
  const [text, setText] = useState(search);
  // The search applies once typing pauses; the URL keeps it.
  useEffect(() => {
    if (text === search) return undefined;
    const t = setTimeout(() => setParams(text ? { search: text } : {}, { replace: true }), SEARCH_DELAY_MS);
    return () => clearTimeout(t);
  }, [text, search, setParams]);

  const persons = useInfiniteQuery({
    queryKey: ['persons', project.id, search],
    queryFn: ({ pageParam, signal }) => listPersons(project.id, { search, limit: PAGE_SIZE, offset: pageParam }, signal),
    initialPageParam: 0,
    getNextPageParam: (last) => last.next_offset ?? undefined,
  });
  const rows = persons.data?.pages.flatMap((p) => p.results) ?? [];
  // Deletions on request, with their state (pending ones are refreshed until done).
  const deletions = useQuery({
    queryKey: ['person-deletions', project.id],
    queryFn: ({ signal }) => listPersonDeletions(project.id, signal),
    refetchInterval: (q) => (q.state.data?.results.some((d) => d.status === 'pending') ? 3000 : false),
  });
  const jobs = deletions.data?.results ?? [];

  return (
    <div className="page page-persons">
      <PageHeader title="Persons" />
      {params.get('deleted') ? (
        <p className="notice" role="status">
          The person is being deleted: analyses no longer count their events, which are removed within seconds.
        </p>
      ) : null}
      <form className="editor editor-inline" role="search" aria-label="Search persons" onSubmit={(e) => e.preventDefault()}>
        <div className="field">
          <label htmlFor="persons-search">Search</label>
          <input
            id="persons-search"
            type="search"
            placeholder="A distinct id, an email, any property value"
            value={text}
            maxLength={400}
            onChange={(e) => setText(e.target.value)}
          />
        </div>
      </form>
      <section className="results" aria-label="Persons" aria-busy={persons.isFetching}>
        {persons.error && rows.length === 0 ? (
          <ErrorState error={persons.error} onRetry={() => void persons.refetch()} />
        ) : persons.isPending ? (
          <Loading label="Loading persons…" />
        ) : rows.length === 0 ? (
          <Empty title={search ? `No person matches “${search}”` : 'No persons yet'}>
            A person appears with their first event; $identify and $create_alias join a visitor’s anonymous id to them.
          </Empty>
        ) : (
          <>
            <div className="table-scroll">
              <table className="data-table persons-table" aria-label="Persons list">
                <thead>
                  <tr>
                    <th scope="col">Person</th>
                    <th scope="col">Distinct IDs</th>
                    <th scope="col">First seen</th>
                    <th scope="col">Last seen</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((p) => (
                    <tr key={p.id}>
                      <td>
                        <Link to={`/project/${project.id}/persons/${p.id}`}>{personName(p)}</Link>
                      </td>
                      <td className="mono ellipsis" title={p.distinct_ids.join(', ')}>
                        {p.distinct_ids.slice(0, 3).join(', ')}
                        {p.distinct_ids.length > 3 ? ` (+${p.distinct_ids.length - 3})` : ''}
                      </td>
                      <td className="nowrap">
                        <time dateTime={p.first_seen}>{formatTimestamp(p.first_seen)}</time>
                      </td>
                      <td className="nowrap">
                        <time dateTime={p.last_seen}>{formatTimestamp(p.last_seen)}</time>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <div className="load-more">
              {persons.hasNextPage ? (
                <button type="button" className="btn" onClick={() => void persons.fetchNextPage()} disabled={persons.isFetchingNextPage}>
                  {persons.isFetchingNextPage ? 'Loading…' : 'Load more'}
                </button>
              ) : null}
            </div>
          </>
        )}
      </section>
      {jobs.length > 0 ? (
        <section aria-labelledby="deletions-title">
          <h2 id="deletions-title">Deletions on request</h2>
          <table className="data-table" aria-label="Person deletions">
            <thead>
              <tr>
                <th scope="col">Requested</th>
                <th scope="col">Distinct IDs</th>
                <th scope="col">State</th>
              </tr>
            </thead>
            <tbody>
              {jobs.slice(0, 20).map((d) => (
                <tr key={d.id}>
                  <td className="nowrap">
                    <time dateTime={d.requested_at}>{formatTimestamp(d.requested_at)}</time>
                  </td>
                  <td className="mono ellipsis">{d.distinct_ids.join(', ')}</td>
                  <td>
                    {d.status === 'done' && d.finished_at
                      ? `deleted ${formatTimestamp(d.finished_at)}`
                      : d.last_error
                        ? `pending (retrying: ${d.last_error})`
                        : 'pending (already left out of every answer)'}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      ) : null}
    </div>
  );
}
