// The current query lives in the URL, as `?q=<URL-encoded JSON of the query>` (the API's request
// body), so that a link can be shared, a reload keeps it, and back/forward step through edits.
// A saved insight being edited adds `&insight=<id>`.

import { useCallback, useMemo } from 'react';
import { useSearchParams } from 'react-router';
import type { InsightKind, InsightQuery } from './api/types';

export const QUERY_PARAM = 'q';
export const INSIGHT_PARAM = 'insight';

/** The `q` parameter's value for a query (URLSearchParams does the percent-encoding). */
export function encodeQuery(query: unknown): string {
  return JSON.stringify(query);
}

export interface Decoded<T> {
  value: T;
  /** The URL had a `q` that could not be read (bad JSON or the wrong shape); `value` is the fallback. */
  invalid: boolean;
  /** The URL had no `q`. */
  missing: boolean;
}

/** Reads a query from `q`'s raw (already percent-decoded) value, keeping what `sanitize` accepts. */
export function decodeQuery<T>(raw: string | null, fallback: T, sanitize: (x: unknown) => T | null): Decoded<T> {
  if (raw === null || raw === '') return { value: fallback, invalid: false, missing: true };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { value: fallback, invalid: true, missing: false };
  }
  const value = sanitize(parsed);
  return value === null ? { value: fallback, invalid: true, missing: false } : { value, invalid: false, missing: false };
}

/** The search string (with `?`) holding `query`, and the insight id when given. */
export function searchFor(query: unknown, insightId?: number | null): string {
  const p = new URLSearchParams();
  p.set(QUERY_PARAM, encodeQuery(query));
  if (insightId) p.set(INSIGHT_PARAM, String(insightId));
  return `?${p.toString()}`;
}

/** The editor's path for a query of `kind` in a project, e.g. /project/3/trends?q=…. */
export function editorPath(projectId: number, kind: InsightKind, query: unknown, insightId?: number | null): string {
  return `/project/${projectId}/${kind}${searchFor(query, insightId)}`;
}

/** The editor's path for a saved insight's query (its `kind` removed from the body). */
export function insightEditorPath(projectId: number, insight: { id: number; query: InsightQuery }): string {
  const { kind, ...body } = insight.query;
  return editorPath(projectId, kind, body, insight.id);
}

export interface UrlQuery<T> extends Decoded<T> {
  /** Puts a new query in the URL: a new history entry unless `replace`. */
  setQuery: (next: T, opts?: { replace?: boolean }) => void;
  insightId: number | null;
  /** Sets or clears the insight being edited, keeping the query. */
  setInsightId: (id: number | null) => void;
}

/** The query held in the current URL's `q` (see decodeQuery), and a way to change it. */
export function useUrlQuery<T>(fallback: T, sanitize: (x: unknown) => T | null): UrlQuery<T> {
  const [params, setParams] = useSearchParams();
  const raw = params.get(QUERY_PARAM);
  const insightRaw = params.get(INSIGHT_PARAM);
  // Callers keep `fallback` and `sanitize` stable (memoised / module functions).
  const decoded = useMemo(() => decodeQuery(raw, fallback, sanitize), [raw, fallback, sanitize]);
  const insightId = insightRaw && /^\d+$/.test(insightRaw) ? Number(insightRaw) : null;

  const setQuery = useCallback(
    (next: T, opts?: { replace?: boolean }) => {
      setParams(
        (prev) => {
          const p = new URLSearchParams(prev);
          p.set(QUERY_PARAM, encodeQuery(next));
          return p;
        },
        { replace: opts?.replace ?? false },
      );
    },
    [setParams],
  );

  const setInsightId = useCallback(
    (id: number | null) => {
      setParams(
        (prev) => {
          const p = new URLSearchParams(prev);
          if (id) p.set(INSIGHT_PARAM, String(id));
          else p.delete(INSIGHT_PARAM);
          return p;
        },
        { replace: true },
      );
    },
    [setParams],
  );

  return { ...decoded, setQuery, insightId, setInsightId };
}
