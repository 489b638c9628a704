// Where the SDK keeps what must survive a reload: identity, super properties and the queue.
// localStorage when the page may use it; memory otherwise (private windows, blocked storage,
// server-side rendering), and memory again for a write that exceeds the quota.

export interface Store {
  get(key: string): string | null;
  set(key: string, value: string): void;
  remove(key: string): void;
}

export class MemoryStore implements Store {
  private readonly data = new Map<string, string>();
  get(key: string): string | null {
    return this.data.has(key) ? (this.data.get(key) as string) : null;
  }
  set(key: string, value: string): void {
    this.data.set(key, value);
  }
  remove(key: string): void {
    this.data.delete(key);
  }
}

/** localStorage with a memory fallback for each operation that the browser refuses. */
export class LocalStore implements Store {
  private readonly fallback = new MemoryStore();
  constructor(private readonly ls: Storage) {}

  get(key: string): string | null {
    const mem = this.fallback.get(key);
    if (mem !== null) return mem;
    try {
      return this.ls.getItem(key);
    } catch {
      return null;
    }
  }
  set(key: string, value: string): void {
    try {
      this.ls.setItem(key, value);
      this.fallback.remove(key);
    } catch {
      this.fallback.set(key, value); // quota exceeded or storage blocked: keep it for this page
    }
  }
  remove(key: string): void {
    this.fallback.remove(key);
    try {
      this.ls.removeItem(key);
    } catch {
      /* nothing to remove from */
    }
  }
}

/** 'localStorage' if it works on this page, else memory. */
export function defaultStore(kind: 'localStorage' | 'memory'): Store {
  if (kind === 'localStorage') {
    try {
      const ls = (globalThis as { localStorage?: Storage }).localStorage;
      if (ls) {
        const probe = '__cairn_probe__';
        ls.setItem(probe, '1');
        ls.removeItem(probe);
        return new LocalStore(ls);
      }
    } catch {
      /* blocked: fall through */
    }
  }
  return new MemoryStore();
}

export function readJson<T>(store: Store, key: string): T | null {
  const raw = store.get(key);
  if (raw === null) return null;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return null; // corrupted by someone else: start over rather than fail
  }
}
