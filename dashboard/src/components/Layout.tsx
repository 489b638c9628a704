import type { ReactNode } from 'react';
import { NavLink, useNavigate } from 'react-router';
import { useAuth } from '../auth/AuthContext';
import { useProject } from '../project';

const NAV: { to: string; label: string }[] = [
  { to: 'trends', label: 'Trends' },
  { to: 'funnels', label: 'Funnels' },
  { to: 'retention', label: 'Retention' },
  { to: 'stickiness', label: 'Stickiness' },
  { to: 'lifecycle', label: 'Lifecycle' },
  { to: 'paths', label: 'Paths' },
  { to: 'sessions', label: 'Sessions' },
  { to: 'sql', label: 'SQL' },
  { to: 'events', label: 'Events' },
  { to: 'persons', label: 'Persons' },
  { to: 'cohorts', label: 'Cohorts' },
  { to: 'dashboards', label: 'Dashboards' },
  { to: 'insights', label: 'Saved insights' },
  { to: 'settings', label: 'Settings' },
];

/** The sidebar (project switcher, navigation, account) and the page. */
export function Layout({ children }: { children: ReactNode }) {
  const project = useProject();
  const { me, logout } = useAuth();
  const navigate = useNavigate();
  const projects = me?.projects ?? [project];
  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <aside className="sidebar">
        <div className="brand">
          <img src="/favicon.svg" alt="" width={24} height={24} /> Cairn
        </div>
        <div className="field sidebar-project">
          <label htmlFor="project-switcher">Project</label>
          <select
            id="project-switcher"
            value={project.id}
            onChange={(e) => {
              if (e.target.value === 'all') navigate('/?choose=1');
              else navigate(`/project/${e.target.value}/trends`);
            }}
          >
            {projects.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
            <option value="all">All projects…</option>
          </select>
        </div>
        <nav aria-label="Main">
          <ul>
            {NAV.map((n) => (
              <li key={n.to}>
                <NavLink to={`/project/${project.id}/${n.to}`} className={({ isActive }) => (isActive ? 'active' : undefined)}>
                  {n.label}
                </NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <div className="sidebar-account">
          <span className="muted" title={me?.user.email}>
            {me?.user.email}
          </span>
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
      </aside>
      <main id="main" className="main" tabIndex={-1}>
        {children}
      </main>
    </div>
  );
}
