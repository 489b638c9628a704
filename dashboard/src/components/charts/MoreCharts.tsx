import { Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ReferenceLine, ResponsiveContainer, Sankey, Tooltip, XAxis, YAxis } from 'recharts';
import type { LifecycleResponse, PathsResponse, SessionsResponse, StickinessResponse } from '../../api/types';
import { formatBucket, formatDuration, formatNumber, formatPercent } from '../../format';
import { color } from './palette';

const PERIOD_NAMES: Record<string, [string, string]> = {
  hour: ['hour', 'hours'],
  day: ['day', 'days'],
  week: ['week', 'weeks'],
  month: ['month', 'months'],
};

/** "3 days": k periods of the interval. */
export function periods(k: number, interval: string): string {
  const [one, many] = PERIOD_NAMES[interval] ?? ['period', 'periods'];
  return `${k} ${k === 1 ? one : many}`;
}

/** Persons by the number of periods they were active in, a bar per series. */
export function StickinessChart({ result, height = 300, compact = false }: { result: StickinessResponse; height?: number; compact?: boolean }) {
  const data = Array.from({ length: result.periods }, (_, i) => {
    const point: Record<string, string | number> = { label: periods(i + 1, result.interval) };
    result.results.forEach((r, k) => {
      point[`s${k}`] = r.data[i] ?? 0;
    });
    return point;
  });
  return (
    <div className="chart" role="img" aria-label={`Bar chart of persons by ${result.interval}s active: ${result.results.map((r) => r.label).join(', ')}`}>
      <ResponsiveContainer width="100%" height={height}>
        <BarChart data={data} margin={{ top: 8, right: 16, bottom: 4, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="#e5e7eb" />
          <XAxis dataKey="label" tick={{ fontSize: 12 }} minTickGap={8} />
          <YAxis tick={{ fontSize: 12 }} tickFormatter={(v: number) => formatNumber(v)} width={48} />
          <Tooltip formatter={(v) => formatNumber(Number(v))} />
          {!compact && result.results.length > 1 ? <Legend /> : null}
          {result.results.map((r, k) => (
            <Bar key={k} dataKey={`s${k}`} name={r.label} fill={color(k)} isAnimationActive={false} />
          ))}
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}

export function StickinessTable({ result }: { result: StickinessResponse }) {
  return (
    <div className="table-wrap">
      <table className="table" aria-label="Stickiness">
        <thead>
          <tr>
            <th scope="col">Series</th>
            <th scope="col">Persons</th>
            {Array.from({ length: result.periods }, (_, i) => (
              <th scope="col" key={i}>
                {periods(i + 1, result.interval)}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {result.results.map((r) => (
            <tr key={r.series}>
              <th scope="row">{r.label}</th>
              <td>{formatNumber(r.persons)}</td>
              {r.data.map((v, i) => (
                <td key={i}>{formatNumber(v)}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const LIFECYCLE: { key: 'new' | 'returning' | 'resurrecting' | 'dormant'; label: string; fill: string }[] = [
  { key: 'new', label: 'New', fill: '#16a34a' },
  { key: 'returning', label: 'Returning', fill: '#2563eb' },
  { key: 'resurrecting', label: 'Resurrecting', fill: '#7c3aed' },
  { key: 'dormant', label: 'Dormant', fill: '#dc2626' },
];

/** New, returning and resurrecting persons stacked above the axis, dormant below. */
export function LifecycleChart({ result, height = 300, compact = false }: { result: LifecycleResponse; height?: number; compact?: boolean }) {
  const data = result.labels.map((l, i) => ({
    label: formatBucket(l, result.interval),
    new: result.new[i] ?? 0,
    returning: result.returning[i] ?? 0,
    resurrecting: result.resurrecting[i] ?? 0,
    dormant: -(result.dormant[i] ?? 0),
  }));
  return (
    <div className="chart" role="img" aria-label="Stacked bar chart of new, returning, resurrecting and dormant persons per period">
      <ResponsiveContainer width="100%" height={height}>
        <BarChart data={data} stackOffset="sign" margin={{ top: 8, right: 16, bottom: 4, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="#e5e7eb" />
          <XAxis dataKey="label" tick={{ fontSize: 12 }} minTickGap={16} />
          <YAxis tick={{ fontSize: 12 }} tickFormatter={(v: number) => formatNumber(Math.abs(v))} width={48} />
          <Tooltip formatter={(v) => formatNumber(Math.abs(Number(v)))} />
          {!compact ? <Legend /> : null}
          <ReferenceLine y={0} stroke="#6b7280" />
          {LIFECYCLE.map((s) => (
            <Bar key={s.key} dataKey={s.key} name={s.label} stackId="persons" fill={s.fill} isAnimationActive={false} />
          ))}
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}

export function LifecycleTable({ result }: { result: LifecycleResponse }) {
  return (
    <div className="table-wrap">
      <table className="table" aria-label="Lifecycle">
        <thead>
          <tr>
            <th scope="col">Period</th>
            {LIFECYCLE.map((s) => (
              <th scope="col" key={s.key}>
                {s.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {result.labels.map((l, i) => (
            <tr key={l}>
              <th scope="row">{formatBucket(l, result.interval)}</th>
              {LIFECYCLE.map((s) => (
                <td key={s.key}>{formatNumber(result[s.key][i] ?? 0)}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The Sankey diagram's nodes and links: a node per (step, element), links by node index. */
export function sankeyData(result: PathsResponse) {
  const index = new Map<string, number>();
  const nodes: { name: string }[] = [];
  const id = (step: number, name: string) => {
    const key = `${step}\u0000${name}`;
    let i = index.get(key);
    if (i === undefined) {
      i = nodes.length;
      index.set(key, i);
      nodes.push({ name: `${step}. ${name}` });
    }
    return i;
  };
  const links = result.links.map((l) => ({ source: id(l.step, l.source), target: id(l.step + 1, l.target), value: l.persons }));
  return { nodes, links };
}

/** The paths as a flow: steps left to right, link widths by persons. */
export function PathsSankey({ result, height = 420 }: { result: PathsResponse; height?: number }) {
  const data = sankeyData(result);
  return (
    <div className="chart" role="img" aria-label={`Sankey diagram of the paths of ${formatNumber(result.persons)} persons`}>
      <ResponsiveContainer width="100%" height={height}>
        <Sankey data={data} nodePadding={16} nodeWidth={10} margin={{ top: 8, right: 160, bottom: 8, left: 8 }} link={{ stroke: '#93c5fd' }}>
          <Tooltip formatter={(v) => formatNumber(Number(v))} />
        </Sankey>
      </ResponsiveContainer>
    </div>
  );
}

export function PathsTable({ result }: { result: PathsResponse }) {
  return (
    <div className="table-wrap">
      <table className="table" aria-label="Path links">
        <thead>
          <tr>
            <th scope="col">Step</th>
            <th scope="col">From</th>
            <th scope="col">To</th>
            <th scope="col">Persons</th>
          </tr>
        </thead>
        <tbody>
          {result.links.map((l) => (
            <tr key={`${l.step}-${l.source}-${l.target}`}>
              <td>{l.step}</td>
              <td>{l.source}</td>
              <td>{l.target}</td>
              <td>{formatNumber(l.persons)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The totals of a sessions result as figures. */
export function SessionTotals({ result }: { result: SessionsResponse }) {
  const t = result.totals;
  const figures: [string, string][] = [
    ['Sessions', formatNumber(t.sessions)],
    ['Median duration', formatDuration(t.median_duration_seconds)],
    ['90th percentile', formatDuration(t.p90_duration_seconds)],
    ['Events per session', formatNumber(Math.round(t.avg_events_per_session * 10) / 10)],
    ['Bounce rate', formatPercent(t.bounce_rate)],
  ];
  return (
    <ul className="tile-totals" aria-label="Session totals">
      {figures.map(([label, value]) => (
        <li key={label}>
          <span className="tile-total-value">{value}</span>
          <span className="tile-total-label">{label}</span>
        </li>
      ))}
    </ul>
  );
}

export function SessionsChart({ result, height = 260 }: { result: SessionsResponse; height?: number }) {
  const data = result.labels.map((l, i) => ({
    label: formatBucket(l, result.interval),
    sessions: result.series[i]?.sessions ?? 0,
    median: result.series[i]?.median_duration_seconds ?? 0,
  }));
  return (
    <div className="chart" role="img" aria-label="Line chart of sessions per period">
      <ResponsiveContainer width="100%" height={height}>
        <LineChart data={data} margin={{ top: 8, right: 16, bottom: 4, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="#e5e7eb" />
          <XAxis dataKey="label" tick={{ fontSize: 12 }} minTickGap={16} />
          <YAxis tick={{ fontSize: 12 }} tickFormatter={(v: number) => formatNumber(v)} width={48} />
          <Tooltip formatter={(v) => formatNumber(Number(v))} />
          <Line type="linear" dataKey="sessions" name="Sessions" stroke={color(0)} strokeWidth={2} isAnimationActive={false} dot={result.labels.length <= 31} />
        </LineChart>
      </ResponsiveContainer>
    </div>
  );
}
