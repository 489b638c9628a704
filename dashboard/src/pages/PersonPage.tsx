import { Fragment, useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Link, useNavigate, useParams } from 'react-router';
import { deletePerson, exportPerson, getPerson } from '../api/query';
import { ConfirmDialog } from '../components/Modal';
import { PageHeader } from '../components/PageHeader';
import { Empty, ErrorState, FormError, Loading } from '../components/States';
import { formatNumber, formatTimestamp } from '../format';
import { useProject } from '../project';
import { personName } from './PersonsPage';

const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

/** One person: properties, distinct ids, and their latest events across all ids. */
export function PersonPage() {
  const project = useProject();
  const { personId = '' } = useParams();
  const person = useQuery({
    queryKey: ['person', project.id, personId],
    queryFn: ({ signal }) => getPerson(project.id, personId, signal),
  });
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [confirming, setConfirming] = useState(false);
  const download = useMutation({
    mutationFn: () => exportPerson(project.id, personId),
    onSuccess: (doc) => {
      const blob = new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' });
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = `person-${personId}.json`;
      a.click();
      URL.revokeObjectURL(url);
    },
  });
  const remove = useMutation({
    mutationFn: () => deletePerson(project.id, personId),
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: ['persons', project.id] });
      navigate(`/project/${project.id}/persons?deleted=1`);
    },
  });
  const back = (
    <Link className="btn btn-small" to={`/project/${project.id}/persons`}>
      All persons
    </Link>
  );
  if (person.isPending) return <Loading label="Loading the person…" />;
  if (person.error) {
    return (
      <div className="page page-person">
        <PageHeader title="Person">{back}</PageHeader>
        <ErrorState error={person.error} onRetry={() => void person.refetch()} />
      </div>
    );
  }
  const p = person.data;
  const properties = Object.entries(p.properties ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return (
    <div className="page page-person">
      <PageHeader title={personName(p)}>
        {back}
        <button type="button" className="btn btn-small" onClick={() => download.mutate()} disabled={download.isPending}>
          {download.isPending ? 'Exporting…' : 'Export JSON'}
        </button>
        <button type="button" className="btn btn-danger btn-small" onClick={() => setConfirming(true)}>
          Delete person
        </button>
      </PageHeader>
      {download.error ? <FormError error={download.error} /> : null}
      {confirming ? (
        <ConfirmDialog
          title="Delete this person?"
          message={`Every event of ${p.distinct_ids.join(', ')} (${formatNumber(p.event_count)} events) and the person’s properties are deleted. Analyses stop counting them at once; this cannot be undone.`}
          confirmLabel="Delete person and events"
          onConfirm={() => remove.mutate()}
          onCancel={() => setConfirming(false)}
          busy={remove.isPending}
          error={remove.error ? <FormError error={remove.error} /> : null}
        />
      ) : null}
      <section aria-label="Summary" className="person-summary">
        <dl className="props">
          <dt>Person ID</dt>
          <dd className="mono">{p.id}</dd>
          <dt>First seen</dt>
          <dd>
            <time dateTime={p.first_seen}>{formatTimestamp(p.first_seen)}</time>
          </dd>
          <dt>Last seen</dt>
          <dd>
            <time dateTime={p.last_seen}>{formatTimestamp(p.last_seen)}</time>
          </dd>
          <dt>Events</dt>
          <dd>{formatNumber(p.event_count)}</dd>
        </dl>
      </section>
      <section aria-labelledby="person-ids">
        <h2 id="person-ids">Distinct IDs</h2>
        <ul className="id-list" aria-label="Distinct IDs">
          {p.distinct_ids.map((id) => (
            <li key={id} className="mono">
              {id}
            </li>
          ))}
        </ul>
      </section>
      <section aria-labelledby="person-props">
        <h2 id="person-props">Properties</h2>
        {properties.length === 0 ? (
          <Empty title="No properties">$set, $set_once and $unset on this person’s events give them properties.</Empty>
        ) : (
          <dl className="props" aria-label="Person properties">
            {properties.map(([k, v]) => (
              <Fragment key={k}>
                <dt>{k}</dt>
                <dd className="mono">{show(v)}</dd>
              </Fragment>
            ))}
          </dl>
        )}
      </section>
      <section aria-labelledby="person-events">
        <h2 id="person-events">Latest events</h2>
        {p.recent_events.length === 0 ? (
          <Empty title="No events" />
        ) : (
          <div className="table-scroll">
            <table className="data-table" aria-label="Latest events">
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Event</th>
                  <th scope="col">Distinct ID</th>
                </tr>
              </thead>
              <tbody>
                {p.recent_events.map((e) => (
                  <tr key={e.uuid}>
                    <td className="nowrap">
                      <time dateTime={e.timestamp}>{formatTimestamp(e.timestamp)}</time>
                    </td>
                    <td className="event-name">{e.event}</td>
                    <td className="mono">{e.distinct_id}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </div>
  );
}
