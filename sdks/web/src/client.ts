// The SDK's client: identity, super properties, sessions, the queue and its delivery.

import { resolveConfig, type CairnOptions, type Config } from './config';
import { pageContext } from './context';
import { PersistentQueue } from './queue';
import { defaultStore, readJson, type Store } from './storage';
import { backoffDelay, beacon, envelope, sendBatch, type Outcome } from './transport';
import type { CaptureEvent, DeliveryError, Properties } from './types';
import { uuidv7 } from './uuid';

/** What survives a reload (besides the queue). */
interface State {
  distinct_id: string;
  device_id: string;
  /** Whether distinct_id was set by identify() rather than being the anonymous device id. */
  identified: boolean;
  super: Properties;
  session?: { id: string; started: number; last: number };
  opted_out?: boolean;
}

const MAX_EVENT_NAME = 200;
const MAX_EVENT_BYTES = 1_000_000;
const MAX_SESSION_MS = 24 * 3600 * 1000;

export interface CaptureOptions {
  /** When it happened (default: now). */
  timestamp?: Date;
  /** The event's id, if the page has one already (default: a new UUIDv7). */
  uuid?: string;
}

export class Cairn {
  private apiKey = '';
  private config: Config | null = null;
  private store: Store | null = null;
  private state: State | null = null;
  private queue: PersistentQueue | null = null;
  private stateKey = '';

  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private sending: Promise<boolean> | null = null;
  /** Consecutive failed attempts, for the backoff. */
  private attempt = 0;
  /** Events per request; halved after a 413, restored after a success. */
  private batchLimit = 1;
  private lastPath: string | undefined;
  private readonly cleanups: (() => void)[] = [];

  /** Starts the SDK. Call once per page; calls before init are ignored. */
  init(apiKey: string, options: CairnOptions = {}): this {
    if (typeof apiKey !== 'string' || apiKey.trim() === '') throw new TypeError('cairn: init needs an API key');
    if (this.config) this.shutdownSync();
    this.apiKey = apiKey.trim();
    this.config = resolveConfig(options);
    this.batchLimit = this.config.maxBatchSize;
    this.store = defaultStore(this.config.persistence);
    this.stateKey = `cairn_${this.apiKey}`;
    this.state = this.loadState();
    if (options.optOut !== undefined && this.state.opted_out === undefined) {
      this.state.opted_out = options.optOut;
      this.saveState();
    }
    this.queue = new PersistentQueue(this.store, `${this.stateKey}_queue`, this.config.maxQueueSize);
    this.listen();
    if (this.config.capturePageview) this.capturePageview();
    // Whatever a previous page left unsent goes now.
    if (this.queue.length > 0) this.scheduleFlush(0);
    return this;
  }

  /** Queues an event. Returns its uuid, or undefined if it was not queued (see onError). */
  capture(event: string, properties: Properties = {}, options: CaptureOptions = {}): string | undefined {
    const { config, state, queue } = this;
    if (!config || !state || !queue) {
      console.warn('cairn: capture() before init() is ignored');
      return undefined;
    }
    if (state.opted_out) return undefined;
    if (typeof event !== 'string' || event.trim() === '' || event.length > MAX_EVENT_NAME) {
      return this.invalid(`event name must be 1 to ${MAX_EVENT_NAME} characters`, event);
    }
    if (properties === null || typeof properties !== 'object' || Array.isArray(properties)) {
      return this.invalid('properties must be an object', event);
    }
    const now = Date.now();
    const session = this.touchSession(now);
    let props: Properties;
    try {
      // A snapshot: later changes to the page's objects do not change what was captured.
      props = JSON.parse(
        JSON.stringify({
          ...pageContext(),
          $device_id: state.device_id,
          $session_id: session,
          ...state.super,
          ...properties,
        }),
      ) as Properties;
    } catch (e) {
      return this.invalid(`properties are not JSON: ${(e as Error).message}`, event);
    }
    let e: CaptureEvent | null = {
      event,
      distinct_id: state.distinct_id,
      properties: props,
      timestamp: (options.timestamp ?? new Date(now)).toISOString(),
      uuid: options.uuid ?? uuidv7(now),
    };
    if (config.beforeSend) {
      e = config.beforeSend(e);
      if (!e) return undefined;
    }
    if (JSON.stringify(e).length > MAX_EVENT_BYTES) {
      return this.invalid(`the event exceeds ${MAX_EVENT_BYTES} bytes`, event);
    }
    const droppedBefore = queue.dropped;
    queue.push(e);
    if (queue.dropped > droppedBefore) {
      this.report({ kind: 'dropped', message: `the queue is full (${config.maxQueueSize}); the oldest events were dropped`, events: [] });
    }
    this.log('queued', e.event, e.uuid);
    if (queue.length >= config.flushAt) this.scheduleFlush(0);
    else this.scheduleFlush(config.flushInterval);
    return e.uuid;
  }

