import { render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { resetRefreshStateForTests } from '../src/api/client';
import { App } from '../src/App';
import { getTokens, setTokens } from '../src/auth/tokens';
import { json, PROJECT, stubFetch, testQueryClient } from './helpers';

beforeAll(() => {
  vi.stubGlobal(
    'ResizeObserver',
    class {
      observe() {}
      unobserve() {}
      disconnect() {}
    },
  );
});
afterEach(() => {
  resetRefreshStateForTests();
  window.history.replaceState(null, '', '/');
});

const me = { user: { id: 1, email: 'dana@example.com', name: 'Dana', created_at: 't' }, organizations: [{ id: 1, name: 'Org', created_at: 't', role: 'owner' }], projects: [PROJECT] };
const tokens = { access_token: 'acc', refresh_token: 'ref', token_type: 'Bearer' as const, expires_in: 900 };

function backend() {
  return stubFetch(async (c) => {
    if (c.path === '/api/v1/login') {
      const b = c.body as { email: string; password: string };
      return b.password === 'right password 1' ? json(200, { ...tokens, user: me.user }) : json(401, { error: 'unauthorized', message: 'invalid email or password' });
    }
    if (c.path === '/api/v1/logout') return json(204);
    if (c.auth !== 'Bearer acc') return json(401, { error: 'unauthorized', message: 'no' });
    if (c.path === '/api/v1/me') return json(200, me);
    if (c.path === '/api/v1/projects/99') return json(404, { error: 'not_found', message: 'not found' });
    if (c.path === '/api/v1/projects/3/dashboards') return json(200, { results: [], total: 0 });
    return undefined;
  });
}

const renderApp = (path: string) => {
  window.history.replaceState(null, '', path);
  return render(<App queryClient={testQueryClient()} />);
};

describe('signing in and out', () => {
  it('sends a signed-out visitor to log in, then back where they were', async () => {
    const { calls } = backend();
    const user = userEvent.setup();
    renderApp('/project/3/dashboards');
    await screen.findByRole('heading', { name: 'Log in' });
    expect(window.location.search).toBe(`?next=${encodeURIComponent('/project/3/dashboards')}`);

    await user.type(screen.getByLabelText('Email'), 'dana@example.com');
    await user.type(screen.getByLabelText('Password'), 'wrong password 1');
    await user.click(screen.getByRole('button', { name: 'Log in' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('invalid email or password');
    expect(getTokens()).toBeNull();

    await user.clear(screen.getByLabelText('Password'));
    await user.type(screen.getByLabelText('Password'), 'right password 1');
    await user.click(screen.getByRole('button', { name: 'Log in' }));
    await screen.findByRole('heading', { name: 'Dashboards' });
    expect(window.location.pathname).toBe('/project/3/dashboards');
    expect(getTokens()).toMatchObject({ access_token: 'acc', refresh_token: 'ref' });
    expect(calls.find((c) => c.path === '/api/v1/login')!.auth).toBeNull();
    expect(await screen.findByText('No dashboards yet')).toBeInTheDocument();
  });

  it('a project the user cannot see is “no access”', async () => {
    backend();
    setTokens(tokens);
    renderApp('/project/99/trends');
    expect(await screen.findByRole('heading', { name: 'No access to project 99' })).toBeInTheDocument();
  });

  it('logging out calls the API, forgets the tokens and shows the login page', async () => {
    const { calls } = backend();
    setTokens(tokens);
    const user = userEvent.setup();
    renderApp('/project/3/dashboards');
    await screen.findByRole('heading', { name: 'Dashboards' });
    await user.click(screen.getByRole('button', { name: 'Log out' }));
    await screen.findByRole('heading', { name: 'Log in' });
    expect(calls.some((c) => c.path === '/api/v1/logout' && c.method === 'POST' && c.auth === 'Bearer acc')).toBe(true);
    expect(getTokens()).toBeNull();
  });

  it('an ended session (refresh refused) signs the dashboard out', async () => {
    stubFetch(async (c) => (c.path === '/api/v1/token/refresh' ? json(401, { error: 'unauthorized', message: 'revoked' }) : json(401, { error: 'unauthorized', message: 'expired' })));
    setTokens({ ...tokens, access_token: 'stale' });
    renderApp('/project/3/trends');
    await screen.findByRole('heading', { name: 'Log in' });
    await waitFor(() => expect(getTokens()).toBeNull());
  });
});
