import { useState } from 'react';
import { Link } from 'react-router';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { deleteInsight, listInsights } from '../api/insights';
import type { Insight } from '../api/types';
import { ConfirmDialog } from '../components/Modal';
import { PageHeader } from '../components/PageHeader';
import { Empty, FormError, ListView } from '../components/States';
import { formatTimestamp } from '../format';
import { useProject } from '../project';
import { insightEditorPath } from '../urlState';

const KIND = {
  trends: 'Trend',
  funnels: 'Funnel',
  retention: 'Retention',
  stickiness: 'Stickiness',
  lifecycle: 'Lifecycle',
  paths: 'Paths',
  sessions: 'Sessions',
} as const;

export function InsightsPage() {
  const project = useProject();
  const queryClient = useQueryClient();
  const [deleting, setDeleting] = useState<Insight | null>(null);
  const list = useQuery({ queryKey: ['insights', project.id], queryFn: () => listInsights(project.id) });
  const del = useMutation({
    mutationFn: (id: number) => deleteInsight(project.id, id),
    onSuccess: () => {
      setDeleting(null);
      void queryClient.invalidateQueries({ queryKey: ['insights', project.id] });
      void queryClient.invalidateQueries({ queryKey: ['dashboard', project.id] });
    },
  });
  return (
    <div className="page page-insights">
      <PageHeader title="Saved insights" />
      <ListView query={list} items={(data) => data.results} empty={<Empty title="No saved insights yet">Build a trend, funnel or retention query and press Save.</Empty>}>
        {(data) => (
          <table className="data-table" aria-label="Saved insights">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Kind</th>
                <th scope="col">Updated</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {data.results.map((i) => (
                <tr key={i.id}>
                  <th scope="row">
                    <Link to={insightEditorPath(project.id, i)}>{i.name}</Link>
                  </th>
                  <td>{KIND[i.query.kind] ?? i.query.kind}</td>
                  <td>{formatTimestamp(i.updated_at)}</td>
                  <td className="actions">
                    <button type="button" className="btn btn-small btn-danger-outline" onClick={() => setDeleting(i)}>
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
          title="Delete insight"
          message={<p>Delete “{deleting.name}”? It is removed from every dashboard too.</p>}
          confirmLabel="Delete"
          busy={del.isPending}
          error={<FormError error={del.error} />}
          onCancel={() => setDeleting(null)}
          onConfirm={() => del.mutate(deleting.id)}
        />
      ) : null}
    </div>
  );
}
