import type { FunnelsResponse, StepResult } from '../../api/types';
import { formatBreakdownValue, formatDuration, formatNumber, formatPercent } from '../../format';

/** The people lost between the previous step and this one (0 for the first step). */
export function dropOff(steps: StepResult[], i: number): { count: number; rate: number } {
  const step = steps[i];
  const prev = steps[i - 1];
  if (!step || !prev) return { count: 0, rate: 0 };
  const count = Math.max(0, prev.count - step.count);
  return { count, rate: prev.count > 0 ? count / prev.count : 0 };
}

/** A bar per step: its people, % of the first step, % of the previous, drop-off and median time. */
export function FunnelBars({ steps, compact = false }: { steps: StepResult[]; compact?: boolean }) {
  const overall = steps.length > 1 ? steps[steps.length - 1]!.conversion_rate : null;
  return (
    <div className={`funnel ${compact ? 'funnel-compact' : ''}`}>
      {overall !== null ? (
        <p className="funnel-overall">
          Overall conversion: <strong data-testid="funnel-overall">{formatPercent(overall)}</strong>
        </p>
      ) : null}
      <ol className="funnel-steps" aria-label="Funnel steps">
        {steps.map((s, i) => {
          const d = dropOff(steps, i);
          return (
            <li key={s.index} className="funnel-step" data-testid="funnel-step" data-step={i}>
              <div className="funnel-step-head">
                <span className="step-number">{i + 1}</span> <span className="step-name">{s.name}</span>
              </div>
              <div
                className="funnel-bar"
                role="meter"
                aria-valuemin={0}
                aria-valuemax={100}
                aria-valuenow={Math.round(s.conversion_rate * 1000) / 10}
                aria-label={`${s.name}: ${formatPercent(s.conversion_rate)} of the first step`}
              >
                <div className="funnel-bar-fill" style={{ width: `${Math.max(0, Math.min(1, s.conversion_rate)) * 100}%` }} />
                {i > 0 ? <div className="funnel-bar-drop" style={{ width: `${Math.max(0, (steps[i - 1]!.conversion_rate - s.conversion_rate)) * 100}%` }} /> : null}
              </div>
              <dl className="funnel-stats">
                <div>
                  <dt>Users</dt>
                  <dd data-testid="funnel-count">{formatNumber(s.count)}</dd>
                </div>
                <div>
                  <dt>Of first step</dt>
                  <dd data-testid="funnel-conversion">{formatPercent(s.conversion_rate)}</dd>
                </div>
                {i > 0 ? (
                  <>
                    <div>
                      <dt>Of previous step</dt>
                      <dd data-testid="funnel-step-conversion">{formatPercent(s.step_conversion_rate)}</dd>
                    </div>
                    <div>
                      <dt>Dropped off</dt>
                      <dd data-testid="funnel-dropoff">
                        {formatNumber(d.count)} ({formatPercent(d.rate)})
                      </dd>
                    </div>
                    {!compact ? (
                      <div>
                        <dt>Median time</dt>
                        <dd data-testid="funnel-median">{formatDuration(s.median_time_to_convert_seconds)}</dd>
                      </div>
                    ) : null}
                  </>
                ) : null}
              </dl>
            </li>
          );
        })}
      </ol>
    </div>
  );
}

/** Per breakdown value, each step's users and % of that value's first step. */
export function FunnelBreakdownTable({ result, property }: { result: FunnelsResponse; property?: string }) {
  if (!result.breakdown || result.breakdown.length === 0) return null;
  const names = result.steps.map((s) => s.name);
  return (
    <div className="table-scroll">
      <table className="data-table" aria-label="Funnel by breakdown">
        <thead>
          <tr>
            <th scope="col">{property || 'Breakdown'}</th>
            {names.map((n, i) => (
              <th scope="col" className="num" key={i}>
                {i + 1}. {n}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {result.breakdown.map((b) => (
            <tr key={b.breakdown_value} data-breakdown={b.breakdown_value}>
              <th scope="row">{formatBreakdownValue(b.breakdown_value)}</th>
              {b.steps.map((s) => (
                <td className="num" key={s.index}>
                  {formatNumber(s.count)} <span className="muted">({formatPercent(s.conversion_rate)})</span>
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
