import { Link, Navigate, useNavigate, useSearchParams } from 'react-router';
import { useAuth } from '../auth/AuthContext';
import { Empty, ErrorState, Loading } from '../components/States';
import { lastProject } from '../project';

/** Choose a project (the last one used is opened directly, unless ?choose=1). */
export function ProjectsPage() {
  const { me, meError, meLoading, logout } = useAuth();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  if (meError) return <div className="auth-page"><ErrorState error={meError} /></div>;
  if (meLoading || !me) return <div className="auth-page"><Loading /></div>;
  const last = lastProject();
  if (!params.get('choose') && last && me.projects.some((p) => p.id === last)) return <Navigate to={`/project/${last}/trends`} replace />;
  const orgName = new Map(me.organizations.map((o) => [o.id, o.name]));
  return (
    <div className="auth-page">
      <div className="auth-card">
        <h1>Choose a project</h1>
        <p className="muted">Signed in as {me.user.email}.</p>
        {me.projects.length === 0 ? (
          <Empty title="You have no projects yet">Ask an admin of an organisation to add you to it.</Empty>
        ) : (
          <ul className="project-list" aria-label="Projects">
            {me.projects.map((p) => (
              <li key={p.id}>
                <Link to={`/project/${p.id}/trends`} data-project-id={p.id}>
                  <span className="project-name">{p.name}</span>
                  <span className="muted small">
                    {orgName.get(p.organization_id) ?? 'Organisation'} · #{p.id}
                  </span>
                </Link>
              </li>
            ))}
          </ul>
        )}
        <button
          type="button"
          className="btn btn-small"
          onClick={async () => {
            await logout();
            navigate('/login');
          }}
        >
          Log out
        </button>
      </div>
    </div>
  );
}
