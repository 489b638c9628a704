import type { FunnelsResponse, InsightQuery, InsightResult, RetentionResponse, TrendsResponse } from '../api/types';
import { formatBreakdownValue, formatNumber } from '../format';
import { mathLabel, breakdownLabel } from '../queries';
import { FunnelBars, FunnelBreakdownTable } from './charts/FunnelBars';
import { RetentionTable } from './charts/RetentionTable';
import { TrendsChart } from './charts/TrendsChart';
import { trendRows } from './charts/trendRows';
import { Empty } from './States';

/** A saved insight's result, compact, as a dashboard tile shows it. */
export function InsightResultView({ query, result, chartHeight = 160 }: { query: InsightQuery; result: InsightResult; chartHeight?: number }) {
  switch (query.kind) {
    case 'trends': {
      const r = result as TrendsResponse;
      const rows = trendRows(r);
      if (rows.length === 0) return <Empty title="No data in this range" />;
      return (
        <div className="tile-trends">
          <ul className="tile-totals" aria-label="Totals">
            {rows.slice(0, 6).map((row) => (
              <li key={row.key} data-series={row.letter} data-breakdown={row.breakdown ?? undefined}>
                <span className="tile-total-value" data-testid="tile-total">
                  {formatNumber(row.total ?? row.data.reduce<number>((a, b) => a + (b ?? 0), 0))}
                </span>
                <span className="tile-total-label">
                  {row.letter}. {row.name}
                  {row.breakdown !== null ? ` · ${formatBreakdownValue(row.breakdown)}` : ''}
                  {row.math ? ` · ${mathLabel(row.math)}` : ''}
                </span>
              </li>
            ))}
          </ul>
          <TrendsChart result={r} height={chartHeight} compact />
        </div>
      );
    }
    case 'funnels': {
      const r = result as FunnelsResponse;
      return (
        <>
          <FunnelBars steps={r.steps} compact />
          <FunnelBreakdownTable result={r} property={breakdownLabel(query.breakdown)} />
        </>
      );
    }
    case 'retention': {
      const r = result as RetentionResponse;
      if (r.cohorts.length === 0) return <Empty title="No cohorts" />;
      return <RetentionTable result={r} />;
    }
  }
}
