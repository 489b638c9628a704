import { useCallback, useMemo, useRef, useState } from 'react';
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
 * Leaving the page stops the polling only; coming back finds the same job, or its result. Editing
 * the query cancels the job of the previous query, so quick edits do not pile up jobs (the API
 * cancels only the jobs this user started; one joined from someone else runs on for them).
 */
export function useAnalysis<Q, R>(kind: AnalysisKind<Q, R>) {
  const project = useProject();
  const fallback = useMemo(() => kind.defaults(project.timezone), [kind, project.timezone]);
  const url = useUrlQuery<Q>(fallback, kind.sanitize);
  const q = url.value;
  const request = useMemo(() => kind.toRequest(q), [kind, q]);
  const [job, setJob] = useState<QueryJob<R> | null>(null);
  // The job of the query last run here, while it has not ended.
  const active = useRef<{ key: string; projectId: number; id: string } | null>(null);
  const result = useQuery({
    queryKey: [kind.name, project.id, request],
    queryFn: ({ signal }) => {
      const key = JSON.stringify([kind.name, project.id, request]);
      const previous = active.current;
      if (previous && previous.key !== key) {
        active.current = null;
        cancelQueryJob(previous.projectId, previous.id).catch(() => undefined);
      }
      setJob(null);
      return runJob<R>(project.id, kind.name, request, signal, (j) => {
        if (signal.aborted) return;
        setJob(j);
        active.current = j ? { key, projectId: project.id, id: j.id } : null;
      });
    },
    placeholderData: keepPreviousData,
  });
  const jobId = job?.id;
  const cancel = useCallback(() => {
    if (jobId) cancelQueryJob(project.id, jobId).catch(() => undefined);
  }, [project.id, jobId]);
  const set = (patch: Partial<Q>) => url.setQuery({ ...q, ...patch });
  return { project, q, request, result, set, job, cancel, ...url };
}
