import { useRef, useState } from 'react';
import { download, saveFile, type DownloadProgress, type QueryValue } from '../api/client';
import { formatNumber } from '../format';
import { describeError } from './States';

/**
 * "CSV" and "JSON" buttons that download `path` in that format (query `format`), showing the
 * rows received while a large file streams, with a cancel.
 */
export function ExportButtons({ path, query = {}, label = 'Export' }: { path: string; query?: Record<string, QueryValue>; label?: string }) {
  const [progress, setProgress] = useState<DownloadProgress | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const abort = useRef<AbortController | null>(null);
  const run = async (format: 'csv' | 'json') => {
    abort.current?.abort();
    const ctl = new AbortController();
    abort.current = ctl;
    setMessage(null);
    setProgress({ rows: 0, total: null, bytes: 0 });
    try {
      const file = await download(path, { query: { ...query, format }, signal: ctl.signal, onProgress: setProgress });
      saveFile(file.name, file.blob);
      setMessage(file.truncated ? 'Downloaded; the export holds the first rows only (the limit was reached).' : 'Downloaded.');
    } catch (e) {
      if (!(e instanceof DOMException && e.name === 'AbortError')) setMessage(describeError(e).message);
    } finally {
      setProgress(null);
      abort.current = null;
    }
  };
  return (
    <div className="btn-group" role="group" aria-label={label}>
      <span className="muted">{label}:</span>
      <button type="button" className="btn btn-small" disabled={progress !== null} onClick={() => void run('csv')}>
        CSV
      </button>
      <button type="button" className="btn btn-small" disabled={progress !== null} onClick={() => void run('json')}>
        JSON
      </button>
      {progress ? (
        <>
          <span role="status" className="muted" data-testid="export-progress">
            {progress.total !== null && progress.total > 0
              ? `${formatNumber(Math.min(progress.rows, progress.total))} of ${formatNumber(progress.total)} rows`
              : `${formatNumber(progress.rows)} rows`}
          </span>
          <button type="button" className="btn btn-small" onClick={() => abort.current?.abort()}>
            Cancel
          </button>
        </>
      ) : message ? (
        <span role="status" className="muted">
          {message}
        </span>
      ) : null}
    </div>
  );
}
