import { useAnalysis, type AnalysisKind } from '../analysis';
import type { Interval, MathInput, Series, TrendsRequest, TrendsResponse } from '../api/types';
import { TrendsChart } from '../components/charts/TrendsChart';
import { TrendsTable } from '../components/charts/TrendsTable';
import { ComboInput } from '../components/ComboInput';
import { DateRangePicker } from '../components/DateRangePicker';
import { InsightHeader } from '../components/InsightHeader';
import { EventPicker, PropertyKeyPicker } from '../components/Pickers';
import { BreakdownEditor, PropertyFilters } from '../components/PropertyFilters';
import { Results } from '../components/Results';
import { Empty } from '../components/States';
import { defaultTrends, INTERVALS, MATHS, mathNeedsProperty, sanitizeTrends, trendsRequest, breakdownLabel } from '../queries';

const MAX_SERIES = 10;
const letter = (i: number) => String.fromCharCode(65 + i);

function SeriesEditor({
  series,
  index,
  onChange,
  onRemove,
}: {
  series: Series;
  index: number;
  onChange: (s: Series) => void;
  onRemove?: () => void;
}) {
  const l = letter(index);
  const math = series.math ?? 'total';
  return (
    <div className="series-editor" role="group" aria-label={`Series ${l}`}>
      <div className="series-row">
        <span className="series-letter series-badge" aria-hidden="true">
          {l}
        </span>
        <EventPicker label={`Series ${l} event`} hideLabel value={series.event} onChange={(event) => onChange({ ...series, event })} />
        <div className="field">
          <label className="visually-hidden" htmlFor={`series-${index}-math`}>
            Series {l} math
          </label>
          <select
            id={`series-${index}-math`}
            value={math === 'dau' ? 'unique_users' : math}
            onChange={(e) => {
              const m = e.target.value as MathInput;
              const next: Series = { ...series, math: m };
              if (!mathNeedsProperty(m)) delete next.math_property;
              onChange(next);
            }}
          >
            {MATHS.map((m) => (
              <option key={m.value} value={m.value}>
                {m.label}
              </option>
            ))}
          </select>
        </div>
        {mathNeedsProperty(math) ? (
          <PropertyKeyPicker
            label={`Series ${l} property`}
            hideLabel
            placeholder="Numeric property"
            event={series.event}
            value={series.math_property ?? ''}
            onChange={(p) => onChange({ ...series, math_property: p || null })}
          />
        ) : null}
        {onRemove ? (
          <button type="button" className="btn-icon" aria-label={`Remove series ${l}`} onClick={onRemove}>
            ×
          </button>
        ) : null}
      </div>
      <PropertyFilters
        label={`Series ${l} filters`}
        addLabel="Filter this series"
        sessions
        value={series.filters}
        event={series.event}
        onChange={(filters) => onChange({ ...series, filters })}
      />
    </div>
  );
}

const TRENDS: AnalysisKind<TrendsRequest, TrendsResponse> = {
  name: 'trends',
  defaults: defaultTrends,
  sanitize: sanitizeTrends,
  toRequest: trendsRequest,
};

export function TrendsPage() {
  const { q, invalid, insightId, setInsightId, request, result, set, job, cancel } = useAnalysis(TRENDS);
  const setSeries = (i: number, s: Series) => set({ series: q.series.map((x, j) => (j === i ? s : x)) });

  return (
    <div className="page page-trends">
      <InsightHeader
        title="Trends"
        query={{ kind: 'trends', ...request }}
        insightId={insightId}
        setInsightId={setInsightId}
        defaultName={`Trend of ${q.series.map((s) => s.event ?? 'all events').join(', ')}`}
        invalidUrl={invalid}
      />
      <form className="editor" aria-label="Trend query" onSubmit={(e) => e.preventDefault()}>
        <fieldset className="editor-section">
          <legend>Series</legend>
          {q.series.map((s, i) => (
            <SeriesEditor
              key={i}
              index={i}
              series={s}
              onChange={(next) => setSeries(i, next)}
              onRemove={q.series.length > 1 ? () => set({ series: q.series.filter((_, j) => j !== i) }) : undefined}
            />
          ))}
          <div className="editor-row">
            <button
              type="button"
              className="btn btn-small"
              disabled={q.series.length >= MAX_SERIES}
              onClick={() => set({ series: [...q.series, { event: q.series[q.series.length - 1]?.event ?? null, math: 'total' }] })}
            >
              + Add series
            </button>
            <ComboInput
              label="Formula"
              value={q.formula ?? ''}
              options={[]}
              placeholder={q.series.length > 1 ? 'e.g. A / B * 100' : 'e.g. A * 2 (optional)'}
              onCommit={(formula) => set({ formula: formula.trim() || null })}
              className="field-formula"
            />
          </div>
        </fieldset>
        <fieldset className="editor-section editor-inline">
          <legend>Range</legend>
          <DateRangePicker value={q} defaultFrom="-7d" onChange={(r) => set(r)} />
          <div className="field">
            <label htmlFor="trend-interval">Interval</label>
            <select id="trend-interval" value={q.interval ?? 'day'} onChange={(e) => set({ interval: e.target.value as Interval })}>
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
          <PropertyFilters label="Filters of all series" sessions value={q.filters} onChange={(filters) => set({ filters })} />
        </fieldset>
        <fieldset className="editor-section editor-inline">
          <legend>Breakdown</legend>
          <BreakdownEditor sessions value={q.breakdown} event={q.series.length === 1 ? q.series[0]?.event : undefined} onChange={(breakdown) => set({ breakdown })} />
        </fieldset>
      </form>
      <Results query={result} job={job} onCancel={cancel}>
        {(data) =>
          data.results.length === 0 || data.results.every((r) => r.data.every((v) => v === 0)) ? (
            <Empty title="No events match this query in this range">Try a longer date range, another event, or fewer filters.</Empty>
          ) : (
            <>
              <TrendsChart result={data} />
              <TrendsTable result={data} breakdownProperty={breakdownLabel(request.breakdown)} />
            </>
          )
        }
      </Results>
    </div>
  );
}
