import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, resetRefreshStateForTests } from '../src/api/client';
import { getTokens, setTokens, STORAGE_KEY } from '../src/auth/tokens';
import { json, stubFetch, type Call } from './helpers';

const pair = (n: number) => ({ access_token: `access-${n}`, refresh_token: `refresh-${n}`, token_type: 'Bearer' as const, expires_in: 900 });

/** A fake auth: access-N works while N is current; refresh-N rotates to N+1 once, and presenting a rotated one ends the session. */
function fakeAuth() {
  let current = 1;
  let ended = false;
  const refreshes: string[] = [];
  const handler = async (c: Call) => {
    if (c.path === '/api/v1/token/refresh') {
      const presented = (c.body as { refresh_token: string }).refresh_token;
      refreshes.push(presented);
      await new Promise((r) => setTimeout(r, 5));
      if (ended || presented !== `refresh-${current}`) {
        ended = true;
        return json(401, { error: 'unauthorized', message: 'refresh token already used: session revoked' });
      }
      current += 1;
      return json(200, pair(current));
    }
    if (ended || c.auth !== `Bearer access-${current}`) return json(401, { error: 'unauthorized', message: 'expired' });
    return json(200, { ok: true, path: c.path });
  };
  return { handler, refreshes, rotate: () => (current += 1), isEnded: () => ended };
}

beforeEach(() => {
  resetRefreshStateForTests();
  setTokens(pair(1));
});
afterEach(() => {
  vi.unstubAllGlobals();
});

