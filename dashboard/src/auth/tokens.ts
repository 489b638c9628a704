// Where the session's tokens live.
//
// They are kept in localStorage, so that a reload or a second tab stays signed in. That is
// acceptable here but not free: any script that runs on this origin could read them. The
// mitigations are that the query service serves the dashboard with a strict CSP (scripts from
// this origin only, no inline script), React escapes what it renders, access tokens live 15
// minutes, and refresh tokens rotate on each use (a stolen one presented twice ends the session).
// An httpOnly cookie would be safer, but the auth API issues bearer tokens, not cookies.

import type { TokenPair } from '../api/types';

export const STORAGE_KEY = 'cairn.auth.v1';

export interface StoredTokens {
  access_token: string;
  refresh_token: string;
  /** Milliseconds since the epoch when the access token expires (as told by the server). */
  expires_at: number;
}

type Listener = (tokens: StoredTokens | null) => void;
const listeners = new Set<Listener>();

function read(): StoredTokens | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const t = JSON.parse(raw) as Partial<StoredTokens>;
    if (typeof t.access_token !== 'string' || typeof t.refresh_token !== 'string') return null;
    return { access_token: t.access_token, refresh_token: t.refresh_token, expires_at: Number(t.expires_at) || 0 };
  } catch {
    return null;
  }
}

/** The current tokens, read from storage each time (another tab may have rotated them). */
export function getTokens(): StoredTokens | null {
  return read();
}

/** Stores a new pair (after login, signup or a refresh), or forgets the session with `null`. */
export function setTokens(pair: TokenPair | StoredTokens | null): void {
  let stored: StoredTokens | null = null;
  if (pair) {
    stored = {
      access_token: pair.access_token,
      refresh_token: pair.refresh_token,
      expires_at: 'expires_at' in pair ? pair.expires_at : Date.now() + pair.expires_in * 1000,
    };
    localStorage.setItem(STORAGE_KEY, JSON.stringify(stored));
  } else {
    localStorage.removeItem(STORAGE_KEY);
  }
  for (const l of listeners) l(stored);
}

/** Called when the tokens change in this tab or in another one; returns an unsubscribe. */
export function subscribeTokens(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

if (typeof window !== 'undefined') {
  window.addEventListener('storage', (e) => {
    if (e.key !== STORAGE_KEY && e.key !== null) return;
    const t = read();
    for (const l of listeners) l(t);
  });
}
