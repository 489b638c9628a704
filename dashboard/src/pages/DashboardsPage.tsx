import { useState, type FormEvent } from 'react';
import { Link, useNavigate } from 'react-router';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { createDashboard, listDashboards } from '../api/insights';
import { PageHeader } from '../components/PageHeader';
import { Empty, FormError, ListView } from '../components/States';
import { formatTimestamp } from '../format';
import { useProject } from '../project';

export function DashboardsPage() {
  const project = useProject();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [name, setName] = useState('');
  const list = useQuery({ queryKey: ['dashboards', project.id], queryFn: () => listDashboards(project.id) });
  const create = useMutation({
    mutationFn: () => createDashboard(project.id, { name: name.trim() }),
    onSuccess: (d) => {
      void queryClient.invalidateQueries({ queryKey: ['dashboards', project.id] });
      navigate(`/project/${project.id}/dashboards/${d.id}`);
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (name.trim()) create.mutate();
  };

  return (
    <div className="page page-dashboards">
      <PageHeader title="Dashboards" />
      <form className="inline-form" onSubmit={submit} aria-label="New dashboard">
        <div className="field">
          <label htmlFor="new-dashboard-name">New dashboard</label>
          <input id="new-dashboard-name" value={name} maxLength={200} placeholder="Name" onChange={(e) => setName(e.target.value)} />
        </div>
        <button type="submit" className="btn btn-primary" disabled={!name.trim() || create.isPending}>
          Create
        </button>
        <FormError error={create.error} />
      </form>
      <ListView query={list} items={(data) => data.results} empty={<Empty title="No dashboards yet">Create one here, or save an insight from Trends, Funnels or Retention onto a new dashboard.</Empty>}>
        {(data) => (
          <ul className="card-list" aria-label="Dashboards">
            {data.results.map((d) => (
              <li key={d.id} className="card">
                <Link to={`/project/${project.id}/dashboards/${d.id}`} className="card-title">
                  {d.name}
                </Link>
                {d.description ? <p className="muted">{d.description}</p> : null}
                <p className="muted small">Updated {formatTimestamp(d.updated_at)}</p>
              </li>
            ))}
          </ul>
        )}
      </ListView>
    </div>
  );
}