  /**
   * Says who the user is. Events from now on carry this distinct_id; the `$identify` event links
   * the anonymous id used so far to it. `set` and `setOnce` become person properties.
   */
  identify(distinctId: string, set?: Properties, setOnce?: Properties): void {
    const state = this.state;
    if (!state) return void console.warn('cairn: identify() before init() is ignored');
    if (typeof distinctId !== 'string' || distinctId.trim() === '' || distinctId.length > 200) {
      this.invalid('distinct_id must be 1 to 200 characters', '$identify');
      return;
    }
    const props: Properties = {};
    if (set) props.$set = set;
    if (setOnce) props.$set_once = setOnce;
    if (distinctId === state.distinct_id) {
      if (set || setOnce) this.capture('$set', props);
      return;
    }
    const previous = state.distinct_id;
    const wasAnonymous = !state.identified;
    state.distinct_id = distinctId;
    state.identified = true;
    this.saveState();
    if (wasAnonymous) props.$anon_distinct_id = previous;
    this.capture('$identify', props);
  }

  /** Sets person properties without an identify. */
  setPersonProperties(set?: Properties, setOnce?: Properties): void {
    const props: Properties = {};
    if (set) props.$set = set;
    if (setOnce) props.$set_once = setOnce;
    this.capture('$set', props);
  }

  /** Links another id to the current user (PostHog's `$create_alias`). */
  alias(alias: string): void {
    const state = this.state;
    if (!state) return;
    if (typeof alias !== 'string' || alias.trim() === '' || alias.length > 200) {
      this.invalid('alias must be 1 to 200 characters', '$create_alias');
      return;
    }
    if (alias === state.distinct_id) return;
    this.capture('$create_alias', { alias, distinct_id: state.distinct_id });
  }

  /** Logout: a new anonymous id, no super properties, a new session. Queued events still go. */
  reset(): void {
    if (!this.state) return;
    const optedOut = this.state.opted_out;
    this.state = freshState();
    this.state.opted_out = optedOut;
    this.saveState();
  }

  /** Properties added to every later event (persisted). */
  register(properties: Properties): void {
    if (!this.state) return;
    Object.assign(this.state.super, properties);
    this.saveState();
  }

  /** Like register, but keeps values already registered. */
  registerOnce(properties: Properties): void {
    if (!this.state) return;
    for (const [k, v] of Object.entries(properties)) if (!(k in this.state.super)) this.state.super[k] = v;
    this.saveState();
  }

  unregister(name: string): void {
    if (!this.state) return;
    delete this.state.super[name];
    this.saveState();
  }

  getDistinctId(): string | undefined {
    return this.state?.distinct_id;
  }

  getDeviceId(): string | undefined {
    return this.state?.device_id;
  }

  getSessionId(): string | undefined {
    return this.state?.session?.id;
  }

  /** Stops capturing on this browser (persisted) and forgets what is queued. */
  optOut(): void {
    if (!this.state) return;
    this.state.opted_out = true;
    this.saveState();
    this.queue?.clear();
  }

  optIn(): void {
    if (!this.state) return;
    this.state.opted_out = false;
    this.saveState();
  }

  isOptedOut(): boolean {
    return !!this.state?.opted_out;
  }

  /** Events waiting to be sent. */
  get queued(): number {
    return this.queue?.length ?? 0;
  }