describe('api client', () => {
  it('sends the bearer token and parses JSON', async () => {
    const auth = fakeAuth();
    const { calls } = stubFetch(auth.handler);
    await expect(api('/api/v1/me')).resolves.toEqual({ ok: true, path: '/api/v1/me' });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.auth).toBe('Bearer access-1');
  });

  it('on a 401 refreshes once, stores the rotated pair, and retries once', async () => {
    const auth = fakeAuth();
    auth.rotate(); // the live pair is now number 2
    const { calls } = stubFetch(auth.handler);
    // A session whose access token expired but whose refresh token is live.
    setTokens({ access_token: 'access-0', refresh_token: 'refresh-2', expires_at: 0 });
    const res = await api('/api/v1/projects/3/insights');
    expect(res).toEqual({ ok: true, path: '/api/v1/projects/3/insights' });
    expect(calls.map((c) => `${c.method} ${c.path} ${c.auth ?? ''}`.trim())).toEqual([
      'GET /api/v1/projects/3/insights Bearer access-0',
      'POST /api/v1/token/refresh',
      'GET /api/v1/projects/3/insights Bearer access-3',
    ]);
    expect(calls[1]!.body).toEqual({ refresh_token: 'refresh-2' });
    expect(getTokens()).toMatchObject({ access_token: 'access-3', refresh_token: 'refresh-3' });
  });

  it('serialises concurrent refreshes: one refresh for many 401s', async () => {
    const auth = fakeAuth();
    const { calls } = stubFetch(auth.handler);
    auth.rotate(); // every request with access-1 now gets a 401
    setTokens({ access_token: 'access-1', refresh_token: 'refresh-2', expires_at: 0 });
    const results = await Promise.all([api('/a'), api('/b'), api('/c'), api('/d')]);
    expect(results.map((r) => (r as { path: string }).path)).toEqual(['/a', '/b', '/c', '/d']);
    expect(auth.refreshes).toEqual(['refresh-2']);
    expect(auth.isEnded()).toBe(false);
    expect(calls.filter((c) => c.path === '/api/v1/token/refresh')).toHaveLength(1);
  });

  it('does not refresh when another tab already did (the stored token changed)', async () => {
    const auth = fakeAuth();
    stubFetch(async (c) => {
      if (c.auth === 'Bearer access-1') {
        // Meanwhile another tab refreshed and stored its new pair.
        localStorage.setItem(STORAGE_KEY, JSON.stringify({ access_token: 'access-2', refresh_token: 'refresh-2', expires_at: 1 }));
        auth.rotate();
        return json(401, { error: 'unauthorized', message: 'expired' });
      }
      return auth.handler(c);
    });
    await expect(api('/x')).resolves.toEqual({ ok: true, path: '/x' });
    expect(auth.refreshes).toEqual([]);
  });

  it('takes the cross-tab Web Lock around a refresh when the browser has one', async () => {
    const auth = fakeAuth();
    stubFetch(auth.handler);
    auth.rotate();
    setTokens({ access_token: 'access-1', refresh_token: 'refresh-2', expires_at: 0 });
    const request = vi.fn((_name: string, _opts: unknown, cb: () => Promise<unknown>) => cb());
    vi.stubGlobal('navigator', { ...navigator, locks: { request } });
    await api('/x');
    expect(request).toHaveBeenCalledTimes(1);
    expect(request.mock.calls[0]![0]).toBe('cairn-auth-refresh');
  });

  it('signs out when the refresh is refused, without retrying the call', async () => {
    const { calls } = stubFetch(async (c) =>
      c.path === '/api/v1/token/refresh' ? json(401, { error: 'unauthorized', message: 'session revoked' }) : json(401, { error: 'unauthorized', message: 'expired token' }),
    );
    const err = await api('/x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(401);
    expect(calls.map((c) => c.path)).toEqual(['/x', '/api/v1/token/refresh']);
    expect(getTokens()).toBeNull();
  });

  it('refreshes only once: a second 401 after the retry fails and signs out', async () => {
    let refreshCount = 0;
    const { calls } = stubFetch(async (c) => {
      if (c.path === '/api/v1/token/refresh') {
        refreshCount += 1;
        return json(200, pair(10 + refreshCount));
      }
      return json(401, { error: 'unauthorized', message: 'nope' });
    });
    await expect(api('/x')).rejects.toMatchObject({ status: 401 });
    expect(refreshCount).toBe(1);
    expect(calls.map((c) => c.path)).toEqual(['/x', '/api/v1/token/refresh', '/x']);
    expect(getTokens()).toBeNull();
  });

  it('does not refresh for unauthenticated calls (login)', async () => {
    const { calls } = stubFetch(async () => json(401, { error: 'unauthorized', message: 'invalid email or password' }));
    await expect(api('/api/v1/login', { method: 'POST', body: {}, auth: false })).rejects.toMatchObject({ status: 401, message: 'invalid email or password' });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.auth).toBeNull();
  });

  it('turns error bodies into ApiError with message and field', async () => {
    stubFetch(async () => json(400, { error: 'invalid_request', message: 'math_property is required for sum', field: 'series[0].math_property' }));
    const err = (await api('/q', { method: 'POST', body: {} }).catch((e: unknown) => e)) as ApiError;
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 400, code: 'invalid_request', field: 'series[0].math_property', message: 'math_property is required for sum' });
  });

  it('copes with a non-JSON error and a network failure', async () => {
    stubFetch(async () => new Response('<html>Bad gateway</html>', { status: 502 }));
    await expect(api('/q')).rejects.toMatchObject({ status: 502, message: 'Request failed (HTTP 502)' });
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    await expect(api('/q')).rejects.toMatchObject({ status: 0, code: 'network' });
  });

  it('answers undefined for 204 and encodes query parameters', async () => {
    const { calls } = stubFetch(async (c) => (c.method === 'DELETE' ? json(204) : json(200, [])));
    await expect(api('/api/v1/personal-keys/4', { method: 'DELETE' })).resolves.toBeUndefined();
    await api('/e', { query: { event: '$pageview', properties: '[{"key":"a b"}]', cursor: undefined, limit: 50 } });
    expect(calls[1]!.search.get('properties')).toBe('[{"key":"a b"}]');
    expect(calls[1]!.search.get('limit')).toBe('50');
    expect(calls[1]!.search.has('cursor')).toBe(false);
  });
});
