import type {
  FunnelsResponse,
  InsightQuery,
  InsightResult,
  LifecycleResponse,
  PathsResponse,
  RetentionResponse,
  SessionsResponse,
  StickinessResponse,
  TrendsResponse,
} from '../api/types';
import { formatBreakdownValue, formatNumber } from '../format';
import { mathLabel, breakdownLabel } from '../queries';
import { FunnelBars, FunnelBreakdownTable } from './charts/FunnelBars';
import { LifecycleChart, PathsSankey, SessionTotals, SessionsChart, StickinessChart } from './charts/MoreCharts';
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
    case 'stickiness': {
      const r = result as StickinessResponse;
      if (r.results.every((x) => x.persons === 0)) return <Empty title="No data in this range" />;
      return <StickinessChart result={r} height={chartHeight} compact />;
    }
    case 'lifecycle':
      return <LifecycleChart result={result as LifecycleResponse} height={chartHeight} compact />;
    case 'paths': {
      const r = result as PathsResponse;
      if (r.links.length === 0) return <Empty title="No paths in this range" />;
      return <PathsSankey result={r} height={Math.max(chartHeight, 200)} />;
    }
    case 'sessions': {
      const r = result as SessionsResponse;
      return (
        <>
          <SessionTotals result={r} />
          <SessionsChart result={r} height={chartHeight} />
        </>
      );
    }
  }
}
