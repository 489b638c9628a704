import { useAnalysis, type AnalysisKind } from '../analysis';
import type { Interval, SessionsRequest, SessionsResponse } from '../api/types';
import { SessionsChart, SessionTotals } from '../components/charts/MoreCharts';
import { ComboInput } from '../components/ComboInput';
import { DateRangePicker } from '../components/DateRangePicker';
import { InsightHeader } from '../components/InsightHeader';
import { PropertyKeyPicker } from '../components/Pickers';
import { PropertyFilters } from '../components/PropertyFilters';
import { Results } from '../components/Results';
import { Empty } from '../components/States';
import { formatDuration, formatNumber, formatPercent } from '../format';
import { defaultSessions, INTERVALS, sanitizeSessions, sessionsRequest } from '../queries';

const SESSIONS: AnalysisKind<SessionsRequest, SessionsResponse> = {
  name: 'sessions',
  defaults: defaultSessions,
  sanitize: sanitizeSessions,
  toRequest: sessionsRequest,
};

const seconds = (v: string): number | null => {
  const n = Number(v);
  return v.trim() === '' || !Number.isFinite(n) || n < 0 ? null : n;
};

function Pages({ title, pages }: { title: string; pages: { pathname: string; sessions: number }[] }) {
  return (
    <div className="table-wrap">
      <table className="table" aria-label={title}>
        <thead>
          <tr>
            <th scope="col">{title}</th>
            <th scope="col">Sessions</th>
          </tr>
        </thead>
        <tbody>
          {pages.map((p) => (
            <tr key={p.pathname}>
              <td>{p.pathname}</td>
              <td>{formatNumber(p.sessions)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function SessionsPage() {
  const { q, invalid, insightId, setInsightId, request, result, set, job, cancel } = useAnalysis(SESSIONS);
  return (
    <div className="page page-sessions">
      <InsightHeader title="Sessions" query={{ kind: 'sessions', ...request }} insightId={insightId} setInsightId={setInsightId} defaultName="Sessions" invalidUrl={invalid} />
      <form className="editor" aria-label="Sessions query" onSubmit={(e) => e.preventDefault()}>
        <fieldset className="editor-section editor-inline">
          <legend>Range</legend>
          <DateRangePicker value={q} defaultFrom="-7d" onChange={(r) => set(r)} />
          <div className="field">
            <label htmlFor="sessions-interval">Interval</label>
            <select id="sessions-interval" value={q.interval ?? 'day'} onChange={(e) => set({ interval: e.target.value as Interval })}>
              {INTERVALS.map((i) => (
                <option key={i} value={i}>
                  {i}
                </option>
              ))}
            </select>
          </div>
        </fieldset>
        <fieldset className="editor-section editor-inline">
          <legend>Sessions</legend>
          <ComboInput label="Shortest (seconds)" className="field-narrow" value={q.min_duration_seconds == null ? '' : String(q.min_duration_seconds)} options={[]} onCommit={(v) => set({ min_duration_seconds: seconds(v) })} />
          <ComboInput label="Longest (seconds)" className="field-narrow" value={q.max_duration_seconds == null ? '' : String(q.max_duration_seconds)} options={[]} onCommit={(v) => set({ max_duration_seconds: seconds(v) })} />
          <ComboInput label="Entered on page" value={q.entry_pathname ?? ''} options={[]} placeholder="Any page" onCommit={(v) => set({ entry_pathname: v.trim() || null })} />
          <PropertyKeyPicker label="Break down by (first event's property)" value={q.breakdown ?? ''} placeholder="No breakdown" onChange={(breakdown) => set({ breakdown: breakdown || null })} />
        </fieldset>
        <fieldset className="editor-section">
          <legend>Sessions with an event matching</legend>
          <PropertyFilters label="Session filters" value={q.filters} onChange={(filters) => set({ filters })} />
        </fieldset>
      </form>
      <Results query={result} job={job} onCancel={cancel}>
        {(data) =>
          data.totals.sessions === 0 ? (
            <Empty title="No sessions in this range">Try a longer date range or fewer filters.</Empty>
          ) : (
            <>
              <SessionTotals result={data} />
              <SessionsChart result={data} />
              <div className="split">
                <Pages title="Entry page" pages={data.entry_pages} />
                <Pages title="Exit page" pages={data.exit_pages} />
              </div>
              {data.breakdown ? (
                <div className="table-wrap">
                  <table className="table" aria-label="Sessions by breakdown">
                    <thead>
                      <tr>
                        <th scope="col">{request.breakdown}</th>
                        <th scope="col">Sessions</th>
                        <th scope="col">Median duration</th>
                        <th scope="col">Events per session</th>
                        <th scope="col">Bounce rate</th>
                      </tr>
                    </thead>
                    <tbody>
                      {data.breakdown.map((b) => (
                        <tr key={b.value}>
                          <th scope="row">{b.value}</th>
                          <td>{formatNumber(b.sessions)}</td>
                          <td>{b.value === '$other' ? '—' : formatDuration(b.median_duration_seconds)}</td>
                          <td>{formatNumber(Math.round(b.avg_events_per_session * 10) / 10)}</td>
                          <td>{formatPercent(b.bounce_rate)}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              ) : null}
            </>
          )
        }
      </Results>
    </div>
  );
}
