import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Cairn } from '../src/client';
import type { CairnOptions } from '../src/config';
import type { DeliveryError } from '../src/types';
import { names, networkError, ok, scriptedFetch, status } from './helpers';

const KEY = 'phc_test';
const HOST = 'http://capture.test';
const clients: Cairn[] = [];

function start(options: CairnOptions = {}): Cairn {
  const c = new Cairn().init(KEY, { host: HOST, capturePageview: false, compression: false, flushInterval: 1000, ...options });
  clients.push(c);
  return c;
}

beforeEach(() => {
  localStorage.clear();
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.shutdown().catch(() => undefined);
  vi.useRealTimers();
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

describe('batching', () => {
  it('sends queued events after the flush interval, in capture’s envelope', async () => {
    const { sent } = scriptedFetch([ok]);
    const c = start();
    c.register({ app: 'shop' });
    c.capture('viewed', { sku: 'A1', price: 9.5, tags: ['x'], nested: { deep: true } });
    c.capture('bought', { sku: 'A1' });
    await vi.advanceTimersByTimeAsync(999);
    expect(sent.length).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent.length).toBe(1);
    const s = sent[0]!;
    expect(s.url).toBe(`${HOST}/batch`);
    expect(s.init.keepalive).toBe(false);
    expect((s.init.headers as Record<string, string>)['Content-Type']).toContain('text/plain');
    expect(s.body.api_key).toBe(KEY);
    expect(Date.parse(s.body.sent_at)).not.toBeNaN();
    expect(names(s)).toEqual(['viewed', 'bought']);
    const e = s.body.batch[0]!;
    expect(e.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(e.distinct_id).toBe(c.getDistinctId());
    expect(e.properties).toMatchObject({
      sku: 'A1',
      price: 9.5,
      tags: ['x'],
      nested: { deep: true },
      app: 'shop',
      $lib: 'cairn-web',
      $device_id: c.getDeviceId(),
      $session_id: c.getSessionId(),
      $current_url: location.href,
    });
    expect(c.queued).toBe(0);
  });

  it('sends at once when flushAt events are queued, at most maxBatchSize per request', async () => {
    const { sent } = scriptedFetch([ok]);
    const c = start({ flushAt: 5, maxBatchSize: 3 });
    for (let i = 0; i < 4; i++) c.capture('e', { i });
    await vi.advanceTimersByTimeAsync(0);
    expect(sent.length).toBe(0);
    c.capture('e', { i: 4 });
    await vi.advanceTimersByTimeAsync(0);
    expect(sent.map((s) => s.body.batch.length)).toEqual([3, 2]);
  });

  it('snapshots properties at capture time', async () => {
    const { sent } = scriptedFetch([ok]);
    const c = start();
    const props = { n: 1 };
    c.capture('e', props);
    props.n = 2;
    await c.flush();
    expect(sent[0]!.body.batch[0]!.properties.n).toBe(1);
  });

  it('gzips large bodies where CompressionStream exists', async () => {
    const bodies: Uint8Array[] = [];
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) => {
      expect(url).toBe(`${HOST}/batch?compression=gzip-js`);
      bodies.push(init.body as Uint8Array);
      return ok();
    }));
    const c = start({ compression: true });
    c.capture('big', { text: 'a'.repeat(5000) });
    await c.flush();
    const gz = bodies[0]!;
    expect([gz[0], gz[1]]).toEqual([0x1f, 0x8b]);
    expect(gz.length).toBeLessThan(1000);
    const text = await new Response(new Response(gz as BodyInit).body!.pipeThrough(new DecompressionStream('gzip'))).text();
    expect(JSON.parse(text).batch[0].properties.text).toHaveLength(5000);
  });
});

