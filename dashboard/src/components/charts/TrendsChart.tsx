import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import type { TrendsResponse } from '../../api/types';
import { formatBreakdownValue, formatBucket, formatNumber } from '../../format';
import { color } from './palette';
import { trendRows } from './trendRows';

const MAX_LINES = 20;

/** The trend as lines, one per series (and breakdown value), the formula's too. */
export function TrendsChart({ result, height = 300, compact = false }: { result: TrendsResponse; height?: number; compact?: boolean }) {
  const rows = trendRows(result).slice(0, MAX_LINES);
  const names = rows.map((r) => {
    const bd = r.breakdown !== null ? ` · ${formatBreakdownValue(r.breakdown)}` : '';
    return `${r.letter}. ${r.name}${bd}`;
  });
  const data = result.labels.map((l, i) => {
    const point: Record<string, string | number | null> = { label: formatBucket(l, result.interval) };
    rows.forEach((r, k) => {
      point[`l${k}`] = r.data[i] ?? null;
    });
    return point;
  });
  return (
    <div className="chart" role="img" aria-label={`Line chart of ${names.join(', ')}`}>
      <ResponsiveContainer width="100%" height={height}>
        <LineChart data={data} margin={{ top: 8, right: 16, bottom: 4, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="#e5e7eb" />
          <XAxis dataKey="label" tick={{ fontSize: 12 }} minTickGap={16} />
          <YAxis tick={{ fontSize: 12 }} tickFormatter={(v: number) => formatNumber(v)} width={48} allowDecimals />
          <Tooltip formatter={(v) => formatNumber(typeof v === 'number' ? v : Number(v))} />
          {!compact && rows.length > 1 ? <Legend /> : null}
          {rows.map((r, k) => (
            <Line
              key={r.key}
              type="linear"
              dataKey={`l${k}`}
              name={names[k]}
              stroke={color(k)}
              strokeWidth={2}
              strokeDasharray={r.formula ? '6 3' : undefined}
              dot={result.labels.length <= 31}
              isAnimationActive={false}
              connectNulls={false}
            />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </div>
  );
}