  /**
   * Sends everything queued now, even during a retry backoff. Resolves true once the queue is
   * empty, false if some events must wait for a retry (they stay queued and persisted).
   */
  async flush(): Promise<boolean> {
    if (!this.config) return true;
    this.clearTimer('retry');
    this.clearTimer('flush');
    while (this.sending) await this.sending;
    this.sending = this.sendAll().finally(() => {
      this.sending = null;
    });
    return this.sending;
  }

  /** Flushes, then stops timers and listeners. */
  async shutdown(): Promise<boolean> {
    const ok = await this.flush();
    this.shutdownSync();
    return ok;
  }

  // ── delivery ──────────────────────────────────────────────────────────────────────────────

  private async sendAll(): Promise<boolean> {
    const { config, queue } = this;
    if (!config || !queue) return true;
    while (queue.length > 0) {
      const batch = queue.peek(this.batchLimit);
      const outcome: Outcome = await sendBatch(config.host, envelope(this.apiKey, batch), {
        compression: config.compression,
        timeoutMs: config.requestTimeout,
      });
      this.log('batch of', batch.length, '→', outcome.kind);
      switch (outcome.kind) {
        case 'delivered':
          queue.remove(batch.map((e) => e.uuid));
          this.attempt = 0;
          this.batchLimit = config.maxBatchSize;
          break;
        case 'invalid': {
          const bad = outcome.indexes.map((i) => batch[i]).filter((e): e is CaptureEvent => !!e);
          queue.remove(bad.map((e) => e.uuid));
          this.report({ kind: 'invalid', status: 400, message: outcome.message, events: bad });
          if (bad.length === 0) {
            // The answer named no event of this batch: it cannot succeed as it is.
            queue.remove(batch.map((e) => e.uuid));
            this.report({ kind: 'rejected', status: 400, message: outcome.message, events: batch });
          }
          break;
        }
        case 'too_large':
          if (batch.length === 1) {
            queue.remove(batch.map((e) => e.uuid));
            this.report({ kind: 'rejected', status: 413, message: 'the event is too large', events: batch });
          } else {
            this.batchLimit = Math.ceil(batch.length / 2);
          }
          break;
        case 'rejected':
          queue.remove(batch.map((e) => e.uuid));
          this.report({ kind: 'rejected', status: outcome.status, message: outcome.message, events: batch });
          break;
        case 'retry': {
          const delay = backoffDelay(this.attempt, config.retryBaseDelay, config.retryMaxDelay, outcome.retryAfterMs);
          this.attempt += 1;
          this.log('retrying in', delay, 'ms:', outcome.message);
          this.clearTimer('retry');
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            void this.flush();
          }, delay);
          return false;
        }
      }
    }
    return true;
  }

  /** A flush after `delay` ms, unless one is due sooner or a retry backoff is running. */
  private scheduleFlush(delay: number): void {
    if (this.retryTimer !== undefined) return;
    if (delay === 0) {
      this.clearTimer('flush');
      if (!this.sending) void this.flush();
      else void this.sending.then(() => this.queue && this.queue.length > 0 && this.scheduleFlush(0));
      return;
    }
    if (this.flushTimer === undefined) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        void this.flush();
      }, delay);
    }
  }

  /**
   * The page is being hidden or unloaded: hand the queue to the browser (sendBeacon), which
   * delivers it after the page is gone. Events it did not accept stay persisted for the next load.
   */
  private flushOnHide(): void {
    const { config, queue } = this;
    if (!config || !queue || queue.length === 0) return;
    const events = queue.peek(queue.length);
    const accepted = beacon(config.host, this.apiKey, events);
    queue.remove(events.slice(0, accepted).map((e) => e.uuid));
    this.log('page hidden: beaconed', accepted, 'of', events.length);
    if (accepted < events.length) {
      // No beacon (or refused): a keepalive fetch; if the page dies first, the next load resends.
      const rest = events.slice(accepted);
      void sendBatch(config.host, envelope(this.apiKey, rest), {
        compression: false,
        timeoutMs: config.requestTimeout,
        keepalive: true,
      }).then((o) => {
        if (o.kind === 'delivered') queue.remove(rest.map((e) => e.uuid));
      });
    }
  }

  // ── page integration ──────────────────────────────────────────────────────────────────────

  private listen(): void {
    const w = globalThis as unknown as Window & typeof globalThis;
    if (typeof w.addEventListener !== 'function') return;
    const onHide = () => this.flushOnHide();
    const onVisibility = () => {
      if (w.document?.visibilityState === 'hidden') this.flushOnHide();
    };
    w.addEventListener('pagehide', onHide);
    w.document?.addEventListener('visibilitychange', onVisibility);
    this.cleanups.push(() => w.removeEventListener('pagehide', onHide));
    this.cleanups.push(() => w.document?.removeEventListener('visibilitychange', onVisibility));

    if (this.config?.capturePageview && w.history && typeof w.history.pushState === 'function') {
      const onNavigate = () => this.capturePageview();
      const original = w.history.pushState;
      const patched = function (this: History, ...args: Parameters<History['pushState']>) {
        const r = original.apply(this, args);
        onNavigate();
        return r;
      };
      w.history.pushState = patched;
      w.addEventListener('popstate', onNavigate);
      this.cleanups.push(() => {
        if (w.history.pushState === patched) w.history.pushState = original;
        w.removeEventListener('popstate', onNavigate);
      });
    }
  }

  /** `$pageview`, once per path (history navigation that only changes the hash is not a page). */
  private capturePageview(): void {
    const loc = (globalThis as { location?: Location }).location;
    const path = loc ? loc.pathname + loc.search : '';
    if (path === this.lastPath) return;
    this.lastPath = path;
    const title = (globalThis as { document?: Document }).document?.title;
    this.capture('$pageview', title ? { $title: title } : {});
  }

  // ── state ─────────────────────────────────────────────────────────────────────────────────

  private loadState(): State {
    const saved = this.store ? readJson<Partial<State>>(this.store, this.stateKey) : null;
    if (saved && typeof saved.device_id === 'string' && typeof saved.distinct_id === 'string') {
      return {
        distinct_id: saved.distinct_id,
        device_id: saved.device_id,
        identified: !!saved.identified,
        super: saved.super && typeof saved.super === 'object' ? saved.super : {},
        session: saved.session,
        opted_out: saved.opted_out,
      };
    }
    const s = freshState();
    this.state = s;
    this.saveState();
    return s;
  }

  private saveState(): void {
    if (this.store && this.state) this.store.set(this.stateKey, JSON.stringify(this.state));
  }

  /** The current session's id: a new one after the idle timeout or 24 hours. */
  private touchSession(now: number): string {
    const state = this.state as State;
    const idle = this.config?.sessionIdleTimeout ?? 0;
    let s = state.session;
    if (!s || now - s.last > idle || now - s.started > MAX_SESSION_MS) {
      s = { id: uuidv7(now), started: now, last: now };
      state.session = s;
    } else {
      s.last = now;
    }
    this.saveState();
    return s.id;
  }

  // ── reporting ─────────────────────────────────────────────────────────────────────────────

  private invalid(message: string, event: unknown): undefined {
    this.report({ kind: 'invalid', message: `${String(event)}: ${message}`, events: [] });
    return undefined;
  }

  private report(error: DeliveryError): void {
    if (this.config?.onError) {
      try {
        this.config.onError(error);
      } catch {
        /* the page's handler failed: nothing to do */
      }
    } else if (error.kind !== 'dropped' || this.config?.debug) {
      console.warn(`cairn: ${error.kind}: ${error.message}`);
    }
  }

  private log(...args: unknown[]): void {
    if (this.config?.debug) console.debug('cairn:', ...args);
  }

  private clearTimer(which: 'flush' | 'retry'): void {
    if (which === 'flush' && this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    if (which === 'retry' && this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
  }

  private shutdownSync(): void {
    this.clearTimer('flush');
    this.clearTimer('retry');
    for (const c of this.cleanups.splice(0)) c();
  }
}

function freshState(): State {
  const id = uuidv7();
  return { distinct_id: id, device_id: id, identified: false, super: {} };
}
