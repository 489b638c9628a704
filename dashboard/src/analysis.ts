import { useMemo } from 'react';
import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { useProject } from './project';
import { useUrlQuery } from './urlState';

/** How one analysis (trends, funnels, retention) is read from the URL, cleaned, and run. */
export interface AnalysisKind<Q, R> {
  name: string;
  defaults: (timezone?: string) => Q;
  sanitize: (x: unknown) => Q | null;
  /** The request actually sent (empty parts dropped). */
  toRequest: (q: Q) => Q;
  run: (projectId: number, request: Q, signal: AbortSignal) => Promise<R>;
}

/**
 * An analysis page's state: the query held in the URL, the request it makes, its result (the
 * previous result stays on screen while the next loads), and `set` to change part of the query.
 */
export function useAnalysis<Q, R>(kind: AnalysisKind<Q, R>) {
  const project = useProject();
  const fallback = useMemo(() => kind.defaults(project.timezone), [kind, project.timezone]);
  const url = useUrlQuery<Q>(fallback, kind.sanitize);
  const q = url.value;
  const request = useMemo(() => kind.toRequest(q), [kind, q]);
  const result = useQuery({
    queryKey: [kind.name, project.id, request],
    queryFn: ({ signal }) => kind.run(project.id, request, signal),
    placeholderData: keepPreviousData,
  });
  const set = (patch: Partial<Q>) => url.setQuery({ ...q, ...patch });
  return { project, q, request, result, set, ...url };
}
