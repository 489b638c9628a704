import type { ReactNode } from 'react';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WriteKey } from '../src/api/types';
import { AuthProvider } from '../src/auth/AuthContext';
import { setTokens } from '../src/auth/tokens';
import { SettingsPage } from '../src/pages/SettingsPage';
import { json, renderAt, stubFetch } from './helpers';

afterEach(() => vi.unstubAllGlobals());

const me = { user: { id: 1, email: 'dana@example.com', name: 'Dana', created_at: 't' }, organizations: [{ id: 1, name: 'Acme', created_at: 't', role: 'owner' }], projects: [] };

function backend() {
  const keys: WriteKey[] = [{ id: 1, project_id: 3, name: 'Default', display_prefix: 'phc_Abcd', created_at: '2026-11-01T00:00:00Z', last_used_at: null, revoked_at: null }];
  const members = [
    { user_id: 1, email: 'dana@example.com', name: 'Dana', role: 'owner', joined_at: '2026-11-01T00:00:00Z' },
    { user_id: 2, email: 'sam@example.com', name: 'Sam', role: 'viewer', joined_at: '2026-11-02T00:00:00Z' },
  ];
  return stubFetch(async (c) => {
    if (c.path === '/api/v1/me') return json(200, me);
    if (c.path === '/api/v1/projects/3/write-keys' && c.method === 'GET') return json(200, keys);
    if (c.path === '/api/v1/projects/3/write-keys' && c.method === 'POST') {
      const k = { id: 2, project_id: 3, name: (c.body as { name?: string }).name ?? '', display_prefix: 'phc_Zyxw', created_at: '2026-11-26T00:00:00Z', last_used_at: null, revoked_at: null };
      keys.push(k);
      return json(201, { ...k, key: 'phc_ZyxwVUTSRQPONMLKJIHGFEDCBA0123456' });
    }
    if (c.path === '/api/v1/projects/3/write-keys/2' && c.method === 'DELETE') {
      keys[1] = { ...keys[1]!, revoked_at: '2026-11-26T01:00:00Z' };
      return json(204);
    }
    if (c.path === '/api/v1/personal-keys') return json(200, []);
    if (c.path === '/api/v1/organizations/1/members' && c.method === 'POST') {
      const b = c.body as { email: string; role: string };
      return json(202, {
        invitation: { id: 7, organization_id: 1, email: b.email, role: b.role, invited_by: 1, created_at: 't', expires_at: 't' },
        token: 'cinv_secret-once',
      });
    }
    if (c.path === '/api/v1/invitations/accept' && c.method === 'POST') {
      return json(200, { user_id: 1, email: 'dana@example.com', name: 'Dana', role: 'member', joined_at: 't' });
    }
    if (c.path === '/api/v1/organizations/1/members') return json(200, members);
    if (c.path === '/api/v1/organizations/1/members/2' && c.method === 'PATCH') {
      members[1] = { ...members[1]!, role: (c.body as { role: string }).role };
      return json(200, members[1]);
    }
    return undefined;
  });
}

const withAuth = (node: ReactNode) => <AuthProvider>{node}</AuthProvider>;

describe('SettingsPage', () => {
  it('creates a write key, shows it once with a copy button, and revokes one after confirming', async () => {
    setTokens({ access_token: 'a', refresh_token: 'r', token_type: 'Bearer', expires_in: 900 });
    const { calls } = backend();
    const user = userEvent.setup();
    // After setup, which installs a clipboard of its own.
    const writeText = vi.fn(async () => {});
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    renderAt(withAuth(<SettingsPage />));

    await screen.findByRole('table', { name: 'Write keys' });
    await user.type(screen.getByLabelText("New write key's name"), 'website');
    await user.click(screen.getByRole('button', { name: 'Create write key' }));
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({ name: 'website' });
    const revealed = await screen.findByTestId('revealed-key');
    expect(revealed).toHaveTextContent('phc_ZyxwVUTSRQPONMLKJIHGFEDCBA0123456');
    await user.click(screen.getByRole('button', { name: 'Copy' }));
    expect(writeText).toHaveBeenCalledWith('phc_ZyxwVUTSRQPONMLKJIHGFEDCBA0123456');
    expect(await screen.findByRole('button', { name: 'Copied' })).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Done' }));
    expect(screen.queryByText(/phc_ZyxwVUTSRQPONMLKJIHGFEDCBA0123456/)).toBeNull();

    const row = await screen.findByRole('row', { name: /website/ });
    expect(row).toHaveTextContent('phc_Zyxw…');
    await user.click(within(row).getByRole('button', { name: 'Revoke' }));
    const dialog = screen.getByRole('alertdialog', { name: 'Revoke write key' });
    expect(calls.some((c) => c.method === 'DELETE')).toBe(false); // not before confirming
    await user.click(within(dialog).getByRole('button', { name: 'Revoke' }));
    await waitFor(() => expect(screen.getByRole('row', { name: /website/ })).toHaveTextContent('Revoked'));
    expect(calls.find((c) => c.method === 'DELETE')!.path).toBe('/api/v1/projects/3/write-keys/2');
  });

  it('changes a member’s role', async () => {
    setTokens({ access_token: 'a', refresh_token: 'r', token_type: 'Bearer', expires_in: 900 });
    const { calls } = backend();
    const user = userEvent.setup();
    renderAt(withAuth(<SettingsPage />));
    await screen.findByRole('table', { name: 'Members' });
    expect(await screen.findByRole('heading', { name: 'Members of Acme' })).toBeInTheDocument();
    await user.selectOptions(screen.getByLabelText('Role of sam@example.com'), 'member');
    await waitFor(() => expect(calls.some((c) => c.method === 'PATCH')).toBe(true));
    expect(calls.find((c) => c.method === 'PATCH')).toMatchObject({ path: '/api/v1/organizations/1/members/2', body: { role: 'member' } });
  });

  it('invites by email, shows the code once, and joins with a code', async () => {
    setTokens({ access_token: 'a', refresh_token: 'r', token_type: 'Bearer', expires_in: 900 });
    const { calls } = backend();
    const user = userEvent.setup();
    renderAt(withAuth(<SettingsPage />));
    await screen.findByRole('table', { name: 'Members' });
    await user.type(screen.getByLabelText('Email to invite'), 'lee@example.com');
    await user.click(screen.getByRole('button', { name: 'Invite' }));
    expect(await screen.findByTestId('invitation-token')).toHaveTextContent('cinv_secret-once');
    expect(calls.find((c) => c.method === 'POST' && c.path.endsWith('/members'))!.body).toEqual({ email: 'lee@example.com', role: 'member' });
    await user.type(screen.getByLabelText('Invitation code'), 'cinv_from-someone');
    await user.click(screen.getByRole('button', { name: 'Join' }));
    expect(await screen.findByText('You joined as member.')).toBeInTheDocument();
    expect(calls.find((c) => c.path === '/api/v1/invitations/accept')!.body).toEqual({ token: 'cinv_from-someone' });
  });
});
