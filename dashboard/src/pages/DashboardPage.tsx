import { useState, type FormEvent } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { deleteDashboard, getDashboard, getInsightResult, listInsights, updateDashboard } from '../api/insights';
import type { Dashboard, Tile, TileInput } from '../api/types';
import { DEFAULT_TILE, MAX_H, MIN_H, MIN_W, COLUMNS, moveTile, pack, packTiles, resizeTile, sizeOf } from '../components/dashboardLayout';
import { InsightResultView } from '../components/InsightResultView';
import { ConfirmDialog } from '../components/Modal';
import { PageHeader } from '../components/PageHeader';
import { Empty, ErrorState, FormError, Loading } from '../components/States';
import { useProject } from '../project';
import { insightEditorPath } from '../urlState';

const ROW_PX = 170;

function TileView({
  tile,
  index,
  count,
  onTiles,
  tiles,
  onRemove,
  busy,
}: {
  tile: Tile;
  index: number;
  count: number;
  tiles: TileInput[];
  onTiles: (t: TileInput[]) => void;
  onRemove: () => void;
  busy: boolean;
}) {
  const project = useProject();
  const result = useQuery({
    queryKey: ['insight-result', project.id, tile.insight.id, tile.insight.updated_at],
    queryFn: ({ signal }) => getInsightResult(project.id, tile.insight.id, signal),
  });
  const { w, h } = sizeOf(tile.layout);
  const name = tile.insight.name;
  return (
    <>
      <div className="tile-header">
        <h2 className="tile-title">
          <Link to={insightEditorPath(project.id, tile.insight)} title="Open in its editor">
            {name}
          </Link>
        </h2>
        <div className="tile-tools" role="toolbar" aria-label={`Arrange ${name}`}>
          <button type="button" className="btn-icon" aria-label={`Move ${name} earlier`} disabled={busy || index === 0} onClick={() => onTiles(moveTile(tiles, index, -1))}>
            ←
          </button>
          <button type="button" className="btn-icon" aria-label={`Move ${name} later`} disabled={busy || index === count - 1} onClick={() => onTiles(moveTile(tiles, index, 1))}>
            →
          </button>
          <button type="button" className="btn-icon" aria-label={`Make ${name} narrower`} disabled={busy || w <= MIN_W} onClick={() => onTiles(resizeTile(tiles, index, -1, 0))}>
            ⇤
          </button>
          <button type="button" className="btn-icon" aria-label={`Make ${name} wider`} disabled={busy || w >= COLUMNS} onClick={() => onTiles(resizeTile(tiles, index, 1, 0))}>
            ⇥
          </button>
          <button type="button" className="btn-icon" aria-label={`Make ${name} shorter`} disabled={busy || h <= MIN_H} onClick={() => onTiles(resizeTile(tiles, index, 0, -1))}>
            ⤒
          </button>
          <button type="button" className="btn-icon" aria-label={`Make ${name} taller`} disabled={busy || h >= MAX_H} onClick={() => onTiles(resizeTile(tiles, index, 0, 1))}>
            ⤓
          </button>
          <button type="button" className="btn-icon" aria-label={`Remove ${name} from the dashboard`} disabled={busy} onClick={onRemove}>
            ×
          </button>
        </div>
      </div>
      <div className="tile-body">
        {result.error ? (
          <ErrorState error={result.error} onRetry={() => void result.refetch()} />
        ) : result.isPending ? (
          <Loading />
        ) : (
          <InsightResultView query={tile.insight.query} result={result.data} chartHeight={Math.max(120, h * ROW_PX - 150)} />
        )}
      </div>
    </>
  );
}

