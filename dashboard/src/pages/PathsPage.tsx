import { useAnalysis, type AnalysisKind } from '../analysis';
import type { PathType, PathsRequest, PathsResponse } from '../api/types';
import { PathsSankey, PathsTable } from '../components/charts/MoreCharts';
import { ComboInput } from '../components/ComboInput';
import { DateRangePicker } from '../components/DateRangePicker';
import { InsightHeader } from '../components/InsightHeader';
import { PropertyFilters } from '../components/PropertyFilters';
import { Results } from '../components/Results';
import { Empty } from '../components/States';
import { formatNumber } from '../format';
import { defaultPaths, pathsRequest, sanitizePaths } from '../queries';

const PATHS: AnalysisKind<PathsRequest, PathsResponse> = {
  name: 'paths',
  defaults: defaultPaths,
  sanitize: sanitizePaths,
  toRequest: pathsRequest,
};

const whole = (v: string, min: number, max: number): number | null => {
  const n = Math.round(Number(v));
  return v.trim() === '' || !Number.isFinite(n) ? null : Math.min(max, Math.max(min, n));
};

export function PathsPage() {
  const { q, invalid, insightId, setInsightId, request, result, set, job, cancel } = useAnalysis(PATHS);
  const what = q.path_type === 'event' ? 'event' : 'page';
  return (
    <div className="page page-paths">
      <InsightHeader
        title="Paths"
        query={{ kind: 'paths', ...request }}
        insightId={insightId}
        setInsightId={setInsightId}
        defaultName={q.start_point ? `Paths from ${q.start_point}` : q.end_point ? `Paths to ${q.end_point}` : 'Paths'}
        invalidUrl={invalid}
      />
      <form className="editor" aria-label="Paths query" onSubmit={(e) => e.preventDefault()}>
        <fieldset className="editor-section editor-inline">
          <legend>Paths</legend>
          <div className="field">
            <label htmlFor="paths-type">Steps are</label>
            <select id="paths-type" value={q.path_type ?? 'event'} onChange={(e) => set({ path_type: e.target.value as PathType })}>
              <option value="pathname">Pages ($pathname of $pageview)</option>
              <option value="event">Events</option>
            </select>
          </div>
          <ComboInput label={`Starting at ${what}`} value={q.start_point ?? ''} options={[]} placeholder="Anywhere" onCommit={(v) => set({ start_point: v.trim() || null })} />
          <ComboInput label={`Ending at ${what}`} value={q.end_point ?? ''} options={[]} placeholder="Anywhere" onCommit={(v) => set({ end_point: v.trim() || null })} />
          <ComboInput label="Steps" className="field-narrow" value={String(q.depth ?? 5)} options={[]} onCommit={(v) => set({ depth: whole(v, 2, 10) })} />
          <ComboInput label="Fewest persons per link" className="field-narrow" value={String(q.min_count ?? 1)} options={[]} onCommit={(v) => set({ min_count: whole(v, 1, 1_000_000_000) })} />
          <ComboInput
            label={`Leave out (${what}s, comma-separated)`}
            value={(q.exclude ?? []).join(', ')}
            options={[]}
            onCommit={(v) => set({ exclude: v.split(',').map((x) => x.trim()).filter(Boolean) })}
          />
        </fieldset>
        <fieldset className="editor-section editor-inline">
          <legend>Range</legend>
          <DateRangePicker value={q} defaultFrom="-7d" onChange={(r) => set(r)} />
        </fieldset>
        <fieldset className="editor-section">
          <legend>Filters</legend>
          <PropertyFilters label="Paths filters" value={q.filters} onChange={(filters) => set({ filters })} />
        </fieldset>
      </form>
      <Results query={result} job={job} onCancel={cancel}>
        {(data) =>
          data.links.length === 0 ? (
            <Empty title="No paths in this range">Nobody went from one step to another here; try another start, a longer range, or fewer filters.</Empty>
          ) : (
            <>
              <p className="muted">{formatNumber(data.persons)} persons followed these paths.</p>
              <PathsSankey result={data} />
              <PathsTable result={data} />
            </>
          )
        }
      </Results>
    </div>
  );
}
