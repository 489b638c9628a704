import type { ReactNode } from 'react';
import type { UseQueryResult } from '@tanstack/react-query';
import type { QueryJob } from '../api/types';
import { describeProgress } from '../jobs';
import { ErrorState, Loading } from './States';

/**
 * The results area of an analysis: loading (with the job's progress and a cancel), the error
 * (with its message and field), or the content. While a changed query runs, the previous result
 * stays, marked busy.
 */
export function Results<T>({
  query,
  children,
  label = 'Results',
  job = null,
  onCancel,
}: {
  query: UseQueryResult<T>;
  children: (data: T) => ReactNode;
  label?: string;
  job?: QueryJob<T> | null;
  onCancel?: () => void;
}) {
  const busy = query.isFetching;
  const running = busy && job !== null;
  return (
    <section className={`results ${busy && query.data ? 'results-stale' : ''}`} aria-label={label} aria-busy={busy}>
      {running ? <JobProgress job={job} onCancel={onCancel} /> : null}
      {query.error && !query.isFetching ? (
        <ErrorState error={query.error} onRetry={() => void query.refetch()} />
      ) : query.data === undefined ? (
        running ? null : <Loading label="Running the query…" />
      ) : (
        children(query.data)
      )}
    </section>
  );
}

/** A running job: how far it is, and a button to stop it. */
function JobProgress<T>({ job, onCancel }: { job: QueryJob<T>; onCancel?: () => void }) {
  const text = describeProgress(job);
  const fraction = job.progress.fraction;
  return (
    <div className="state state-loading job-progress" role="status" aria-live="polite" data-testid="job-progress">
      <span className="spinner" aria-hidden="true" />
      <span>{job.cancel_requested ? 'Cancelling…' : 'Running the query…'}</span>
      {fraction !== null ? (
        <progress max={1} value={fraction} aria-label="Query progress" />
      ) : null}
      {text ? <span className="job-progress-text">{text}</span> : null}
      {onCancel && !job.cancel_requested ? (
        <button type="button" className="btn btn-small" onClick={onCancel}>
          Cancel
        </button>
      ) : null}
    </div>
  );
}
