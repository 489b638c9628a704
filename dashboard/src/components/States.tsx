import type { ReactNode } from 'react';
import { ApiError } from '../api/client';

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <div className="state state-loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      <span>{label}</span>
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="state state-empty" data-testid="empty-state">
      <p className="state-title">{title}</p>
      {children ? <div className="state-body">{children}</div> : null}
    </div>
  );
}

/** What to tell a person about an error: the server's message, and for a 400 the field at fault. */
export function describeError(error: unknown): { title: string; message: string; field?: string } {
  if (error instanceof ApiError) {
    switch (error.status) {
      case 0:
        return { title: 'Cannot reach Cairn', message: error.message };
      case 400:
        return { title: 'The query was refused', message: error.message, field: error.field };
      case 401:
        return { title: 'Not signed in', message: error.message };
      case 403:
        return { title: 'Not allowed', message: error.message };
      case 404:
        return { title: 'Not found, or no access', message: error.message };
      case 503:
        return { title: 'Temporarily unavailable', message: error.message };
      case 504:
        return { title: 'The query took too long', message: error.message };
      default:
        return { title: `Something went wrong (HTTP ${error.status})`, message: error.message };
    }
  }
  if (error instanceof Error) return { title: 'Something went wrong', message: error.message };
  return { title: 'Something went wrong', message: String(error) };
}

export function ErrorState({ error, onRetry, title }: { error: unknown; onRetry?: () => void; title?: string }) {
  const d = describeError(error);
  return (
    <div className="state state-error" role="alert">
      <p className="state-title">{title ?? d.title}</p>
      <p className="state-body">{d.message}</p>
      {d.field ? (
        <p className="state-field">
          Field: <code>{d.field}</code>
        </p>
      ) : null}
      {onRetry ? (
        <button type="button" className="btn" onClick={onRetry}>
          Retry
        </button>
      ) : null}
    </div>
  );
}

/** A small inline error under a form (same content as ErrorState, tighter). */
export function FormError({ error }: { error: unknown }) {
  if (!error) return null;
  const d = describeError(error);
  return (
    <div className="form-error" role="alert">
      {d.message}
      {d.field ? (
        <>
          {' '}
          (<code>{d.field}</code>)
        </>
      ) : null}
    </div>
  );
}

/**
 * A list query's states before its rows: the error (with a retry), loading, and empty; `children`
 * renders the rows once there are some.
 */
export function ListView<T>({
  query,
  items,
  empty,
  children,
}: {
  query: { error: unknown; isPending: boolean; data: T | undefined; refetch: () => unknown };
  items: (data: T) => readonly unknown[];
  empty: ReactNode;
  children: (data: T) => ReactNode;
}) {
  if (query.error) return <ErrorState error={query.error} onRetry={() => void query.refetch()} />;
  if (query.isPending || query.data === undefined) return <Loading />;
  if (items(query.data).length === 0) return <>{empty}</>;
  return <>{children(query.data)}</>;
}