describe('identity', () => {
  it('keeps the anonymous id across reloads', () => {
    const first = start();
    const id = first.getDistinctId();
    expect(id).toBeTruthy();
    const reloaded = start();
    expect(reloaded.getDistinctId()).toBe(id);
    expect(reloaded.getDeviceId()).toBe(id);
  });

  it('identify links the anonymous id, and later events carry the new id', async () => {
    const { sent } = scriptedFetch([ok]);
    const c = start();
    const anon = c.getDistinctId();
    c.capture('before');
    c.identify('user-42', { email: 'a@example.com' }, { first_seen: 'today' });
    c.capture('after');
    c.identify('user-42'); // same id, nothing to link: no event
    await c.flush();
    const batch = sent.flatMap((s) => s.body.batch);
    expect(batch.map((e) => [e.event, e.distinct_id])).toEqual([
      ['before', anon],
      ['$identify', 'user-42'],
      ['after', 'user-42'],
    ]);
    expect(batch[1]!.properties).toMatchObject({
      $anon_distinct_id: anon,
      $set: { email: 'a@example.com' },
      $set_once: { first_seen: 'today' },
    });
    expect(start().getDistinctId()).toBe('user-42');
  });

  it('alias sends $create_alias; reset starts a new anonymous user without super properties', async () => {
    const { sent } = scriptedFetch([ok]);
    const c = start();
    c.identify('user-1');
    c.register({ plan: 'pro' });
    c.alias('legacy-7');
    c.reset();
    expect(c.getDistinctId()).not.toBe('user-1');
    c.capture('after_reset');
    await c.flush();
    const batch = sent.flatMap((s) => s.body.batch);
    const alias = batch.find((e) => e.event === '$create_alias')!;
    expect(alias.properties).toMatchObject({ alias: 'legacy-7', distinct_id: 'user-1' });
    const after = batch.find((e) => e.event === 'after_reset')!;
    expect(after.distinct_id).toBe(c.getDistinctId());
    expect(after.properties.plan).toBeUndefined();
  });

  it('register, registerOnce and unregister shape every later event', async () => {
    const { sent } = scriptedFetch([ok]);
    const c = start();
    c.register({ a: 1, b: 1 });
    c.registerOnce({ a: 2, c: 3 });
    c.unregister('b');
    c.capture('e', { c: 'event wins' });
    await c.flush();
    const p = sent[0]!.body.batch[0]!.properties;
    expect(p).toMatchObject({ a: 1, c: 'event wins' });
    expect(p.b).toBeUndefined();
  });

  it('a session id holds while active and changes after the idle timeout', () => {
    scriptedFetch([ok]);
    const c = start({ sessionIdleTimeout: 60_000 });
    c.capture('a');
    const s1 = c.getSessionId();
    vi.advanceTimersByTime(30_000);
    c.capture('b');
    expect(c.getSessionId()).toBe(s1);
    vi.advanceTimersByTime(61_000);
    c.capture('c');
    expect(c.getSessionId()).not.toBe(s1);
  });
});

describe('retries', () => {
  it('retries 503 with backoff and the same uuids, then succeeds', async () => {
    const { sent } = scriptedFetch([status(503, { message: 'kafka' }), status(503), ok]);
    const c = start({ retryBaseDelay: 1000 });
    c.capture('e1');
    c.capture('e2');
    expect(await c.flush()).toBe(false);
    expect(sent.length).toBe(1);
    // Math.random is 0.5: first retry after 500 ms, second after 1000 ms.
    await vi.advanceTimersByTimeAsync(499);
    expect(sent.length).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent.length).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sent.length).toBe(3);
    const ids = sent.map((s) => s.body.batch.map((e) => e.uuid).join());
    expect(new Set(ids).size).toBe(1);
    expect(c.queued).toBe(0);
  });

  it('waits at least Retry-After on 429', async () => {
    const { sent } = scriptedFetch([status(429, {}, { 'Retry-After': '5' }), ok]);
    const c = start();
    c.capture('e');
    await c.flush();
    await vi.advanceTimersByTimeAsync(4999);
    expect(sent.length).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent.length).toBe(2);
    expect(c.queued).toBe(0);
  });

  it('retries network errors, and events captured meanwhile wait for the backoff', async () => {
    const { sent } = scriptedFetch([networkError, ok]);
    const c = start({ flushAt: 1 });
    c.capture('e1');
    await vi.advanceTimersByTimeAsync(0);
    expect(sent.length).toBe(1);
    c.capture('e2'); // flushAt reached, but a backoff is running
    await vi.advanceTimersByTimeAsync(100);
    expect(sent.length).toBe(1);
    await vi.advanceTimersByTimeAsync(400);
    expect(sent.length).toBe(2);
    expect(names(sent[1]!)).toEqual(['e1', 'e2']);
  });

  it('drops only the events a 400 names, and sends the rest', async () => {
    const errors: DeliveryError[] = [];
    const { sent } = scriptedFetch([
      status(400, { error: 'invalid_events', message: 'bad', errors: [{ index: 1, field: 'timestamp', reason: 'future' }] }),
      ok,
    ]);
    const c = start({ onError: (e) => errors.push(e) });
    c.capture('a');
    c.capture('b');
    c.capture('c');
    expect(await c.flush()).toBe(true);
    expect(names(sent[0]!)).toEqual(['a', 'b', 'c']);
    expect(names(sent[1]!)).toEqual(['a', 'c']);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.kind).toBe('invalid');
    expect(errors[0]!.events.map((e) => e.event)).toEqual(['b']);
  });

  it('does not retry 401: the batch is reported and dropped', async () => {
    const errors: DeliveryError[] = [];
    const { sent } = scriptedFetch([status(401, { message: 'unknown API key' })]);
    const c = start({ onError: (e) => errors.push(e) });
    c.capture('a');
    expect(await c.flush()).toBe(true);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sent.length).toBe(1);
    expect(errors[0]).toMatchObject({ kind: 'rejected', status: 401, message: 'unknown API key' });
    expect(c.queued).toBe(0);
  });

  it('splits a batch on 413; a single event too large is dropped', async () => {
    const errors: DeliveryError[] = [];
    const { sent } = scriptedFetch([status(413), ok, ok, status(413), status(413)]);
    const c = start({ onError: (e) => errors.push(e) });
    for (let i = 0; i < 4; i++) c.capture(`e${i}`);
    await c.flush();
    expect(sent.slice(0, 3).map((s) => s.body.batch.length)).toEqual([4, 2, 2]);
    c.capture('huge');
    await c.flush();
    expect(errors.map((e) => e.status)).toEqual([413]);
    expect(c.queued).toBe(0);
  });
});

