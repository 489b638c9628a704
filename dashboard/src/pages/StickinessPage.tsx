import { useAnalysis, type AnalysisKind } from '../analysis';
import type { Interval, StickinessRequest, StickinessResponse } from '../api/types';
import { StickinessChart, StickinessTable } from '../components/charts/MoreCharts';
import { DateRangePicker } from '../components/DateRangePicker';
import { InsightHeader } from '../components/InsightHeader';
import { EventPicker } from '../components/Pickers';
import { PropertyFilters } from '../components/PropertyFilters';
import { Results } from '../components/Results';
import { Empty } from '../components/States';
import { defaultStickiness, INTERVALS, sanitizeStickiness, stickinessRequest } from '../queries';

const STICKINESS: AnalysisKind<StickinessRequest, StickinessResponse> = {
  name: 'stickiness',
  defaults: defaultStickiness,
  sanitize: sanitizeStickiness,
  toRequest: stickinessRequest,
};

export function StickinessPage() {
  const { q, invalid, insightId, setInsightId, request, result, set, job, cancel } = useAnalysis(STICKINESS);
  return (
    <div className="page page-stickiness">
      <InsightHeader
        title="Stickiness"
        query={{ kind: 'stickiness', ...request }}
        insightId={insightId}
        setInsightId={setInsightId}
        defaultName={`Stickiness of ${q.series.map((s) => s.event ?? 'all events').join(', ')}`}
        invalidUrl={invalid}
      />
      <form className="editor" aria-label="Stickiness query" onSubmit={(e) => e.preventDefault()}>
        <fieldset className="editor-section">
          <legend>Series</legend>
          {q.series.map((s, i) => (
            <div className="editor-row" key={i}>
              <EventPicker
                label={`Event ${i + 1}`}
                value={s.event ?? null}
                onChange={(event) => set({ series: q.series.map((x, j) => (j === i ? { ...x, event } : x)) })}
              />
              <PropertyFilters
                label={`Filters of event ${i + 1}`}
                value={s.filters}
                event={s.event ?? undefined}
                onChange={(filters) => set({ series: q.series.map((x, j) => (j === i ? { ...x, filters } : x)) })}
              />
              {q.series.length > 1 ? (
                <button type="button" className="btn btn-small" onClick={() => set({ series: q.series.filter((_, j) => j !== i) })}>
                  Remove
                </button>
              ) : null}
            </div>
          ))}
          <button
            type="button"
            className="btn btn-small"
            disabled={q.series.length >= 10}
            onClick={() => set({ series: [...q.series, { event: q.series[q.series.length - 1]?.event ?? null }] })}
          >
            + Add series
          </button>
        </fieldset>
        <fieldset className="editor-section editor-inline">
          <legend>Range</legend>
          <DateRangePicker value={q} defaultFrom="-30d" onChange={(r) => set(r)} />
          <div className="field">
            <label htmlFor="stickiness-interval">Counted per</label>
            <select id="stickiness-interval" value={q.interval ?? 'day'} onChange={(e) => set({ interval: e.target.value as Interval })}>
              {INTERVALS.map((i) => (
                <option key={i} value={i}>
                  {i}
                </option>
              ))}
            </select>
          </div>
        </fieldset>
        <fieldset className="editor-section">
          <legend>Filters (all series)</legend>
          <PropertyFilters label="Filters of all series" value={q.filters} onChange={(filters) => set({ filters })} />
        </fieldset>
      </form>
      <Results query={result} job={job} onCancel={cancel}>
        {(data) =>
          data.results.every((r) => r.persons === 0) ? (
            <Empty title="Nobody did these events in this range">Try a longer date range or another event.</Empty>
          ) : (
            <>
              <StickinessChart result={data} />
              <StickinessTable result={data} />
            </>
          )
        }
      </Results>
    </div>
  );
}
