import { useState } from 'react';
import { Link } from 'react-router';
import { useQuery } from '@tanstack/react-query';
import { getInsight } from '../api/insights';
import type { InsightQuery } from '../api/types';
import { useProject } from '../project';
import { ExportButtons } from './ExportButtons';
import { PageHeader } from './PageHeader';
import { SaveInsightDialog, type SaveResult } from './SaveInsightDialog';

interface Props {
  title: string;
  query: InsightQuery;
  insightId: number | null;
  setInsightId: (id: number | null) => void;
  defaultName: string;
  /** The URL's query could not be read. */
  invalidUrl?: boolean;
}

/** An analysis page's title, the saved insight being edited, and the Save button. */
export function InsightHeader({ title, query, insightId, setInsightId, defaultName, invalidUrl }: Props) {
  const project = useProject();
  const [open, setOpen] = useState(false);
  const [saved, setSaved] = useState<SaveResult | null>(null);
  const insight = useQuery({
    queryKey: ['insight', project.id, insightId],
    queryFn: () => getInsight(project.id, insightId!),
    enabled: insightId !== null,
  });
  return (
    <>
      <PageHeader
        title={
          <>
            {title}
            {insight.data ? <span className="page-subtitle"> · {insight.data.name}</span> : null}
          </>
        }
      >
        {insightId !== null ? (
          <>
            <ExportButtons label="Export the saved insight's result" path={`/api/v1/projects/${project.id}/insights/${insightId}/export`} />
            <button type="button" className="btn" onClick={() => setInsightId(null)}>
              Detach from saved insight
            </button>
          </>
        ) : null}
        <button type="button" className="btn btn-primary" onClick={() => setOpen(true)}>
          Save…
        </button>
      </PageHeader>
      {invalidUrl ? (
        <div className="notice notice-warning" role="status">
          The link's query could not be read; showing the default query instead.
        </div>
      ) : null}
      {insight.error ? (
        <div className="notice notice-warning" role="status">
          The saved insight #{insightId} could not be loaded; the query from the link is shown.
        </div>
      ) : null}
      {saved ? (
        <div className="notice notice-success" role="status">
          Saved “{saved.insight.name}”.
          {saved.dashboard ? (
            <>
              {' '}
              <Link to={`/project/${project.id}/dashboards/${saved.dashboard.id}`}>Open dashboard “{saved.dashboard.name}”</Link>
            </>
          ) : null}
          <button type="button" className="btn-icon" aria-label="Dismiss" onClick={() => setSaved(null)}>
            ×
          </button>
        </div>
      ) : null}
      {open ? (
        <SaveInsightDialog
          projectId={project.id}
          query={query}
          insight={insight.data ? { id: insight.data.id, name: insight.data.name } : null}
          defaultName={defaultName}
          onClose={() => setOpen(false)}
          onSaved={(r) => {
            setOpen(false);
            setSaved(r);
            setInsightId(r.insight.id);
          }}
        />
      ) : null}
    </>
  );
}