describe('persistence', () => {
  it('what a page could not send is sent by the next page load', async () => {
    scriptedFetch([networkError]);
    const first = start();
    first.capture('offline_1');
    first.capture('offline_2');
    await first.flush();
    expect(first.queued).toBe(2);
    await first.shutdown();

    const { sent } = scriptedFetch([ok]);
    const second = start();
    expect(second.queued).toBe(2);
    await vi.advanceTimersByTimeAsync(0);
    expect(sent.flatMap(names)).toEqual(['offline_1', 'offline_2']);
    expect(second.queued).toBe(0);
    expect(localStorage.getItem(`cairn_${KEY}_queue`)).toBeNull();
  });

  it('hands the queue to sendBeacon when the page is hidden', async () => {
    const beacons: [string, Blob][] = [];
    scriptedFetch([ok]);
    Object.defineProperty(navigator, 'sendBeacon', {
      configurable: true,
      value: (url: string, data: Blob) => beacons.push([url, data]) > 0,
    });
    const c = start({ flushInterval: 60_000 });
    c.capture('leaving');
    window.dispatchEvent(new Event('pagehide'));
    await vi.advanceTimersByTimeAsync(0);
    expect(beacons.length).toBe(1);
    expect(beacons[0]![0]).toBe(`${HOST}/batch`);
    vi.useRealTimers();
    const text = await new Promise<string>((resolve) => {
      const reader = new FileReader(); // jsdom's Blob has no text()
      reader.onload = () => resolve(String(reader.result));
      reader.readAsText(beacons[0]![1]);
    });
    const body = JSON.parse(text);
    expect(body.api_key).toBe(KEY);
    expect(body.batch[0].event).toBe('leaving');
    expect(c.queued).toBe(0);
    delete (navigator as { sendBeacon?: unknown }).sendBeacon;
  });
});

describe('page integration and controls', () => {
  it('captures $pageview on init and on history navigation', async () => {
    const { sent } = scriptedFetch([ok]);
    const c = start({ capturePageview: true });
    history.pushState({}, '', '/pricing?plan=pro');
    history.pushState({}, '', '/pricing?plan=pro'); // same page
    await c.flush();
    const views = sent.flatMap((s) => s.body.batch).filter((e) => e.event === '$pageview');
    expect(views.map((e) => e.properties.$pathname)).toEqual(['/', '/pricing']);
  });

  it('captures nothing while opted out, and remembers the choice', async () => {
    const { sent } = scriptedFetch([ok]);
    const c = start();
    c.optOut();
    expect(c.capture('e')).toBeUndefined();
    expect(start().isOptedOut()).toBe(true);
    c.optIn();
    c.capture('e2');
    await c.flush();
    expect(sent.flatMap(names)).toEqual(['e2']);
  });

  it('beforeSend may change or drop events', async () => {
    const { sent } = scriptedFetch([ok]);
    const c = start({
      beforeSend: (e) => (e.event === 'secret' ? null : { ...e, properties: { ...e.properties, $current_url: 'redacted' } }),
    });
    c.capture('secret');
    c.capture('public');
    await c.flush();
    const batch = sent.flatMap((s) => s.body.batch);
    expect(batch.map((e) => e.event)).toEqual(['public']);
    expect(batch[0]!.properties.$current_url).toBe('redacted');
  });

  it('refuses bad input with a reason instead of sending it', () => {
    const errors: DeliveryError[] = [];
    const c = start({ onError: (e) => errors.push(e) });
    expect(c.capture('')).toBeUndefined();
    expect(c.capture('x'.repeat(201))).toBeUndefined();
    expect(c.capture('e', [] as unknown as Record<string, unknown>)).toBeUndefined();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(c.capture('e', cyclic)).toBeUndefined();
    expect(errors.map((e) => e.kind)).toEqual(['invalid', 'invalid', 'invalid', 'invalid']);
    expect(c.queued).toBe(0);
    expect(() => new Cairn().init('')).toThrow(/API key/);
    expect(() => new Cairn().init('k', { host: 'capture.test' })).toThrow(/host/);
    expect(() => new Cairn().init('k', { flushAt: 0 })).toThrow(/flushAt/);
  });

  it('drops the oldest events when the queue is full, and says so', async () => {
    const errors: DeliveryError[] = [];
    const { sent } = scriptedFetch([ok]);
    const c = start({ maxQueueSize: 3, flushAt: 100, onError: (e) => errors.push(e) });
    for (let i = 0; i < 5; i++) c.capture(`e${i}`);
    await c.flush();
    expect(sent.flatMap(names)).toEqual(['e2', 'e3', 'e4']);
    expect(errors.filter((e) => e.kind === 'dropped')).toHaveLength(2);
  });
});
