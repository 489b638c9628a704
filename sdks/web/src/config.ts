import type { CaptureEvent, DeliveryError } from './types';

/** Options of `init(apiKey, options)`. Every one has a default. */
export interface CairnOptions {
  /** Where capture listens: the cluster's ingress host, or http://127.0.0.1:18000 under `make up`. */
  host?: string;
  /** Send when this many events are queued (default 50). */
  flushAt?: number;
  /** ...or when the oldest queued event is this old, in ms (default 2000). */
  flushInterval?: number;
  /** At most this many events per request (default 200). */
  maxBatchSize?: number;
  /** Queue bound; when full the oldest event is dropped (default 1000). */
  maxQueueSize?: number;
  /** First retry delay in ms, doubled per attempt with full jitter (default 1000). */
  retryBaseDelay?: number;
  /** Longest retry delay in ms (default 30000). A Retry-After header may ask for more. */
  retryMaxDelay?: number;
  /** Per-request time limit in ms (default 10000). */
  requestTimeout?: number;
  /** 'localStorage' (default) keeps identity and the queue across reloads; 'memory' does not. */
  persistence?: 'localStorage' | 'memory';
  /** Capture `$pageview` on load and on history navigation (pushState, popstate). Default true. */
  capturePageview?: boolean;
  /** Gzip request bodies over 1 KB where the browser has CompressionStream (default true). */
  compression?: boolean;
  /** A session ends after this much inactivity, in ms (default 30 minutes). */
  sessionIdleTimeout?: number;
  /** Last look at each event before it is queued: return it (changed or not), or null to drop it. */
  beforeSend?: (event: CaptureEvent) => CaptureEvent | null;
  /** Told about events that will not be delivered. */
  onError?: (error: DeliveryError) => void;
  /** Start opted out (see optIn/optOut); the choice is persisted. */
  optOut?: boolean;
  /** Log what the SDK does to the console. */
  debug?: boolean;
}

export type Config = Required<Omit<CairnOptions, 'beforeSend' | 'onError' | 'optOut'>> &
  Pick<CairnOptions, 'beforeSend' | 'onError' | 'optOut'>;

export const DEFAULTS: Config = {
  host: 'http://127.0.0.1:18000',
  flushAt: 50,
  flushInterval: 2000,
  maxBatchSize: 200,
  maxQueueSize: 1000,
  retryBaseDelay: 1000,
  retryMaxDelay: 30000,
  requestTimeout: 10000,
  persistence: 'localStorage',
  capturePageview: true,
  compression: true,
  sessionIdleTimeout: 30 * 60 * 1000,
  debug: false,
};

export function resolveConfig(options: CairnOptions): Config {
  const c: Config = { ...DEFAULTS };
  for (const [k, v] of Object.entries(options)) {
    if (v !== undefined) (c as unknown as Record<string, unknown>)[k] = v;
  }
  c.host = c.host.replace(/\/+$/, '');
  for (const k of ['flushAt', 'maxBatchSize', 'maxQueueSize'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new TypeError(`cairn: options.${k} must be a positive integer`);
  }
  for (const k of ['flushInterval', 'retryBaseDelay', 'retryMaxDelay', 'requestTimeout', 'sessionIdleTimeout'] as const) {
    if (typeof c[k] !== 'number' || !(c[k] >= 0)) throw new TypeError(`cairn: options.${k} must be a number of ms ≥ 0`);
  }
  if (!/^https?:\/\//.test(c.host)) throw new TypeError('cairn: options.host must start with http:// or https://');
  return c;
}
