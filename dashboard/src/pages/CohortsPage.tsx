import { useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { computeCohort, createCohort, deleteCohort, listCohorts } from '../api/query';
import type { SavedCohort, CohortInput, PropertyFilter } from '../api/types';
import { PageHeader } from '../components/PageHeader';
import { PropertyFilters } from '../components/PropertyFilters';
import { Empty, FormError, ListView } from '../components/States';
import { formatNumber, formatTimestamp } from '../format';
import { useProject } from '../project';
import { completeFilters } from '../queries';

/** Distinct ids from pasted CSV text: the first column of each line, without a header named like one. */
export function idsFromCsv(text: string): string[] {
  const ids = text
    .split(/\r?\n/)
    .map((line) => line.split(',')[0]?.trim().replace(/^"(.*)"$/, '$1') ?? '')
    .filter((id) => id !== '');
  if (ids.length > 0 && /^(distinct_?id|id)$/i.test(ids[0]!)) ids.shift();
  return [...new Set(ids)];
}

function describe(c: SavedCohort): string {
  if (c.kind === 'static') return `${formatNumber(c.distinct_id_count)} distinct ids`;
  const parts = [
    ...c.properties.map((f) => `${f.key} ${f.operator ?? 'exact'}${f.value !== undefined && f.value !== null ? ` ${String(f.value)}` : ''}`),
    ...c.behaviour.map((b) => `did ${b.event} ≥ ${b.min_count ?? 1}× in ${b.days} days`),
  ];
  return parts.join(' and ');
}

/** Saved cohorts: create (by person properties and behaviour, or from a list of ids), count, delete. */
export function CohortsPage() {
  const project = useProject();
  const queryClient = useQueryClient();
  const list = useQuery({ queryKey: ['cohorts', project.id], queryFn: ({ signal }) => listCohorts(project.id, signal) });
  const refresh = () => void queryClient.invalidateQueries({ queryKey: ['cohorts', project.id] });
  const [name, setName] = useState('');
  const [kind, setKind] = useState<'dynamic' | 'static'>('dynamic');
  const [properties, setProperties] = useState<PropertyFilter[]>([]);
  const [event, setEvent] = useState('');
  const [minCount, setMinCount] = useState(1);
  const [days, setDays] = useState(30);
  const [csv, setCsv] = useState('');
  const create = useMutation({
    mutationFn: (input: CohortInput) => createCohort(project.id, input),
    onSuccess: (c) => {
      setName('');
      setProperties([]);
      setEvent('');
      setCsv('');
      refresh();
      compute.mutate(c.id);
    },
  });
  const compute = useMutation({ mutationFn: (id: number) => computeCohort(project.id, id), onSuccess: refresh });
  const remove = useMutation({ mutationFn: (id: number) => deleteCohort(project.id, id), onSuccess: refresh });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const input: CohortInput = { name: name.trim() };
    if (kind === 'static') input.distinct_ids = idsFromCsv(csv);
    else {
      const filters = completeFilters(properties);
      if (filters) input.properties = filters.map(({ type: _t, ...f }) => f);
      if (event.trim()) input.behaviour = [{ event: event.trim(), min_count: minCount, days }];
    }
    create.mutate(input);
  };

  return (
    <div className="page page-cohorts">
      <PageHeader title="Cohorts" />
      <form className="editor" aria-label="New cohort" onSubmit={submit}>
        <div className="field">
          <label htmlFor="cohort-name">Name</label>
          <input id="cohort-name" value={name} maxLength={200} onChange={(e) => setName(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="cohort-kind">Persons</label>
          <select id="cohort-kind" value={kind} onChange={(e) => setKind(e.target.value as 'dynamic' | 'static')}>
            <option value="dynamic">matching properties and behaviour</option>
            <option value="static">from a list of distinct ids (CSV)</option>
          </select>
        </div>
        {kind === 'static' ? (
          <div className="field">
            <label htmlFor="cohort-csv">Distinct ids, one per line (the first column of a CSV)</label>
            <textarea id="cohort-csv" rows={6} value={csv} onChange={(e) => setCsv(e.target.value)} />
          </div>
        ) : (
          <>
            <PropertyFilters label="Person properties" addLabel="Add person property" value={properties} onChange={setProperties} />
            <fieldset className="editor-inline">
              <legend>Behaviour</legend>
              <div className="field">
                <label htmlFor="cohort-event">Did event</label>
                <input id="cohort-event" value={event} maxLength={400} placeholder="e.g. purchase" onChange={(e) => setEvent(e.target.value)} />
              </div>
              <div className="field">
                <label htmlFor="cohort-min">at least (times)</label>
                <input id="cohort-min" type="number" min={1} value={minCount} onChange={(e) => setMinCount(Math.max(1, Number(e.target.value) || 1))} />
              </div>
              <div className="field">
                <label htmlFor="cohort-days">in the last (days)</label>
                <input id="cohort-days" type="number" min={1} max={3660} value={days} onChange={(e) => setDays(Math.max(1, Number(e.target.value) || 1))} />
              </div>
            </fieldset>
          </>
        )}
        <button type="submit" className="btn btn-primary" disabled={!name.trim() || create.isPending}>
          {create.isPending ? 'Saving…' : 'Save cohort'}
        </button>
        <FormError error={create.error} />
      </form>
      <ListView
        query={list}
        items={(d) => d.results}
        empty={<Empty title="No cohorts yet">A cohort filters any analysis: choose “Cohort (id)” in a filter row and give its id.</Empty>}
      >
        {(d) => (
          <table className="data-table" aria-label="Cohorts list">
            <thead>
              <tr>
                <th scope="col">ID</th>
                <th scope="col">Name</th>
                <th scope="col">Rule</th>
                <th scope="col">Persons</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {d.results.map((c) => (
                <tr key={c.id}>
                  <td className="mono">{c.id}</td>
                  <td>{c.name}</td>
                  <td className="muted">{describe(c)}</td>
                  <td title={c.size_computed_at ? `counted ${formatTimestamp(c.size_computed_at)}` : 'not counted yet'}>
                    {c.size === null ? '—' : formatNumber(c.size)}
                  </td>
                  <td className="nowrap">
                    <button type="button" className="btn btn-small" onClick={() => compute.mutate(c.id)} disabled={compute.isPending}>
                      Count
                    </button>{' '}
                    <button type="button" className="btn btn-small btn-danger-outline" aria-label={`Delete cohort ${c.name}`} onClick={() => remove.mutate(c.id)}>
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </ListView>
      <FormError error={compute.error ?? remove.error} />
    </div>
  );
}
