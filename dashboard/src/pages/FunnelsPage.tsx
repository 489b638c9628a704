import { useAnalysis, type AnalysisKind } from '../analysis';
import type { FunnelOrder, FunnelStep, FunnelsRequest, WindowUnit, FunnelsResponse } from '../api/types';
import { FunnelBars, FunnelBreakdownTable } from '../components/charts/FunnelBars';
import { ComboInput } from '../components/ComboInput';
import { DateRangePicker } from '../components/DateRangePicker';
import { InsightHeader } from '../components/InsightHeader';
import { EventPicker } from '../components/Pickers';
import { BreakdownEditor, PropertyFilters } from '../components/PropertyFilters';
import { Results } from '../components/Results';
import { Empty } from '../components/States';
import { defaultFunnels, funnelsRequest, sanitizeFunnels, breakdownLabel } from '../queries';

const MIN_STEPS = 2;
const MAX_STEPS = 10;
const UNITS: WindowUnit[] = ['minute', 'hour', 'day', 'week'];

const FUNNELS: AnalysisKind<FunnelsRequest, FunnelsResponse> = {
  name: 'funnels',
  defaults: defaultFunnels,
  sanitize: sanitizeFunnels,
  toRequest: funnelsRequest,
};

export function FunnelsPage() {
  const { q, invalid, insightId, setInsightId, request, result, set, job, cancel } = useAnalysis(FUNNELS);
  const setStep = (i: number, s: FunnelStep) => set({ steps: q.steps.map((x, j) => (j === i ? s : x)) });
  const cw = q.conversion_window ?? { value: 14, unit: 'day' as WindowUnit };

  return (
    <div className="page page-funnels">
      <InsightHeader
        title="Funnels"
        query={{ kind: 'funnels', ...request }}
        insightId={insightId}
        setInsightId={setInsightId}
        defaultName={`Funnel ${q.steps.map((s) => s.event ?? 'any event').join(' → ')}`}
        invalidUrl={invalid}
      />
      <form className="editor" aria-label="Funnel query" onSubmit={(e) => e.preventDefault()}>
        <fieldset className="editor-section">
          <legend>Steps</legend>
          <ol className="steps-editor">
            {q.steps.map((s, i) => (
              <li key={i} className="series-editor" role="group" aria-label={`Step ${i + 1}`}>
                <div className="series-row">
                  <span className="series-badge" aria-hidden="true">
                    {i + 1}
                  </span>
                  <EventPicker label={`Step ${i + 1} event`} hideLabel value={s.event} onChange={(event) => setStep(i, { ...s, event })} />
                  <button
                    type="button"
                    className="btn-icon"
                    aria-label={`Remove step ${i + 1}`}
                    disabled={q.steps.length <= MIN_STEPS}
                    onClick={() => set({ steps: q.steps.filter((_, j) => j !== i) })}
                  >
                    ×
                  </button>
                </div>
                <PropertyFilters
                  label={`Step ${i + 1} filters`}
                  addLabel="Filter this step"
                  value={s.filters}
                  event={s.event}
                  onChange={(filters) => setStep(i, { ...s, filters })}
                />
              </li>
            ))}
          </ol>
          <button
            type="button"
            className="btn btn-small"
            disabled={q.steps.length >= MAX_STEPS}
            onClick={() => set({ steps: [...q.steps, { event: null }] })}
          >
            + Add step
          </button>
        </fieldset>
        <fieldset className="editor-section editor-inline">
          <legend>Conversion</legend>
          <ComboInput
            label="Conversion window"
            value={String(cw.value)}
            options={[]}
            onCommit={(v) => {
              const n = Math.round(Number(v));
              if (Number.isFinite(n) && n >= 1) set({ conversion_window: { ...cw, value: n } });
            }}
            className="field-narrow"
          />
          <div className="field">
            <label htmlFor="funnel-window-unit">Window unit</label>
            <select
              id="funnel-window-unit"
              value={cw.unit}
              onChange={(e) => set({ conversion_window: { ...cw, unit: e.target.value as WindowUnit } })}
            >
              {UNITS.map((u) => (
                <option key={u} value={u}>
                  {u}s
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor="funnel-order">Step order</label>
            <select id="funnel-order" value={q.order ?? 'ordered'} onChange={(e) => set({ order: e.target.value as FunnelOrder })}>
              <option value="ordered">Ordered (other events may happen between steps)</option>
              <option value="strict">Strict (no other events between steps)</option>
            </select>
          </div>
          <DateRangePicker value={q} defaultFrom="-30d" onChange={(r) => set(r)} />
        </fieldset>
        <fieldset className="editor-section">
          <legend>Filters (all steps)</legend>
          <PropertyFilters label="Filters of all steps" value={q.filters} onChange={(filters) => set({ filters })} />
        </fieldset>
        <fieldset className="editor-section editor-inline">
          <legend>Breakdown</legend>
          <BreakdownEditor value={q.breakdown} event={q.steps[0]?.event} onChange={(breakdown) => set({ breakdown })} />
        </fieldset>
      </form>
      <Results query={result} job={job} onCancel={cancel}>
        {(data) =>
          (data.steps[0]?.count ?? 0) === 0 ? (
            <Empty title="Nobody did the first step in this range">Try a longer date range or another first event.</Empty>
          ) : (
            <>
              <FunnelBars steps={data.steps} />
              <FunnelBreakdownTable result={data} property={breakdownLabel(request.breakdown)} />
            </>
          )
        }
      </Results>
    </div>
  );
}
