import type { TrendsResponse } from '../../api/types';
import { formatBreakdownValue, formatBucket, formatNumber } from '../../format';
import { mathLabel } from '../../queries';
import { color } from './palette';
import { trendRows } from './trendRows';

interface Props {
  result: TrendsResponse;
  /** The breakdown property, for the column's header. */
  breakdownProperty?: string | null;
}

/** One row per series (and breakdown value), a column per bucket, and the total. */
export function TrendsTable({ result, breakdownProperty }: Props) {
  const rows = trendRows(result);
  const hasBreakdown = rows.some((r) => r.breakdown !== null);
  return (
    <div className="table-scroll">
      <table className="data-table trends-table" aria-label="Trend results">
        <thead>
          <tr>
            <th scope="col">Series</th>
            {hasBreakdown ? <th scope="col">{breakdownProperty || 'Breakdown'}</th> : null}
            {result.labels.map((l) => (
              <th scope="col" key={l} className="num">
                {formatBucket(l, result.interval)}
              </th>
            ))}
            <th scope="col" className="num" title="Over the whole range: unique users are counted once, not once per bucket">
              Total
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={r.key} data-series={r.letter} data-breakdown={r.breakdown ?? undefined} className={r.formula ? 'formula-row' : undefined}>
              <th scope="row">
                <span className="series-swatch" style={{ background: color(i) }} aria-hidden="true" />
                <span className="series-letter">{r.letter}</span> {r.name}
                {r.math ? <span className="muted"> · {mathLabel(r.math)}</span> : null}
              </th>
              {hasBreakdown ? <td className="breakdown-cell">{formatBreakdownValue(r.breakdown)}</td> : null}
              {r.data.map((v, j) => (
                <td key={j} className="num">
                  {formatNumber(v)}
                </td>
              ))}
              <td className="num total-cell" data-testid="trend-total">
                {formatNumber(r.total)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
