import { useId } from 'react';
import { useQuery } from '@tanstack/react-query';
import { listCohorts } from '../api/query';
import type { Breakdown, FilterOperator, FilterScalar, PropertyFilter, PropertyKind } from '../api/types';
import { useProject } from '../project';
import { OPERATORS, operatorIsNumeric, operatorTakesValue } from '../queries';
import { PropertyKeyPicker, PropertyValuePicker } from './Pickers';

/** The session properties trends filter and break down by (`type: 'session'`). */
export const SESSION_KEYS = ['$session_duration', '$entry_pathname', '$exit_pathname', '$pageview_count', '$event_count', '$is_bounce'];

/** A choice among the session properties. */
function SessionKeyChoice({ label, value, onChange }: { label: string; value: string; onChange: (key: string) => void }) {
  const id = useId();
  return (
    <div className="field">
      <label className="visually-hidden" htmlFor={id}>
        {label}
      </label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
        {SESSION_KEYS.includes(value) ? null : <option value={value}>{value || 'Choose…'}</option>}
        {SESSION_KEYS.map((k) => (
          <option key={k} value={k}>
            {k}
          </option>
        ))}
      </select>
    </div>
  );
}

/** The JSON value of a filter for the text typed in its value field. */
export function filterValue(operator: FilterOperator | undefined, text: string): FilterScalar {
  if (operatorIsNumeric(operator)) {
    const t = text.trim();
    const n = Number(t);
    if (t !== '' && Number.isFinite(n)) return n;
  }
  return text;
}

function valueText(v: PropertyFilter['value']): string {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) return v.map(String).join(', ');
  return String(v);
}

/** A filter with a new operator: its value dropped, kept, or read as a number as the operator needs. */
export function withOperator(f: PropertyFilter, operator: FilterOperator): PropertyFilter {
  const next: PropertyFilter = { key: f.key, operator };
  if (f.type) next.type = f.type;
  if (operatorTakesValue(operator)) {
    const v = f.value;
    next.value = Array.isArray(v) && !operatorIsNumeric(operator) ? v : filterValue(operator, valueText(v));
  }
  return next;
}

interface PropertyFiltersProps {
  value: PropertyFilter[] | undefined;
  onChange: (filters: PropertyFilter[]) => void;
  /** Suggest the properties and values of this event. */
  event?: string | null;
  /** Names the group for screen readers, e.g. "Filters of series A". */
  label?: string;
  addLabel?: string;
  /** Offer the session's properties too (trends). */
  sessions?: boolean;
}

/** Edits a list of property filters ({key, operator, value}), all of which must match. */
export function PropertyFilters({ value, onChange, event, label = 'Filters', addLabel = 'Add filter', sessions = false }: PropertyFiltersProps) {
  const base = useId();
  const filters = value ?? [];
  const update = (i: number, f: PropertyFilter) => onChange(filters.map((x, j) => (j === i ? f : x)));
  const remove = (i: number) => onChange(filters.filter((_, j) => j !== i));
  return (
    <div className="filters" role="group" aria-label={label}>
      {filters.map((f, i) => {
        const op = f.operator ?? 'exact';
        return (
          <div className="filter-row" key={i} role="group" aria-label={`${label}: filter ${i + 1}`}>
            <div className="field">
              <label className="visually-hidden" htmlFor={`${base}-kind-${i}`}>{`Filter ${i + 1} applies to`}</label>
              <select
                id={`${base}-kind-${i}`}
                value={f.type ?? 'event'}
                onChange={(e) => {
                  const kind = e.target.value as PropertyKind;
                  const next: PropertyFilter = { ...f, type: kind };
                  if (kind === 'event') delete next.type;
                  if (kind === 'session' && !SESSION_KEYS.includes(f.key)) next.key = '$session_duration';
                  update(i, next);
                }}
              >
                <option value="event">Event</option>
                <option value="person">Person</option>
                <option value="cohort">Cohort (id)</option>
                {sessions || f.type === 'session' ? <option value="session">Session</option> : null}
              </select>
            </div>
            {f.type === 'session' ? (
              <SessionKeyChoice label={`Filter ${i + 1} property`} value={f.key} onChange={(key) => update(i, { ...f, key })} />
            ) : (
              <PropertyKeyPicker
                label={`Filter ${i + 1} property`}
                hideLabel
                value={f.key}
                event={event}
                onChange={(key) => update(i, { ...f, key })}
              />
            )}
            <div className="field">
              <label className="visually-hidden" htmlFor={`${base}-op-${i}`}>{`Filter ${i + 1} operator`}</label>
              <select id={`${base}-op-${i}`} value={op} onChange={(e) => update(i, withOperator(f, e.target.value as FilterOperator))}>
                {OPERATORS.some((o) => o.value === op) ? null : <option value={op}>{op}</option>}
                {OPERATORS.map((o) => (
                  <option key={o.value} value={o.value}>
                    {o.label}
                  </option>
                ))}
              </select>
            </div>
            {operatorTakesValue(op) ? (
              <PropertyValuePicker
                label={`Filter ${i + 1} value`}
                hideLabel
                propertyKey={f.key}
                event={event}
                value={valueText(f.value)}
                onChange={(text) => update(i, { ...f, operator: op, value: filterValue(op, text) })}
              />
            ) : null}
            <button type="button" className="btn-icon" aria-label={`Remove filter ${i + 1}`} onClick={() => remove(i)}>
              ×
            </button>
          </div>
        );
      })}
      <button type="button" className="btn btn-small" onClick={() => onChange([...filters, { key: '', operator: 'exact', value: '' }])}>
        + {addLabel}
      </button>
    </div>
  );
}

