import { useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { createDashboard, createInsight, getDashboard, listDashboards, updateDashboard, updateInsight } from '../api/insights';
import type { Dashboard, Insight, InsightQuery } from '../api/types';
import { DEFAULT_TILE, packTiles } from './dashboardLayout';
import { Modal } from './Modal';
import { FormError } from './States';

type Target = 'none' | 'new' | 'existing';

export interface SaveResult {
  insight: Insight;
  dashboard: Dashboard | null;
}

interface Props {
  projectId: number;
  query: InsightQuery;
  /** The saved insight being edited, when there is one: it can be updated or saved as new. */
  insight?: Pick<Insight, 'id' | 'name'> | null;
  defaultName: string;
  onClose: () => void;
  onSaved: (r: SaveResult) => void;
}

/** Adds an insight to a dashboard's tiles (the whole list is replaced, so the rest are sent back). */
export async function addToDashboard(projectId: number, dashboardId: number, insightId: number): Promise<Dashboard> {
  const d = await getDashboard(projectId, dashboardId);
  if (d.tiles.some((t) => t.insight.id === insightId)) return d;
  const tiles = [...d.tiles.map((t) => ({ insight_id: t.insight.id, layout: t.layout })), { insight_id: insightId, layout: { ...DEFAULT_TILE } }];
  return updateDashboard(projectId, dashboardId, { tiles: packTiles(tiles) });
}

/** Names the insight and saves it (new, or over the one being edited), optionally onto a dashboard. */
export function SaveInsightDialog({ projectId, query, insight, defaultName, onClose, onSaved }: Props) {
  const queryClient = useQueryClient();
  const [name, setName] = useState(insight?.name ?? defaultName);
  const [asNew, setAsNew] = useState(!insight);
  const [target, setTarget] = useState<Target>('none');
  const [newDashboard, setNewDashboard] = useState('');
  const [existing, setExisting] = useState('');
  const dashboards = useQuery({ queryKey: ['dashboards', projectId], queryFn: () => listDashboards(projectId) });

  const save = useMutation({
    mutationFn: async (): Promise<SaveResult> => {
      const trimmed = name.trim();
      const saved =
        insight && !asNew
          ? await updateInsight(projectId, insight.id, { name: trimmed, query })
          : await createInsight(projectId, { name: trimmed, query });
      let dashboard: Dashboard | null = null;
      if (target === 'new') {
        dashboard = await createDashboard(projectId, { name: newDashboard.trim(), tiles: packTiles([{ insight_id: saved.id, layout: { ...DEFAULT_TILE } }]) });
      } else if (target === 'existing' && existing) {
        dashboard = await addToDashboard(projectId, Number(existing), saved.id);
      }
      return { insight: saved, dashboard };
    },
    onSuccess: (r) => {
      void queryClient.invalidateQueries({ queryKey: ['insights', projectId] });
      void queryClient.invalidateQueries({ queryKey: ['dashboards', projectId] });
      if (r.dashboard) void queryClient.invalidateQueries({ queryKey: ['dashboard', projectId, r.dashboard.id] });
      onSaved(r);
    },
  });

  const invalid =
    name.trim() === '' || (target === 'new' && newDashboard.trim() === '') || (target === 'existing' && existing === '');

  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!invalid) save.mutate();
  };

  return (
    <Modal title={insight && !asNew ? 'Save insight' : 'Save as a new insight'} onClose={onClose}>
      <form className="form" onSubmit={submit}>
        <div className="field">
          <label htmlFor="insight-name">Name</label>
          <input id="insight-name" value={name} maxLength={200} required onChange={(e) => setName(e.target.value)} />
        </div>
        {insight ? (
          <div className="field field-check">
            <input id="insight-as-new" type="checkbox" checked={asNew} onChange={(e) => setAsNew(e.target.checked)} />
            <label htmlFor="insight-as-new">Save as a new insight (leave “{insight.name}” as it is)</label>
          </div>
        ) : null}
        <fieldset className="fieldset">
          <legend>Add to a dashboard</legend>
          <div className="field field-check">
            <input id="dash-none" type="radio" name="dash-target" checked={target === 'none'} onChange={() => setTarget('none')} />
            <label htmlFor="dash-none">No</label>
          </div>
          <div className="field field-check">
            <input id="dash-new" type="radio" name="dash-target" checked={target === 'new'} onChange={() => setTarget('new')} />
            <label htmlFor="dash-new">A new dashboard</label>
          </div>
          {target === 'new' ? (
            <div className="field nested">
              <label htmlFor="dash-new-name">New dashboard's name</label>
              <input id="dash-new-name" value={newDashboard} maxLength={200} required onChange={(e) => setNewDashboard(e.target.value)} />
            </div>
          ) : null}
          <div className="field field-check">
            <input
              id="dash-existing"
              type="radio"
              name="dash-target"
              checked={target === 'existing'}
              disabled={!dashboards.data || dashboards.data.results.length === 0}
              onChange={() => setTarget('existing')}
            />
            <label htmlFor="dash-existing">
              An existing dashboard
              {dashboards.isPending ? ' (loading…)' : dashboards.data?.results.length === 0 ? ' (there are none yet)' : ''}
            </label>
          </div>
          {target === 'existing' ? (
            <div className="field nested">
              <label htmlFor="dash-existing-id">Dashboard</label>
              <select id="dash-existing-id" value={existing} onChange={(e) => setExisting(e.target.value)} required>
                <option value="">Choose…</option>
                {dashboards.data?.results.map((d) => (
                  <option key={d.id} value={d.id}>
                    {d.name}
                  </option>
                ))}
              </select>
            </div>
          ) : null}
        </fieldset>
        <FormError error={save.error} />
        <div className="modal-actions">
          <button type="button" className="btn" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="btn btn-primary" disabled={invalid || save.isPending}>
            {save.isPending ? 'Saving…' : 'Save'}
          </button>
        </div>
      </form>
    </Modal>
  );
}
