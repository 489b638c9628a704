// The one way the dashboard talks to Cairn: relative URLs (/api/v1/…) on the origin that serves
// it, `Authorization: Bearer <access token>`, and errors as ApiError with the body's message and
// field.
//
// Token refresh: a 401 on an authenticated call refreshes the access token ONCE and retries the
// call once. Refreshes are serialised, because auth rotates the refresh token on every use and
// revokes the whole session when an already rotated one is presented again: within this tab by a
// single in-flight promise, and across tabs by a Web Lock (navigator.locks) when the browser has
// them. Inside the lock the tokens are read again: if another tab (or an earlier refresh here)
// already replaced the access token that failed, the new one is used without refreshing.

import { getTokens, setTokens } from '../auth/tokens';
import type { ErrorBody, TokenPair } from './types';

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field?: string;

  constructor(status: number, body: Partial<ErrorBody>) {
    super(body.message || `Request failed (HTTP ${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.code = body.error || (status === 0 ? 'network' : 'http_error');
    if (body.field) this.field = body.field;
  }
}

export type QueryValue = string | number | boolean | null | undefined;

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  body?: unknown;
  query?: Record<string, QueryValue>;
  /** Send the access token (default true). */
  auth?: boolean;
  signal?: AbortSignal;
}

const REFRESH_LOCK = 'cairn-auth-refresh';
let inflight: Promise<string | null> | null = null;

export function buildUrl(path: string, query?: Record<string, QueryValue>): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue;
    params.set(k, String(v));
  }
  const s = params.toString();
  return s ? `${path}?${s}` : path;
}

async function send(path: string, opts: RequestOptions, token: string | null): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    return await fetch(buildUrl(path, opts.query), {
      method: opts.method ?? 'GET',
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
      credentials: 'same-origin',
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, { error: 'network', message: 'Could not reach the Cairn server. Check your connection and retry.' });
  }
}

async function errorFrom(res: Response): Promise<ApiError> {
  let body: Partial<ErrorBody> = {};
  try {
    const text = await res.text();
    if (text) body = JSON.parse(text) as Partial<ErrorBody>;
  } catch {
    // Not JSON (a proxy's error page): keep the status alone.
  }
  if (typeof body !== 'object' || body === null) body = {};
  return new ApiError(res.status, body);
}

async function withRefreshLock<T>(fn: () => Promise<T>): Promise<T> {
  const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
  if (locks && typeof locks.request === 'function') {
    return locks.request(REFRESH_LOCK, { mode: 'exclusive' }, fn) as Promise<T>;
  }
  return fn();
}

/**
 * A working access token in place of `failed` (the one that was just refused): the one another
 * refresh already got, or a new one from POST /api/v1/token/refresh. `null` when the session is
 * over (the tokens are then cleared, which signs the dashboard out).
 */
export function refreshAccessToken(failed: string | null): Promise<string | null> {
  if (!inflight) {
    inflight = withRefreshLock(async () => {
      const current = getTokens();
      if (!current) return null;
      if (failed !== null && current.access_token !== failed) return current.access_token;
      const res = await send('/api/v1/token/refresh', { method: 'POST', body: { refresh_token: current.refresh_token } }, null);
      if (res.ok) {
        const pair = (await res.json()) as TokenPair;
        setTokens(pair);
        return pair.access_token;
      }
      if (res.status === 400 || res.status === 401) {
        // The refresh token is spent or the session was revoked: sign out.
        setTokens(null);
        return null;
      }
      throw await errorFrom(res);
    }).finally(() => {
      inflight = null;
    });
  }
  return inflight;
}

/** Calls the API and answers the parsed JSON body (undefined for 204). */
export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const auth = opts.auth ?? true;
  const token = auth ? (getTokens()?.access_token ?? null) : null;
  let res = await send(path, opts, token);
  if (res.status === 401 && auth && token) {
    const fresh = await refreshAccessToken(token);
    if (fresh === null) throw await errorFrom(res);
    res = await send(path, opts, fresh);
    if (res.status === 401) {
      // Refused even with a fresh token: the session is not usable; sign out.
      const err = await errorFrom(res);
      setTokens(null);
      throw err;
    }
  }
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** For tests: forget an in-flight refresh. */
export function resetRefreshStateForTests(): void {
  inflight = null;
}

/** What a download has received so far: rows (lines) of the `total` the server announced. */
export interface DownloadProgress {
  rows: number;
  total: number | null;
  bytes: number;
}

/**
 * Downloads a file from the API (with the session's token, refreshed once on a 401 like `api`),
 * reading it as it streams so `onProgress` can show rows received against the
 * `X-Cairn-Export-Rows` the server announced; answers the file's name and contents.
 */
export async function download(
  path: string,
  opts: { query?: Record<string, QueryValue>; signal?: AbortSignal; onProgress?: (p: DownloadProgress) => void } = {},
): Promise<{ name: string; blob: Blob; truncated: boolean }> {
  const token = getTokens()?.access_token ?? null;
  let res = await send(path, { query: opts.query, signal: opts.signal }, token);
  if (res.status === 401 && token) {
    const fresh = await refreshAccessToken(token);
    if (fresh === null) throw await errorFrom(res);
    res = await send(path, { query: opts.query, signal: opts.signal }, fresh);
  }
  if (!res.ok) throw await errorFrom(res);
  const totalHeader = res.headers.get('X-Cairn-Export-Rows');
  const total = totalHeader !== null && /^\d+$/.test(totalHeader) ? Number(totalHeader) : null;
  const disposition = res.headers.get('Content-Disposition') ?? '';
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? 'export';
  const type = res.headers.get('Content-Type') ?? 'application/octet-stream';
  const chunks: BlobPart[] = [];
  // A CSV file's first line is its header, not a row.
  const header = type.startsWith('text/csv') ? 1 : 0;
  let lines = 0;
  let bytes = 0;
  const reader = res.body?.getReader();
  if (reader) {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      bytes += value.byteLength;
      for (const b of value) if (b === 10) lines += 1;
      opts.onProgress?.({ rows: Math.max(0, lines - header), total, bytes });
    }
  } else {
    chunks.push(await res.text());
  }
  return { name, blob: new Blob(chunks, { type }), truncated: res.headers.get('X-Cairn-Export-Truncated') === 'true' };
}

/** Hands a downloaded file to the browser as a download. */
export function saveFile(name: string, blob: Blob) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