/** What a breakdown reads: the event's property, its person's, or the person's cohorts. */
export function BreakdownKind({
  value,
  onChange,
  sessions = false,
}: {
  value: PropertyKind | undefined;
  onChange: (kind: PropertyKind) => void;
  sessions?: boolean;
}) {
  const id = useId();
  return (
    <div className="field">
      <label className="visually-hidden" htmlFor={id}>
        Breakdown property of
      </label>
      <select id={id} value={value ?? 'event'} onChange={(e) => onChange(e.target.value as PropertyKind)}>
        <option value="event">of the event</option>
        <option value="person">of the person</option>
        <option value="cohort">by cohorts</option>
        {sessions || value === 'session' ? <option value="session">of the session</option> : null}
      </select>
    </div>
  );
}

/** The project's saved cohorts, to pick a cohort breakdown's groups from (one group per cohort chosen). */
function CohortChoice({ value, onChange }: { value: number[]; onChange: (ids: number[]) => void }) {
  const project = useProject();
  const id = useId();
  const list = useQuery({ queryKey: ['cohorts', project.id], queryFn: ({ signal }) => listCohorts(project.id, signal) });
  const cohorts = list.data?.results ?? [];
  return (
    <div className="field">
      <label htmlFor={id}>Breakdown cohorts</label>
      <select
        id={id}
        multiple
        value={value.map(String)}
        onChange={(e) => onChange(Array.from(e.target.selectedOptions, (o) => Number(o.value)))}
      >
        {cohorts.map((c) => (
          <option key={c.id} value={c.id}>
            {c.name}
          </option>
        ))}
      </select>
      {list.isSuccess && cohorts.length === 0 ? <p className="hint">No cohorts yet: save one on the Cohorts page.</p> : null}
    </div>
  );
}

/** A breakdown: a property (the event's or the person's, from `event`'s keys) or a set of cohorts. */
export function BreakdownEditor({
  value,
  event,
  onChange,
  sessions = false,
}: {
  value: Breakdown | null | undefined;
  event?: string | null;
  onChange: (b: Breakdown | null) => void;
  /** Offer the session's properties too (trends). */
  sessions?: boolean;
}) {
  const kind = value?.type ?? 'event';
  return (
    <>
      {kind === 'cohort' ? (
        <CohortChoice value={value?.cohorts ?? []} onChange={(cohorts) => onChange({ type: 'cohort', cohorts })} />
      ) : kind === 'session' ? (
        <SessionKeyChoice label="Breakdown by session property" value={value?.property ?? ''} onChange={(property) => onChange({ ...(value ?? {}), property, type: 'session' })} />
      ) : (
        <PropertyKeyPicker
          label="Breakdown by property"
          value={value?.property ?? ''}
          event={event ?? undefined}
          placeholder="None"
          onChange={(property) => onChange(property ? { ...(value ?? {}), property } : null)}
        />
      )}
      <BreakdownKind
        value={kind}
        sessions={sessions}
        onChange={(next) => {
          if (next === 'cohort') return onChange({ type: 'cohort', cohorts: [] });
          let property = kind === 'cohort' ? '' : (value?.property ?? '');
          if (next === 'session' && !SESSION_KEYS.includes(property)) property = '$session_duration';
          if (next !== 'session' && kind === 'session') property = '';
          const b: Breakdown = { property };
          if (value?.limit != null && kind !== 'cohort') b.limit = value.limit;
          if (next === 'person') b.type = 'person';
          if (next === 'session') b.type = 'session';
          onChange(b);
        }}
      />
      {value ? (
        <button type="button" className="btn btn-small" onClick={() => onChange(null)}>
          Remove breakdown
        </button>
      ) : null}
    </>
  );
}
