// Analyses run as jobs (POST /query-jobs): the dashboard polls the job for its progress, can
// cancel it, and leaving the page only stops the polling. Coming back with the same query finds
// the same job (the API answers the identical job running, or its result while it is fresh).

import { ApiError } from './api/client';
import { createQueryJob, getQueryJob } from './api/query';
import type { QueryJob, QueryJobKind } from './api/types';

/** How often a running job is asked for its progress. */
export const POLL_MS = 400;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? new DOMException('Aborted', 'AbortError'));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason ?? new DOMException('Aborted', 'AbortError'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The error a job ended with, as the synchronous route would have thrown it. */
export function jobError(job: QueryJob): ApiError {
  if (job.status === 'cancelled') return new ApiError(499, { error: 'cancelled', message: 'The query was cancelled.' });
  const e = job.error;
  return new ApiError(e?.status ?? 500, { error: e?.error ?? 'job_failed', message: e?.message ?? 'The query failed.', field: e?.field ?? undefined });
}

/**
 * Runs `query` as a `kind` job in the project and answers its result. `onJob` sees the job at
 * every poll (progress, id for a cancel). An abort stops the polling, not the job.
 */
export async function runJob<R>(
  projectId: number,
  kind: QueryJobKind,
  query: unknown,
  signal: AbortSignal | undefined,
  onJob: (job: QueryJob<R> | null) => void,
  refresh = false,
): Promise<R> {
  let job = await createQueryJob<R>(projectId, kind, query, refresh, signal);
  for (;;) {
    onJob(job);
    if (job.status === 'done') {
      onJob(null);
      return job.result as R;
    }
    if (job.status === 'failed' || job.status === 'cancelled') {
      onJob(null);
      throw jobError(job);
    }
    await sleep(POLL_MS, signal);
    job = await getQueryJob<R>(projectId, job.id, signal);
  }
}

/** "41M of 120M rows (34%)", or null while nothing is known. */
export function describeProgress(job: QueryJob | null): string | null {
  if (!job || job.status === 'queued') return job ? 'Waiting for a free worker…' : null;
  const { rows_read, total_rows, fraction } = job.progress;
  if (fraction === null || total_rows === 0) return null;
  return `${compact(rows_read)} of ${compact(total_rows)} rows (${Math.floor(fraction * 100)}%)`;
}

function compact(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}