export function DashboardPage() {
  const project = useProject();
  const { dashboardId } = useParams();
  const id = Number(dashboardId);
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const key = ['dashboard', project.id, id];
  const dash = useQuery({ queryKey: key, queryFn: () => getDashboard(project.id, id), enabled: Number.isInteger(id) && id > 0 });
  const [renaming, setRenaming] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [removing, setRemoving] = useState<Tile | null>(null);
  const [adding, setAdding] = useState('');
  const insights = useQuery({ queryKey: ['insights', project.id], queryFn: () => listInsights(project.id) });

  const patchTiles = useMutation({
    mutationFn: (tiles: TileInput[]) => updateDashboard(project.id, id, { tiles }),
    onMutate: async (tiles) => {
      await queryClient.cancelQueries({ queryKey: key });
      const prev = queryClient.getQueryData<Dashboard>(key);
      if (prev) {
        const byId = new Map(prev.tiles.map((t) => [t.insight.id, t]));
        const next = tiles.flatMap((t, position) => {
          const old = byId.get(t.insight_id);
          return old ? [{ ...old, layout: (t.layout ?? {}) as Tile['layout'], position }] : [];
        });
        queryClient.setQueryData<Dashboard>(key, { ...prev, tiles: next });
      }
      return { prev };
    },
    onError: (_e, _t, ctx) => {
      if (ctx?.prev) queryClient.setQueryData(key, ctx.prev);
    },
    onSuccess: (d) => {
      queryClient.setQueryData(key, d);
      setRemoving(null);
    },
  });
  const rename = useMutation({
    mutationFn: (name: string) => updateDashboard(project.id, id, { name }),
    onSuccess: (d) => {
      queryClient.setQueryData(key, d);
      void queryClient.invalidateQueries({ queryKey: ['dashboards', project.id] });
      setRenaming(null);
    },
  });
  const del = useMutation({
    mutationFn: () => deleteDashboard(project.id, id),
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: ['dashboards', project.id] });
      queryClient.removeQueries({ queryKey: key });
      navigate(`/project/${project.id}/dashboards`);
    },
  });

  if (dash.error) return <ErrorState error={dash.error} onRetry={() => void dash.refetch()} />;
  if (dash.isPending) return <Loading label="Loading the dashboard…" />;
  const d = dash.data;
  const tiles: TileInput[] = d.tiles.map((t) => ({ insight_id: t.insight.id, layout: t.layout }));
  const placed = pack(d.tiles.map((t) => sizeOf(t.layout)));
  const onDashboard = new Set(d.tiles.map((t) => t.insight.id));
  const addable = (insights.data?.results ?? []).filter((i) => !onDashboard.has(i.id));

  const submitRename = (e: FormEvent) => {
    e.preventDefault();
    if (renaming && renaming.trim()) rename.mutate(renaming.trim());
  };

  return (
    <div className="page page-dashboard">
      {renaming !== null ? (
        <form className="inline-form page-header" onSubmit={submitRename} aria-label="Rename dashboard">
          <div className="field">
            <label htmlFor="dashboard-name">Dashboard name</label>
            <input id="dashboard-name" value={renaming} maxLength={200} autoFocus onChange={(e) => setRenaming(e.target.value)} />
          </div>
          <button type="submit" className="btn btn-primary" disabled={!renaming.trim() || rename.isPending}>
            Save name
          </button>
          <button type="button" className="btn" onClick={() => setRenaming(null)}>
            Cancel
          </button>
          <FormError error={rename.error} />
        </form>
      ) : (
        <PageHeader title={d.name}>
          <button type="button" className="btn" onClick={() => setRenaming(d.name)}>
            Rename
          </button>
          <button type="button" className="btn btn-danger-outline" onClick={() => setConfirmDelete(true)}>
            Delete dashboard
          </button>
        </PageHeader>
      )}
      {d.description ? <p className="muted">{d.description}</p> : null}
      <form
        className="inline-form"
        aria-label="Add an insight"
        onSubmit={(e) => {
          e.preventDefault();
          if (adding) {
            patchTiles.mutate(packTiles([...tiles, { insight_id: Number(adding), layout: { ...DEFAULT_TILE } }]));
            setAdding('');
          }
        }}
      >
        <div className="field">
          <label htmlFor="add-insight">Add a saved insight</label>
          <select id="add-insight" value={adding} onChange={(e) => setAdding(e.target.value)} disabled={addable.length === 0}>
            <option value="">{addable.length === 0 ? 'No other saved insights' : 'Choose…'}</option>
            {addable.map((i) => (
              <option key={i.id} value={i.id}>
                {i.name}
              </option>
            ))}
          </select>
        </div>
        <button type="submit" className="btn" disabled={!adding || patchTiles.isPending}>
          Add
        </button>
      </form>
      <FormError error={patchTiles.error} />
      {d.tiles.length === 0 ? (
        <Empty title="This dashboard has no tiles yet">Save an insight onto it from Trends, Funnels or Retention, or add a saved one above.</Empty>
      ) : (
        <ol className="tile-grid" aria-label="Tiles" style={{ gridAutoRows: `${ROW_PX}px` }}>
          {d.tiles.map((t, i) => {
            const p = placed[i]!;
            return (
              <li
                key={t.insight.id}
                className="tile"
                data-testid="tile"
                aria-label={t.insight.name}
                style={{ gridColumn: `${p.x + 1} / span ${p.w}`, gridRow: `${p.y + 1} / span ${p.h}` }}
              >
                <TileView
                  tile={t}
                  index={i}
                  count={d.tiles.length}
                  tiles={tiles}
                  onTiles={(next) => patchTiles.mutate(next)}
                  onRemove={() => setRemoving(t)}
                  busy={patchTiles.isPending}
                />
              </li>
            );
          })}
        </ol>
      )}
      {confirmDelete ? (
        <ConfirmDialog
          title="Delete dashboard"
          message={<p>Delete the dashboard “{d.name}”? Its insights stay saved.</p>}
          confirmLabel="Delete dashboard"
          busy={del.isPending}
          error={<FormError error={del.error} />}
          onCancel={() => setConfirmDelete(false)}
          onConfirm={() => del.mutate()}
        />
      ) : null}
      {removing ? (
        <ConfirmDialog
          title="Remove tile"
          message={<p>Remove “{removing.insight.name}” from this dashboard? The insight stays saved.</p>}
          confirmLabel="Remove"
          busy={patchTiles.isPending}
          error={<FormError error={patchTiles.error} />}
          onCancel={() => setRemoving(null)}
          onConfirm={() => patchTiles.mutate(packTiles(tiles.filter((t) => t.insight_id !== removing.insight.id)))}
        />
      ) : null}
    </div>
  );
}
