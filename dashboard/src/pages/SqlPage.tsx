import { useState } from 'react';
import { useSearchParams } from 'react-router';
import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { querySql } from '../api/query';
import type { SqlResponse } from '../api/types';
import { color } from '../components/charts/palette';
import { PageHeader } from '../components/PageHeader';
import { Empty, ErrorState, Loading } from '../components/States';
import { formatNumber } from '../format';
import { useProject } from '../project';

export const SQL_EXAMPLE = `SELECT JSONExtractString(properties, '$browser') AS browser,
       uniq(person_id) AS persons,
       count() AS events
FROM events
WHERE event = '$pageview' AND timestamp > now() - INTERVAL 7 DAY
GROUP BY browser
ORDER BY persons DESC
LIMIT 20`;

const NUMERIC = /^(Nullable\()?(U?Int\d+|Float\d+|Decimal)/;

/** The columns a chart can draw: numeric ones after the first (the first labels the bars). */
export function chartColumns(result: SqlResponse): number[] {
  return result.columns.map((c, i) => (i > 0 && NUMERIC.test(c.type) ? i : -1)).filter((i) => i >= 0);
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function SqlResultTable({ result }: { result: SqlResponse }) {
  return (
    <div className="table-wrap">
      <table className="table table-sql" aria-label="Query result">
        <thead>
          <tr>
            {result.columns.map((c) => (
              <th scope="col" key={c.name} title={c.type}>
                {c.name}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {result.rows.map((row, i) => (
            <tr key={i}>
              {row.map((v, j) => (
                <td key={j}>{cell(v)}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function SqlChart({ result }: { result: SqlResponse }) {
  const cols = chartColumns(result);
  const data = result.rows.slice(0, 100).map((row) => {
    const point: Record<string, string | number> = { label: cell(row[0]) };
    for (const i of cols) point[`c${i}`] = Number(row[i]);
    return point;
  });
  return (
    <div className="chart" role="img" aria-label={`Bar chart of ${cols.map((i) => result.columns[i]?.name).join(', ')} by ${result.columns[0]?.name}`}>
      <ResponsiveContainer width="100%" height={300}>
        <BarChart data={data} margin={{ top: 8, right: 16, bottom: 4, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="#e5e7eb" />
          <XAxis dataKey="label" tick={{ fontSize: 12 }} minTickGap={8} />
          <YAxis tick={{ fontSize: 12 }} tickFormatter={(v: number) => formatNumber(v)} width={56} />
          <Tooltip formatter={(v) => formatNumber(Number(v))} />
          {cols.length > 1 ? <Legend /> : null}
          {cols.map((i, k) => (
            <Bar key={i} dataKey={`c${i}`} name={result.columns[i]?.name} fill={color(k)} isAnimationActive={false} />
          ))}
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}

/** SQL over the project's `events` and `persons`: a statement, its rows as a table and a chart. */
export function SqlPage() {
  const project = useProject();
  const [params, setParams] = useSearchParams();
  const submitted = params.get('sql') ?? '';
  const [draft, setDraft] = useState(submitted || SQL_EXAMPLE);
  const [view, setView] = useState<'table' | 'chart'>('table');
  const result = useQuery({
    queryKey: ['sql', project.id, submitted],
    queryFn: ({ signal }) => querySql(project.id, { query: submitted, limit: 1000 }, signal),
    enabled: submitted.trim() !== '',
    placeholderData: keepPreviousData,
    retry: false,
  });
  const run = () =>
    setParams((prev) => {
      const p = new URLSearchParams(prev);
      p.set('sql', draft);
      return p;
    });
  const data = result.data;
  const chartable = data ? chartColumns(data).length > 0 && data.rows.length > 0 : false;
  return (
    <div className="page page-sql">
      <PageHeader title="SQL" />
      <form
        className="editor"
        aria-label="SQL query"
        onSubmit={(e) => {
          e.preventDefault();
          run();
        }}
      >
        <div className="field">
          <label htmlFor="sql-text">
            One SELECT over <code>events</code> (uuid, event, distinct_id, person_id, properties, timestamp, received_at) and{' '}
            <code>persons</code> (person_id, properties) of this project
          </label>
          <textarea
            id="sql-text"
            className="sql-text"
            rows={10}
            spellCheck={false}
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
                e.preventDefault();
                run();
              }
            }}
          />
        </div>
        <div className="editor-row">
          <button type="submit" className="btn btn-primary">
            Run (Ctrl+Enter)
          </button>
          {data ? (
            <div className="btn-group" role="group" aria-label="Show as">
              <button type="button" className="btn btn-small" aria-pressed={view === 'table'} onClick={() => setView('table')}>
                Table
              </button>
              <button type="button" className="btn btn-small" aria-pressed={view === 'chart'} disabled={!chartable} onClick={() => setView('chart')}>
                Chart
              </button>
            </div>
          ) : null}
        </div>
      </form>
      <section className={`results ${result.isFetching && data ? 'results-stale' : ''}`} aria-label="Results" aria-busy={result.isFetching}>
        {submitted.trim() === '' ? (
          <Empty title="Write a query and run it">The statement runs read-only, within the service's time and memory limits.</Empty>
        ) : result.error && !result.isFetching ? (
          <ErrorState error={result.error} title="The statement was refused" />
        ) : !data ? (
          <Loading label="Running the statement…" />
        ) : (
          <>
            <p className="muted">
              {formatNumber(data.rows.length)} rows{data.truncated ? ' (more were left out: add a LIMIT or narrow the query)' : ''}.
            </p>
            {view === 'chart' && chartable ? <SqlChart result={data} /> : <SqlResultTable result={data} />}
            <details>
              <summary>The statement as it ran</summary>
              <pre className="sql-statement">{data.statement}</pre>
            </details>
          </>
        )}
      </section>
    </div>
  );
}
