import { useAnalysis, type AnalysisKind } from '../analysis';
import type { Period, RetentionRequest, RetentionType, RetentionResponse } from '../api/types';
import { RetentionTable } from '../components/charts/RetentionTable';
import { ComboInput } from '../components/ComboInput';
import { InsightHeader } from '../components/InsightHeader';
import { EventPicker } from '../components/Pickers';
import { PropertyFilters } from '../components/PropertyFilters';
import { Results } from '../components/Results';
import { Empty } from '../components/States';
import { defaultRetention, retentionRequest, sanitizeRetention } from '../queries';

const RETENTION: AnalysisKind<RetentionRequest, RetentionResponse> = {
  name: 'retention',
  defaults: defaultRetention,
  sanitize: sanitizeRetention,
  toRequest: retentionRequest,
};

export function RetentionPage() {
  const { q, invalid, insightId, setInsightId, request, result, set, job, cancel } = useAnalysis(RETENTION);

  return (
    <div className="page page-retention">
      <InsightHeader
        title="Retention"
        query={{ kind: 'retention', ...request }}
        insightId={insightId}
        setInsightId={setInsightId}
        defaultName={`Retention of ${q.target_event.event ?? 'any event'}`}
        invalidUrl={invalid}
      />
      <form className="editor" aria-label="Retention query" onSubmit={(e) => e.preventDefault()}>
        <fieldset className="editor-section editor-inline">
          <legend>Events</legend>
          <EventPicker
            label="Target event (puts a user in a cohort)"
            value={q.target_event.event}
            onChange={(event) => set({ target_event: { ...q.target_event, event } })}
          />
          <EventPicker
            label="Returning event"
            placeholder="Same as the target event"
            value={q.returning_event?.event ?? null}
            onChange={(event) => set({ returning_event: event ? { ...(q.returning_event ?? {}), event } : null })}
          />
        </fieldset>
        <fieldset className="editor-section editor-inline">
          <legend>Cohorts</legend>
          <div className="field">
            <label htmlFor="retention-type">Cohort by</label>
            <select id="retention-type" value={q.retention_type ?? 'recurring'} onChange={(e) => set({ retention_type: e.target.value as RetentionType })}>
              <option value="recurring">Recurring: every period with the target event</option>
              <option value="first_time">First time: the period of the first target event</option>
            </select>
          </div>
          <div className="field">
            <label htmlFor="retention-period">Period</label>
            <select id="retention-period" value={q.period ?? 'day'} onChange={(e) => set({ period: e.target.value as Period })}>
              <option value="day">Day</option>
              <option value="week">Week</option>
              <option value="month">Month</option>
            </select>
          </div>
          <ComboInput
            label="Number of periods"
            value={String(q.periods ?? 7)}
            options={[]}
            className="field-narrow"
            onCommit={(v) => {
              const n = Math.round(Number(v));
              if (Number.isFinite(n)) set({ periods: Math.min(60, Math.max(1, n)) });
            }}
          />
        </fieldset>
        <fieldset className="editor-section">
          <legend>Filters (both events)</legend>
          <PropertyFilters label="Retention filters" value={q.filters} onChange={(filters) => set({ filters })} />
        </fieldset>
      </form>
      <Results query={result} job={job} onCancel={cancel}>
        {(data) =>
          data.cohorts.every((c) => c.size === 0) ? (
            <Empty title="No users in these cohorts">Nobody did the target event in these periods.</Empty>
          ) : (
            <RetentionTable result={data} />
          )
        }
      </Results>
    </div>
  );
}
