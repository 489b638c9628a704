import { useEffect, useState, type FormEvent, type ReactNode } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import * as authApi from '../api/auth';
import { ROLES, type Member, type Permission, type PersonalKey, type Role, type WriteKey } from '../api/types';
import { useAuth } from '../auth/AuthContext';
import { CopyButton } from '../components/CopyButton';
import { EventExportsSection } from '../components/EventExportsSection';
import { ConfirmDialog } from '../components/Modal';
import { PageHeader } from '../components/PageHeader';
import { Empty, FormError, ListView } from '../components/States';
import { formatTimestamp } from '../format';
import { useProject } from '../project';

/** A just-created key's plaintext: the only time it is shown. */
export function RevealedKey({ label, value, onDone }: { label: string; value: string; onDone: () => void }) {
  return (
    <div className="reveal" role="status">
      <p>
        <strong>{label}</strong> Copy it now: it is shown only this once.
      </p>
      <div className="reveal-row">
        <code className="reveal-key" data-testid="revealed-key">
          {value}
        </code>
        <CopyButton text={value} />
        <button type="button" className="btn" onClick={onDone}>
          Done
        </button>
      </div>
    </div>
  );
}

function Section({ title, children, id }: { title: string; children: ReactNode; id: string }) {
  return (
    <section className="settings-section" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

const when = (t: string | null) => (t ? formatTimestamp(t) : '—');

function ProjectSection() {
  const project = useProject();
  const queryClient = useQueryClient();
  const [name, setName] = useState(project.name);
  useEffect(() => setName(project.name), [project.name]);
  const save = useMutation({
    mutationFn: () => authApi.updateProject(project.id, { name: name.trim() }),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: ['me'] }),
  });
  return (
    <Section title="Project" id="settings-project">
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (name.trim()) save.mutate();
        }}
      >
        <div className="field">
          <label htmlFor="project-name">Project name</label>
          <input id="project-name" value={name} maxLength={200} onChange={(e) => setName(e.target.value)} />
        </div>
        <button type="submit" className="btn btn-primary" disabled={!name.trim() || name.trim() === project.name || save.isPending}>
          Rename
        </button>
        {save.isSuccess && name.trim() === project.name ? <span role="status">Saved.</span> : null}
        <FormError error={save.error} />
      </form>
      <p className="muted small">
        Project ID {project.id} · time zone {project.timezone} · created {formatTimestamp(project.created_at)}
      </p>
    </Section>
  );
}

