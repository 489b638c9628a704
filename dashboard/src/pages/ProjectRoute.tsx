import { Suspense, useEffect } from 'react';
import { Link, Outlet, useParams } from 'react-router';
import { useQuery } from '@tanstack/react-query';
import { getProject } from '../api/auth';
import { ApiError } from '../api/client';
import { useAuth } from '../auth/AuthContext';
import { Layout } from '../components/Layout';
import { ErrorState, Loading } from '../components/States';
import { ProjectContext, rememberProject } from '../project';

function NoAccess({ id }: { id: string | undefined }) {
  return (
    <div className="auth-page">
      <div className="auth-card" role="alert">
        <h1>No access to project {id}</h1>
        <p>This project does not exist, or you are not a member of its organisation.</p>
        <Link to="/?choose=1">Choose another project</Link>
      </div>
    </div>
  );
}

/** /project/:projectId/…: the project (from /me, else GET /projects/{id}) for the pages inside. */
export function ProjectRoute() {
  const { projectId } = useParams();
  const id = Number(projectId);
  const valid = Number.isInteger(id) && id > 0;
  const { me, meError, meLoading } = useAuth();
  const fromMe = me?.projects.find((p) => p.id === id);
  // A project made after /me was read is fetched on its own; a 404 there means no access.
  const single = useQuery({
    queryKey: ['project', id],
    queryFn: () => getProject(id),
    enabled: valid && !!me && !fromMe,
    retry: false,
  });
  const project = fromMe ?? single.data;
  useEffect(() => {
    if (project) rememberProject(project.id);
  }, [project]);

  if (!valid) return <NoAccess id={projectId} />;
  if (meError) return <ErrorState error={meError} />;
  if (meLoading || (!fromMe && single.isPending)) return <Loading />;
  if (!project) {
    if (single.error instanceof ApiError && single.error.status !== 404) return <ErrorState error={single.error} onRetry={() => void single.refetch()} />;
    return <NoAccess id={projectId} />;
  }
  return (
    <ProjectContext.Provider value={project}>
      <Layout>
        <Suspense fallback={<Loading />}>
          <Outlet />
        </Suspense>
      </Layout>
    </ProjectContext.Provider>
  );
}
