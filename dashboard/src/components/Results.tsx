import type { ReactNode } from 'react';
import type { UseQueryResult } from '@tanstack/react-query';
import { ErrorState, Loading } from './States';

/**
 * The results area of an analysis: loading, the error (with its message and field), or the
 * content. While a changed query runs, the previous result stays, marked busy.
 */
export function Results<T>({ query, children, label = 'Results' }: { query: UseQueryResult<T>; children: (data: T) => ReactNode; label?: string }) {
  const busy = query.isFetching;
  return (
    <section className={`results ${busy && query.data ? 'results-stale' : ''}`} aria-label={label} aria-busy={busy}>
      {query.error && !query.isFetching ? (
        <ErrorState error={query.error} onRetry={() => void query.refetch()} />
      ) : query.data === undefined ? (
        <Loading label="Running the query…" />
      ) : (
        children(query.data)
      )}
    </section>
  );
}
