import type { RetentionResponse } from '../../api/types';
import { formatBucket, formatNumber, formatPercent } from '../../format';

/** The cell's background for a share of the cohort: darker for more. */
export function shade(ratio: number): string {
  if (!(ratio > 0)) return 'transparent';
  const alpha = 0.1 + 0.85 * Math.min(1, ratio);
  return `rgba(37, 99, 235, ${alpha.toFixed(3)})`;
}

const PERIOD_NAME = { day: 'Day', week: 'Week', month: 'Month' } as const;

/** One row per cohort: its size, then the share of it that came back k periods later. */
export function RetentionTable({ result }: { result: RetentionResponse }) {
  const columns = result.cohorts.reduce((n, c) => Math.max(n, c.values.length), 0);
  const periodName = PERIOD_NAME[result.period] ?? 'Period';
  return (
    <div className="table-scroll">
      <table className="data-table retention-table" aria-label="Retention by cohort">
        <thead>
          <tr>
            <th scope="col">Cohort</th>
            <th scope="col" className="num">
              Users
            </th>
            {Array.from({ length: columns }, (_, k) => (
              <th scope="col" className="num" key={k}>
                {periodName} {k}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {result.cohorts.map((c) => (
            <tr key={c.date}>
              <th scope="row">{formatBucket(c.date, result.period === 'month' ? 'month' : 'day')}</th>
              <td className="num">{formatNumber(c.size)}</td>
              {Array.from({ length: columns }, (_, k) => {
                const v = c.values[k];
                if (v === undefined) return <td key={k} className="retention-cell retention-future" aria-label="not yet" />;
                const ratio = c.size > 0 ? v / c.size : null;
                return (
                  <td
                    key={k}
                    className={`num retention-cell ${ratio !== null && ratio > 0.55 ? 'retention-dark' : ''}`}
                    style={{ background: ratio === null ? undefined : shade(ratio) }}
                    data-ratio={ratio ?? undefined}
                    title={`${formatNumber(v)} of ${formatNumber(c.size)} users`}
                  >
                    {formatPercent(ratio)}
                    <span className="retention-count">{formatNumber(v)}</span>
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