function WriteKeysSection() {
  const project = useProject();
  const queryClient = useQueryClient();
  const key = ['write-keys', project.id];
  const keys = useQuery({ queryKey: key, queryFn: () => authApi.listWriteKeys(project.id) });
  const [name, setName] = useState('');
  const [created, setCreated] = useState<WriteKey | null>(null);
  const [revoking, setRevoking] = useState<WriteKey | null>(null);
  const create = useMutation({
    mutationFn: () => authApi.createWriteKey(project.id, name.trim()),
    onSuccess: (k) => {
      setCreated(k);
      setName('');
      void queryClient.invalidateQueries({ queryKey: key });
    },
  });
  const revoke = useMutation({
    mutationFn: (id: number) => authApi.revokeWriteKey(project.id, id),
    onSuccess: () => {
      setRevoking(null);
      void queryClient.invalidateQueries({ queryKey: key });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <Section title="Write keys" id="settings-write-keys">
      <p className="muted">SDKs send events to capture with a write key. Anyone with the key can send events to this project.</p>
      <form className="inline-form" onSubmit={submit} aria-label="New write key">
        <div className="field">
          <label htmlFor="write-key-name">New write key's name</label>
          <input id="write-key-name" value={name} maxLength={200} placeholder="e.g. website" onChange={(e) => setName(e.target.value)} />
        </div>
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>
          Create write key
        </button>
        <FormError error={create.error} />
      </form>
      {created?.key ? <RevealedKey label={`Write key “${created.name || created.display_prefix}” created.`} value={created.key} onDone={() => setCreated(null)} /> : null}
      <ListView query={keys} items={(data) => data} empty={<Empty title="No write keys" />}>
        {(data) => (
          <table className="data-table" aria-label="Write keys">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Status</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {data.map((k) => (
                <tr key={k.id} data-key-id={k.id} className={k.revoked_at ? 'revoked' : undefined}>
                  <th scope="row">{k.name || <span className="muted">(unnamed)</span>}</th>
                  <td className="mono">{k.display_prefix}…</td>
                  <td>{when(k.created_at)}</td>
                  <td>{when(k.last_used_at)}</td>
                  <td>{k.revoked_at ? `Revoked ${when(k.revoked_at)}` : 'Active'}</td>
                  <td className="actions">
                    {k.revoked_at ? null : (
                      <button type="button" className="btn btn-small btn-danger-outline" onClick={() => setRevoking(k)}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </ListView>
      {revoking ? (
        <ConfirmDialog
          title="Revoke write key"
          message={
            <p>
              Revoke <code>{revoking.display_prefix}…</code>
              {revoking.name ? ` (“${revoking.name}”)` : ''}? Capture refuses it at once; SDKs using it stop sending events.
            </p>
          }
          confirmLabel="Revoke"
          busy={revoke.isPending}
          error={<FormError error={revoke.error} />}
          onCancel={() => setRevoking(null)}
          onConfirm={() => revoke.mutate(revoking.id)}
        />
      ) : null}
    </Section>
  );
}

function PersonalKeysSection() {
  const project = useProject();
  const queryClient = useQueryClient();
  const key = ['personal-keys'];
  const keys = useQuery({ queryKey: key, queryFn: authApi.listPersonalKeys });
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<Permission[]>(['query:read']);
  const [thisProject, setThisProject] = useState(true);
  const [days, setDays] = useState('90');
  const [created, setCreated] = useState<PersonalKey | null>(null);
  const [revoking, setRevoking] = useState<PersonalKey | null>(null);
  const create = useMutation({
    mutationFn: () =>
      authApi.createPersonalKey({
        name: name.trim(),
        scopes,
        project_ids: thisProject ? [project.id] : null,
        ...(days ? { expires_in_days: Number(days) } : {}),
      }),
    onSuccess: (k) => {
      setCreated(k);
      setName('');
      void queryClient.invalidateQueries({ queryKey: key });
    },
  });
  const revoke = useMutation({
    mutationFn: (id: number) => authApi.revokePersonalKey(id),
    onSuccess: () => {
      setRevoking(null);
      void queryClient.invalidateQueries({ queryKey: key });
    },
  });
  const toggleScope = (s: Permission, on: boolean) => setScopes((prev) => (on ? [...new Set([...prev, s])] : prev.filter((x) => x !== s)));
  return (
    <Section title="Personal API keys" id="settings-personal-keys">
      <p className="muted">
        Personal keys call the query API as you (<code>Authorization: Bearer phx_…</code>), limited to their scopes and projects.
      </p>
      <form
        className="inline-form"
        aria-label="New personal key"
        onSubmit={(e) => {
          e.preventDefault();
          if (name.trim() && scopes.length) create.mutate();
        }}
      >
        <div className="field">
          <label htmlFor="pk-name">New personal key's name</label>
          <input id="pk-name" value={name} maxLength={200} onChange={(e) => setName(e.target.value)} />
        </div>
        <fieldset className="fieldset-inline">
          <legend>Scopes</legend>
          {(['query:read', 'insights:write', 'persons:delete', 'events:write'] as Permission[]).map((s) => (
            <span className="field-check" key={s}>
              <input id={`pk-scope-${s}`} type="checkbox" checked={scopes.includes(s)} onChange={(e) => toggleScope(s, e.target.checked)} />
              <label htmlFor={`pk-scope-${s}`}>{s}</label>
            </span>
          ))}
        </fieldset>
        <div className="field">
          <label htmlFor="pk-projects">Projects</label>
          <select id="pk-projects" value={thisProject ? 'this' : 'all'} onChange={(e) => setThisProject(e.target.value === 'this')}>
            <option value="this">This project only</option>
            <option value="all">Every project I can read</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="pk-days">Expires after</label>
          <select id="pk-days" value={days} onChange={(e) => setDays(e.target.value)}>
            <option value="30">30 days</option>
            <option value="90">90 days</option>
            <option value="365">1 year</option>
            <option value="">Never</option>
          </select>
        </div>
        <button type="submit" className="btn btn-primary" disabled={!name.trim() || scopes.length === 0 || create.isPending}>
          Create personal key
        </button>
        <FormError error={create.error} />
      </form>
      {created?.key ? <RevealedKey label={`Personal key “${created.name}” created.`} value={created.key} onDone={() => setCreated(null)} /> : null}
      <ListView query={keys} items={(data) => data} empty={<Empty title="No personal keys" />}>
        {(data) => (
          <table className="data-table" aria-label="Personal keys">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key</th>
                <th scope="col">Scopes</th>
                <th scope="col">Projects</th>
                <th scope="col">Expires</th>
                <th scope="col">Status</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {data.map((k) => (
                <tr key={k.id} className={k.revoked_at ? 'revoked' : undefined}>
                  <th scope="row">{k.name}</th>
                  <td className="mono">{k.display_prefix}…</td>
                  <td>{k.scopes.join(', ')}</td>
                  <td>{k.project_ids ? k.project_ids.join(', ') : 'all'}</td>
                  <td>{when(k.expires_at)}</td>
                  <td>{k.revoked_at ? `Revoked ${when(k.revoked_at)}` : 'Active'}</td>
                  <td className="actions">
                    {k.revoked_at ? null : (
                      <button type="button" className="btn btn-small btn-danger-outline" onClick={() => setRevoking(k)}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </ListView>
      {revoking ? (
        <ConfirmDialog
          title="Revoke personal key"
          message={<p>Revoke “{revoking.name}” ({revoking.display_prefix}…)? Anything using it stops working at once.</p>}
          confirmLabel="Revoke"
          busy={revoke.isPending}
          error={<FormError error={revoke.error} />}
          onCancel={() => setRevoking(null)}
          onConfirm={() => revoke.mutate(revoking.id)}
        />
      ) : null}
    </Section>
  );
}

function JoinSection() {
  const queryClient = useQueryClient();
  const [token, setToken] = useState('');
  const join = useMutation({
    mutationFn: () => authApi.acceptInvitation(token.trim()),
    onSuccess: () => {
      setToken('');
      void queryClient.invalidateQueries();
    },
  });
  return (
    <Section title="Join an organisation" id="settings-join">
      <form
        className="inline-form"
        aria-label="Join an organisation"
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) join.mutate();
        }}
      >
        <div className="field">
          <label htmlFor="invitation-token">Invitation code</label>
          <input id="invitation-token" value={token} onChange={(e) => setToken(e.target.value)} />
        </div>
        <button type="submit" className="btn" disabled={!token.trim() || join.isPending}>
          Join
        </button>
        <FormError error={join.error} />
      </form>
      {join.data ? <p role="status">You joined as {join.data.role}.</p> : null}
    </Section>
  );
}

function MembersSection() {
  const project = useProject();
  const { me } = useAuth();
  const queryClient = useQueryClient();
  const orgId = project.organization_id;
  const org = me?.organizations.find((o) => o.id === orgId);
  const key = ['members', orgId];
  const members = useQuery({ queryKey: key, queryFn: () => authApi.listMembers(orgId) });
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<Role>('member');
  const [removing, setRemoving] = useState<Member | null>(null);
  const refresh = () => void queryClient.invalidateQueries({ queryKey: key });
  const [invited, setInvited] = useState<{ email: string; token: string } | null>(null);
  const add = useMutation({
    mutationFn: () => authApi.inviteMember(orgId, email.trim(), role),
    onSuccess: (r) => {
      setInvited({ email: r.invitation.email, token: r.token });
      setEmail('');
      refresh();
    },
  });
  const change = useMutation({ mutationFn: (v: { userId: number; role: Role }) => authApi.updateMember(orgId, v.userId, v.role), onSettled: refresh });
  const remove = useMutation({
    mutationFn: (userId: number) => authApi.removeMember(orgId, userId),
    onSuccess: () => {
      setRemoving(null);
      refresh();
    },
  });
  return (
    <Section title={`Members of ${org?.name ?? 'the organisation'}`} id="settings-members">
      {org ? <p className="muted">Your role: {org.role}. Admins and owners manage members; only owners grant or take away the owner role.</p> : null}
      <form
        className="inline-form"
        aria-label="Invite a member"
        onSubmit={(e) => {
          e.preventDefault();
          if (email.trim()) add.mutate();
        }}
      >
        <div className="field">
          <label htmlFor="member-email">Email to invite</label>
          <input id="member-email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="member-role">Role</label>
          <select id="member-role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </div>
        <button type="submit" className="btn btn-primary" disabled={!email.trim() || add.isPending}>
          Invite
        </button>
        <FormError error={add.error} />
      </form>
      {invited ? (
        <p role="status" className="muted">
          Invitation for {invited.email} created. Give them this code, shown only once; they join with it under
          “Join an organisation” once signed in with that email: <code data-testid="invitation-token">{invited.token}</code>
        </p>
      ) : null}
      <FormError error={change.error} />
      <ListView query={members} items={(data) => data} empty={<Empty title="No members" />}>
        {(data) => (
          <table className="data-table" aria-label="Members">
            <thead>
              <tr>
                <th scope="col">Email</th>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">Joined</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {data.map((m) => (
                <tr key={m.user_id}>
                  <th scope="row">
                    {m.email}
                    {m.user_id === me?.user.id ? <span className="muted"> (you)</span> : null}
                  </th>
                  <td>{m.name}</td>
                  <td>
                    <label className="visually-hidden" htmlFor={`role-${m.user_id}`}>
                      Role of {m.email}
                    </label>
                    <select
                      id={`role-${m.user_id}`}
                      value={m.role}
                      disabled={change.isPending}
                      onChange={(e) => change.mutate({ userId: m.user_id, role: e.target.value as Role })}
                    >
                      {ROLES.map((r) => (
                        <option key={r} value={r}>
                          {r}
                        </option>
                      ))}
                    </select>
                  </td>
                  <td>{formatTimestamp(m.joined_at)}</td>
                  <td className="actions">
                    <button type="button" className="btn btn-small btn-danger-outline" onClick={() => setRemoving(m)}>
                      {m.user_id === me?.user.id ? 'Leave' : 'Remove'}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </ListView>
      {removing ? (
        <ConfirmDialog
          title="Remove member"
          message={<p>Remove {removing.email} from {org?.name ?? 'the organisation'}? They lose access to its projects.</p>}
          confirmLabel="Remove"
          busy={remove.isPending}
          error={<FormError error={remove.error} />}
          onCancel={() => setRemoving(null)}
          onConfirm={() => remove.mutate(removing.user_id)}
        />
      ) : null}
    </Section>
  );
}

export function SettingsPage() {
  return (
    <div className="page page-settings">
      <PageHeader title="Settings" />
      <ProjectSection />
      <WriteKeysSection />
      <PersonalKeysSection />
      <EventExportsSection />
      <MembersSection />
      <JoinSection />
    </div>
  );
}
