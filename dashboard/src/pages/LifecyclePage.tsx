import { useAnalysis, type AnalysisKind } from '../analysis';
import type { Interval, LifecycleRequest, LifecycleResponse } from '../api/types';
import { LifecycleChart, LifecycleTable } from '../components/charts/MoreCharts';
import { DateRangePicker } from '../components/DateRangePicker';
import { InsightHeader } from '../components/InsightHeader';
import { EventPicker } from '../components/Pickers';
import { PropertyFilters } from '../components/PropertyFilters';
import { Results } from '../components/Results';
import { Empty } from '../components/States';
import { defaultLifecycle, INTERVALS, lifecycleRequest, sanitizeLifecycle } from '../queries';

const LIFECYCLE: AnalysisKind<LifecycleRequest, LifecycleResponse> = {
  name: 'lifecycle',
  defaults: defaultLifecycle,
  sanitize: sanitizeLifecycle,
  toRequest: lifecycleRequest,
};

export function LifecyclePage() {
  const { q, invalid, insightId, setInsightId, request, result, set, job, cancel } = useAnalysis(LIFECYCLE);
  return (
    <div className="page page-lifecycle">
      <InsightHeader
        title="Lifecycle"
        query={{ kind: 'lifecycle', ...request }}
        insightId={insightId}
        setInsightId={setInsightId}
        defaultName={`Lifecycle of ${q.event.event ?? 'any event'}`}
        invalidUrl={invalid}
      />
      <form className="editor" aria-label="Lifecycle query" onSubmit={(e) => e.preventDefault()}>
        <fieldset className="editor-section editor-inline">
          <legend>Event</legend>
          <EventPicker label="Event" value={q.event.event ?? null} onChange={(event) => set({ event: { ...q.event, event } })} />
          <PropertyFilters
            label="Filters of the event"
            value={q.event.filters}
            event={q.event.event ?? undefined}
            onChange={(filters) => set({ event: { ...q.event, filters } })}
          />
        </fieldset>
        <fieldset className="editor-section editor-inline">
          <legend>Range</legend>
          <DateRangePicker value={q} defaultFrom="-30d" onChange={(r) => set(r)} />
          <div className="field">
            <label htmlFor="lifecycle-interval">Period</label>
            <select id="lifecycle-interval" value={q.interval ?? 'day'} onChange={(e) => set({ interval: e.target.value as Interval })}>
              {INTERVALS.map((i) => (
                <option key={i} value={i}>
                  {i}
                </option>
              ))}
            </select>
          </div>
        </fieldset>
        <fieldset className="editor-section">
          <legend>Filters</legend>
          <PropertyFilters label="Lifecycle filters" value={q.filters} onChange={(filters) => set({ filters })} />
        </fieldset>
      </form>
      <Results query={result} job={job} onCancel={cancel}>
        {(data) =>
          [...data.new, ...data.returning, ...data.resurrecting, ...data.dormant].every((v) => v === 0) ? (
            <Empty title="Nobody did this event in this range">Try a longer date range or another event.</Empty>
          ) : (
            <>
              <LifecycleChart result={data} />
              <LifecycleTable result={data} />
            </>
          )
        }
      </Results>
    </div>
  );
}
