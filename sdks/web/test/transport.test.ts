import { afterEach, describe, expect, it, vi } from 'vitest';
import { backoffDelay, beacon, classify, parseRetryAfter } from '../src/transport';
import type { CaptureEvent } from '../src/types';

const ev = (i: number, size = 10): CaptureEvent => ({
  event: 'e',
  distinct_id: 'u',
  properties: { i, pad: 'x'.repeat(size) },
  timestamp: new Date(0).toISOString(),
  uuid: `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`,
});

afterEach(() => vi.unstubAllGlobals());

describe('classify', () => {
  it('maps each answer of capture to what happens to the batch', () => {
    expect(classify(200, null, '{"status":1}')).toEqual({ kind: 'delivered' });
    expect(classify(503, '2', '{"message":"kafka"}')).toMatchObject({ kind: 'retry', status: 503, retryAfterMs: 2000 });
    expect(classify(500, null, 'oops')).toMatchObject({ kind: 'retry', status: 500 });
    expect(classify(429, '1', '{}')).toMatchObject({ kind: 'retry', retryAfterMs: 1000 });
    expect(classify(413, null, '{}')).toEqual({ kind: 'too_large' });
    expect(classify(401, null, '{"message":"unknown key"}')).toEqual({ kind: 'rejected', status: 401, message: 'unknown key' });
    expect(classify(400, null, '{"message":"bad","errors":[{"index":2,"field":"event"},{"index":0}]}')).toEqual({
      kind: 'invalid',
      indexes: [2, 0],
      message: 'bad',
    });
    // A 400 that names no event (malformed body) cannot be fixed by resending.
    expect(classify(400, null, '{"errors":[{"field":"body"}]}')).toMatchObject({ kind: 'rejected', status: 400 });
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter('0.5')).toBe(500);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    const now = Date.UTC(2026, 0, 1, 0, 0, 0);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:10 GMT', now)).toBe(10_000);
  });
});

describe('backoffDelay', () => {
  it('grows exponentially up to the ceiling, with full jitter', () => {
    expect(backoffDelay(0, 1000, 30000, undefined, () => 0.999)).toBe(999);
    expect(backoffDelay(3, 1000, 30000, undefined, () => 0.999)).toBe(7992);
    expect(backoffDelay(10, 1000, 30000, undefined, () => 0.999)).toBe(29970);
    expect(backoffDelay(10, 1000, 30000, undefined, () => 0)).toBe(0);
  });
  it('waits at least Retry-After', () => {
    expect(backoffDelay(0, 1000, 30000, 5000, () => 0.5)).toBe(5000);
    expect(backoffDelay(5, 1000, 30000, 100, () => 0.5)).toBe(15000);
  });
});

describe('beacon', () => {
  it('splits the queue into beacons under the size limit and stops at the first refusal', () => {
    const bodies: string[] = [];
    let accept = 3;
    vi.stubGlobal('navigator', {
      sendBeacon: (_url: string, blob: Blob) => {
        bodies.push(String(blob.size));
        return accept-- > 0;
      },
    });
    const events = Array.from({ length: 40 }, (_, i) => ev(i, 1000));
    const sent = beacon('http://capture', 'phc_k', events, 10_000);
    expect(bodies.length).toBe(4);
    for (const size of bodies) expect(Number(size)).toBeLessThanOrEqual(10_000);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(40);
  });
  it('reports nothing sent without sendBeacon', () => {
    vi.stubGlobal('navigator', {});
    expect(beacon('http://capture', 'k', [ev(1)])).toBe(0);
  });
});
