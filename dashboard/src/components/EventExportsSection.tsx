import { useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { ApiError } from '../api/client';
import { createEventExport, deleteEventExport, listEventExports, updateEventExport } from '../api/query';
import type { EventExport, ExportDestination } from '../api/types';
import { formatNumber, formatTimestamp } from '../format';
import { useProject } from '../project';
import { ConfirmDialog } from './Modal';
import { Empty, FormError, ListView } from './States';

function where(d: ExportDestination): string {
  return d.kind === 'local' ? `Directory ${d.path || '(the export root)'}` : `s3://${d.bucket}/${d.prefix ?? ''}`;
}

/**
 * Scheduled exports of the project's new events to files (owners and admins): one file per
 * window of received events, in a directory of the server or an S3-compatible bucket.
 */
export function EventExportsSection() {
  const project = useProject();
  const queryClient = useQueryClient();
  const key = ['event-exports', project.id];
  const exports = useQuery({ queryKey: key, queryFn: () => listEventExports(project.id), refetchInterval: 15_000 });
  const [name, setName] = useState('');
  const [kind, setKind] = useState<'local' | 's3'>('s3');
  const [bucket, setBucket] = useState('');
  const [path, setPath] = useState('');
  const [format, setFormat] = useState<'jsonl' | 'csv'>('jsonl');
  const [interval, setInterval] = useState(3600);
  const [deleting, setDeleting] = useState<EventExport | null>(null);
  const refresh = () => void queryClient.invalidateQueries({ queryKey: key });
  const create = useMutation({
    mutationFn: () =>
      createEventExport(project.id, {
        name: name.trim(),
        destination: kind === 'local' ? { kind, path: path.trim() } : { kind, bucket: bucket.trim(), prefix: path.trim() },
        format,
        interval_seconds: interval,
      }),
    onSuccess: () => {
      setName('');
      refresh();
    },
  });
  const pause = useMutation({ mutationFn: (e: EventExport) => updateEventExport(project.id, e.id, { paused: !e.paused }), onSettled: refresh });
  const remove = useMutation({
    mutationFn: (id: number) => deleteEventExport(project.id, id),
    onSuccess: () => {
      setDeleting(null);
      refresh();
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  const forbidden = exports.error instanceof ApiError && (exports.error.status === 403 || exports.error.status === 404);
  if (forbidden) {
    return (
      <section className="settings-section" aria-labelledby="settings-exports">
        <h2 id="settings-exports">Scheduled exports</h2>
        <p className="muted">Owners and admins manage the scheduled exports of this project's events.</p>
      </section>
    );
  }
  return (
    <section className="settings-section" aria-labelledby="settings-exports">
      <h2 id="settings-exports">Scheduled exports</h2>
      <p className="muted">
        New events, written to files window after window (each event in exactly one file), to an S3-compatible bucket or a directory of the
        server. Owners and admins only.
      </p>
      <form className="inline-form" onSubmit={submit} aria-label="New scheduled export">
        <div className="field">
          <label htmlFor="export-name">Name</label>
          <input id="export-name" value={name} maxLength={200} placeholder="e.g. hourly to the lake" onChange={(e) => setName(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="export-kind">To</label>
          <select id="export-kind" value={kind} onChange={(e) => setKind(e.target.value as 'local' | 's3')}>
            <option value="s3">S3 bucket</option>
            <option value="local">Server directory</option>
          </select>
        </div>
        {kind === 's3' ? (
          <div className="field">
            <label htmlFor="export-bucket">Bucket</label>
            <input id="export-bucket" value={bucket} onChange={(e) => setBucket(e.target.value)} />
          </div>
        ) : null}
        <div className="field">
          <label htmlFor="export-path">{kind === 's3' ? 'Key prefix' : 'Directory (relative)'}</label>
          <input id="export-path" value={path} onChange={(e) => setPath(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="export-format">Format</label>
          <select id="export-format" value={format} onChange={(e) => setFormat(e.target.value as 'jsonl' | 'csv')}>
            <option value="jsonl">JSON lines</option>
            <option value="csv">CSV</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="export-interval">A file every</label>
          <select id="export-interval" value={interval} onChange={(e) => setInterval(Number(e.target.value))}>
            <option value={300}>5 minutes</option>
            <option value={3600}>hour</option>
            <option value={86400}>day</option>
          </select>
        </div>
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>
          Create export
        </button>
        <FormError error={create.error} />
      </form>
      <ListView query={exports} items={(data) => data} empty={<Empty title="No scheduled exports" />}>
        {(data) => (
          <table className="data-table" aria-label="Scheduled exports">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">To</th>
                <th scope="col">Exported until</th>
                <th scope="col">Files</th>
                <th scope="col">Events</th>
                <th scope="col">Status</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {data.map((e) => (
                <tr key={e.id}>
                  <th scope="row">{e.name}</th>
                  <td className="mono">
                    {where(e.destination)} ({e.format})
                  </td>
                  <td>{formatTimestamp(e.exported_until)}</td>
                  <td>{formatNumber(e.files_written)}</td>
                  <td>{formatNumber(e.events_exported)}</td>
                  <td>{e.paused ? 'Paused' : e.last_error ? <span title={e.last_error}>Retrying: {e.last_error}</span> : 'Running'}</td>
                  <td className="actions">
                    <button type="button" className="btn btn-small" onClick={() => pause.mutate(e)}>
                      {e.paused ? 'Resume' : 'Pause'}
                    </button>
                    <button type="button" className="btn btn-small btn-danger-outline" onClick={() => setDeleting(e)}>
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </ListView>
      {deleting ? (
        <ConfirmDialog
          title="Delete scheduled export"
          message={<p>Stop “{deleting.name}”? The files it wrote stay where they are.</p>}
          confirmLabel="Delete"
          busy={remove.isPending}
          error={<FormError error={remove.error} />}
          onCancel={() => setDeleting(null)}
          onConfirm={() => remove.mutate(deleting.id)}
        />
      ) : null}
    </section>
  );
}
