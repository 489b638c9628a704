// Sending batches to capture, and what each answer means for the events in it.
//
//   200            delivered (Kafka acknowledged every event)
//   400 + errors[] the events named by index are invalid and dropped; the rest are sent again
//   413            too large: split the batch (a single event that is too large is dropped)
//   429, 5xx,
//   network error  retried with exponential backoff and full jitter, at least Retry-After
//   other 4xx      rejected for good (401: unknown key); dropped and reported

import type { CaptureEvent } from './types';

export type Outcome =
  | { kind: 'delivered' }
  | { kind: 'invalid'; indexes: number[]; message: string }
  | { kind: 'too_large' }
  | { kind: 'retry'; status?: number; retryAfterMs?: number; message: string }
  | { kind: 'rejected'; status: number; message: string };

/** The request body: capture's batch envelope. `sent_at` lets capture correct the page's clock. */
export function envelope(apiKey: string, batch: CaptureEvent[], now: Date = new Date()): string {
  return JSON.stringify({ api_key: apiKey, sent_at: now.toISOString(), batch });
}

/** Retry-After as ms: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(parseFloat(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Full jitter: a random delay in [0, min(max, base·2^attempt)], but never less than Retry-After. */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  maxMs: number,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  const delay = Math.floor(random() * ceiling);
  return retryAfterMs !== undefined ? Math.max(delay, retryAfterMs) : delay;
}

async function gzip(text: string): Promise<Uint8Array | null> {
  const CS = (globalThis as { CompressionStream?: typeof CompressionStream }).CompressionStream;
  if (!CS) return null;
  try {
    const body = new Response(text).body;
    if (!body) return null;
    return new Uint8Array(await new Response(body.pipeThrough(new CS('gzip'))).arrayBuffer());
  } catch {
    return null;
  }
}

export interface SendOptions {
  compression: boolean;
  timeoutMs: number;
  /** For requests made while the page is being hidden: survives the page (64 KB at most). */
  keepalive?: boolean;
}

/**
 * POSTs a batch to `${host}/batch`. The body goes as text/plain so that browsers send it without
 * a CORS preflight (capture reads JSON whatever the content type); gzip as ?compression=gzip-js.
 */
export async function sendBatch(host: string, body: string, opts: SendOptions): Promise<Outcome> {
  const fetchFn = (globalThis as { fetch?: typeof fetch }).fetch;
  if (!fetchFn) return { kind: 'retry', message: 'fetch is not available' };
  let url = `${host}/batch`;
  let payload: BodyInit = body;
  if (opts.compression && !opts.keepalive && body.length > 1024) {
    const gz = await gzip(body);
    if (gz) {
      url += '?compression=gzip-js';
      payload = gz as BodyInit;
    }
  }
  const controller = typeof AbortController !== 'undefined' ? new AbortController() : undefined;
  const timer = controller ? setTimeout(() => controller.abort(), opts.timeoutMs) : undefined;
  let res: Response;
  try {
    res = await fetchFn(url, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
      body: payload,
      keepalive: !!opts.keepalive,
      signal: controller?.signal,
      credentials: 'omit',
    });
  } catch (e) {
    return { kind: 'retry', message: `network error: ${(e as Error)?.message ?? String(e)}` };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
  return classify(res.status, res.headers.get('Retry-After'), await res.text().catch(() => ''));
}

/** What an answer from capture means for the batch (exported for tests). */
export function classify(status: number, retryAfter: string | null, text: string): Outcome {
  if (status >= 200 && status < 300) return { kind: 'delivered' };
  let body: { message?: string; errors?: { index?: number }[] } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    /* not JSON: a proxy's page */
  }
  const message = body.message ?? `HTTP ${status}`;
  if (status === 429 || status >= 500 || status === 408) {
    return { kind: 'retry', status, retryAfterMs: parseRetryAfter(retryAfter), message };
  }
  if (status === 413) return { kind: 'too_large' };
  if (status === 400 && Array.isArray(body.errors)) {
    const indexes = body.errors.map((e) => e.index).filter((i): i is number => Number.isInteger(i));
    if (indexes.length > 0) return { kind: 'invalid', indexes, message };
  }
  return { kind: 'rejected', status, message };
}

/**
 * Hands batches to the browser while the page is being hidden or unloaded (navigator.sendBeacon:
 * the browser delivers them after the page is gone). Returns how many of the events it accepted.
 */
export function beacon(host: string, apiKey: string, events: CaptureEvent[], maxBytes = 60_000): number {
  const nav = (globalThis as { navigator?: Navigator }).navigator;
  if (!nav || typeof nav.sendBeacon !== 'function') return 0;
  let sent = 0;
  while (sent < events.length) {
    // As many events as fit in one beacon (browsers refuse beyond 64 KB in flight).
    let n = events.length - sent;
    let body = envelope(apiKey, events.slice(sent, sent + n));
    while (body.length > maxBytes && n > 1) {
      n = Math.max(1, Math.floor(n / 2));
      body = envelope(apiKey, events.slice(sent, sent + n));
    }
    let ok = false;
    try {
      ok = nav.sendBeacon(`${host}/batch`, new Blob([body], { type: 'text/plain;charset=UTF-8' }));
    } catch {
      ok = false;
    }
    if (!ok) break;
    sent += n;
  }
  return sent;
}
