import { useCallback, useMemo, useState } from 'react';
import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { cancelQueryJob } from './api/query';
import type { QueryJob, QueryJobKind } from './api/types';
import { runJob } from './jobs';
import { useProject } from './project';
import { useUrlQuery } from './urlState';

/** How one analysis (trends, funnels, retention) is read from the URL, cleaned, and run. */
export interface AnalysisKind<Q, _R> {
  /** The analysis, as query jobs name it. */
  name: QueryJobKind;
  defaults: (timezone?: string) => Q;
  sanitize: (x: unknown) => Q | null;
  /** The request actually sent (empty parts dropped). */
  toRequest: (q: Q) => Q;
}

/**
 * An analysis page's state: the query held in the URL, the request it makes, its result (the
 * previous result stays on screen while the next loads), and `set` to change part of the query.
 * The analysis runs as a query job: `job` is the running job (its progress), `cancel` stops it.
 * Leaving the page stops the polling only; coming back finds the same job, or its result.
 */
export function useAnalysis<Q, R>(kind: AnalysisKind<Q, R>) {
  const project = useProject();
  const fallback = useMemo(() => kind.defaults(project.timezone), [kind, project.timezone]);
  const url = useUrlQuery<Q>(fallback, kind.sanitize);
  const q = url.value;
  const request = useMemo(() => kind.toRequest(q), [kind, q]);
  const [job, setJob] = useState<QueryJob<R> | null>(null);
  const result = useQuery({
    queryKey: [kind.name, project.id, request],
    queryFn: ({ signal }) =>
      runJob<R>(project.id, kind.name, request, signal, (j) => {
        if (!signal.aborted) setJob(j);
      }),
    placeholderData: keepPreviousData,
  });
  const jobId = job?.id;
  const cancel = useCallback(() => {
    if (jobId) void cancelQueryJob(project.id, jobId);
  }, [project.id, jobId]);
  const set = (patch: Partial<Q>) => url.setQuery({ ...q, ...patch });
  return { project, q, request, result, set, job, cancel, ...url };
}
