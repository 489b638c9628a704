// The web SDK in a real Chromium (Debian's, driven by playwright-core) against a running capture
// service; every check reads the rows back from ClickHouse. Also PostHog's own posthog-js, sent
// to Cairn unchanged.
//
// Reads CAIRN_CAPTURE_URL, CAIRN_API_KEY, CAIRN_PROJECT_ID, CAIRN_CLICKHOUSE_URL,
// CAIRN_CLICKHOUSE_DATABASE and CAIRN_CHROMIUM (default /usr/bin/chromium). e2e/tests/sdks.rs in
// the repository starts capture, the consumer, Kafka and ClickHouse and runs this.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set (see e2e/tests/sdks.rs)`);
  return v;
};
const CAPTURE = env('CAIRN_CAPTURE_URL');
const KEY = env('CAIRN_API_KEY');
const PROJECT = Number(env('CAIRN_PROJECT_ID'));
const CH = env('CAIRN_CLICKHOUSE_URL');
const DB = env('CAIRN_CLICKHOUSE_DATABASE');
const CHROMIUM = env('CAIRN_CHROMIUM', '/usr/bin/chromium');
const RUN = Date.now().toString(36);
const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');

// ── ClickHouse ────────────────────────────────────────────────────────────────────────────────

async function rows(where) {
  const sql = `SELECT toString(uuid) AS uuid, event, distinct_id, properties,
      formatDateTime(timestamp, '%Y-%m-%dT%H:%i:%S.%fZ') AS timestamp
    FROM events FINAL WHERE project_id = ${PROJECT} AND (${where}) ORDER BY timestamp, uuid FORMAT JSONEachRow`;
  const res = await fetch(`${CH}/?database=${encodeURIComponent(DB)}`, { method: 'POST', body: sql });
  const text = await res.text();
  if (!res.ok) throw new Error(`ClickHouse: ${res.status} ${text}`);
  return text.split('\n').filter(Boolean).map((l) => {
    const r = JSON.parse(l);
    return { ...r, properties: JSON.parse(r.properties) };
  });
}

/** Polls a statement until `ok(rows)` holds (60 s at most); returns whether it did. */
async function waitSql(what, sql, ok, timeoutMs = 60_000) {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    const res = await fetch(`${CH}/?database=${encodeURIComponent(DB)}`, { method: 'POST', body: `${sql} FORMAT JSONEachRow` });
    const text = await res.text();
    if (!res.ok) throw new Error(`ClickHouse: ${res.status} ${text}`);
    if (ok(text.split('\n').filter(Boolean).map((l) => JSON.parse(l)))) {
      console.log(`  ✓ ${what} after ${Date.now() - t0} ms`);
      return true;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  console.log(`  ✗ ${what}: not within ${timeoutMs} ms`);
  return false;
}

/** Polls until `where` matches `n` rows (the consumer batches for a moment); returns them. */
async function waitRows(what, where, n, timeoutMs = 60_000) {
  const t0 = Date.now();
  let got = [];
  while (Date.now() - t0 < timeoutMs) {
    got = await rows(where);
    if (got.length >= n) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  // A moment more: more rows than expected (duplicates) would show up now.
  await new Promise((r) => setTimeout(r, 500));
  got = await rows(where);
  assert.equal(got.length, n, `${what}: expected ${n} rows, found ${got.length}`);
  console.log(`  ✓ ${what}: ${n} rows in ClickHouse after ${Date.now() - t0} ms`);
  return got;
}

const eventIs = (name) => `event = '${name}'`;

// ── the pages ─────────────────────────────────────────────────────────────────────────────────

const files = {
  '/sdk/cairn.min.js': join(pkg, 'dist/cairn.min.js'),
  '/posthog/array.full.js': join(pkg, 'node_modules/posthog-js/dist/array.full.js'),
};
const page = (script) =>
  `<!doctype html><html><head><title>Cairn SDK e2e</title><script src="${script}"></script></head><body><h1>shop</h1></body></html>`;

const server = createServer(async (req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  try {
    if (files[path]) {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      res.end(await readFile(files[path]));
    } else if (path.startsWith('/posthog-page')) {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(page('/posthog/array.full.js'));
    } else {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(page('/sdk/cairn.min.js'));
    }
  } catch (e) {
    res.writeHead(500);
    res.end(String(e));
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const SITE = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

/** A fresh browser profile (own localStorage) with the SDK initialised on a page of SITE. */
async function openSdk(path = '/shop', options = {}) {
  const context = await browser.newContext();
  const p = await context.newPage();
  p.on('pageerror', (e) => console.error('  page error:', e.message));
  await p.goto(`${SITE}${path}`);
  await initSdk(p, options);
  return { context, page: p };
}

async function initSdk(p, options = {}) {
  await p.evaluate(
    ([key, host, opts]) => window.cairn.init(key, { host, flushInterval: 200, ...opts }),
    [KEY, CAPTURE, options],
  );
}

const t0 = Date.now();
let failed = false;
async function scenario(name, fn) {
  const t = Date.now();
  console.log(`▸ ${name}`);
  try {
    await fn();
    console.log(`  (${Date.now() - t} ms)`);
  } catch (e) {
    failed = true;
    console.error(`  ✗ ${name}: ${e.stack ?? e}`);
  }
}

// ── scenarios ─────────────────────────────────────────────────────────────────────────────────

await scenario('capture, identify, alias and pageviews arrive intact', async () => {
  const { context, page: p } = await openSdk('/shop?from=e2e');
  const ev = `web_${RUN}_bought`;
  const anon = await p.evaluate(() => window.cairn.getDistinctId());
  const uuids = await p.evaluate((ev) => {
    const ids = [];
    window.cairn.register({ app: 'e2e-shop' });
    for (let i = 0; i < 20; i++) {
      ids.push(window.cairn.capture(ev, { i, price: i * 1.5, name: `Café ☕ ${i}`, nested: { ok: true, list: [1, 2] } }));
    }
    return ids;
  }, ev);
  await p.evaluate(() => {
    window.cairn.identify(`user-${Date.now()}`, { email: 'web@example.com' });
    window.cairn.alias('legacy-web-7');
    history.pushState({}, '', '/checkout');
    return window.cairn.flush();
  });
  const user = await p.evaluate(() => window.cairn.getDistinctId());
  await p.evaluate((ev) => window.cairn.capture(`${ev}_after`, {}), ev);
  assert.equal(await p.evaluate(() => window.cairn.flush()), true);

  const bought = await waitRows('20 captured events', eventIs(ev), 20);
  assert.deepEqual(bought.map((r) => r.uuid).sort(), [...uuids].sort(), 'uuids kept');
  for (const r of bought) {
    const i = r.properties.i;
    assert.equal(r.distinct_id, anon);
    assert.equal(r.properties.price, i * 1.5);
    assert.equal(r.properties.name, `Café ☕ ${i}`);
    assert.deepEqual(r.properties.nested, { ok: true, list: [1, 2] });
    assert.equal(r.properties.app, 'e2e-shop');
    assert.equal(r.properties.$lib, 'cairn-web');
    assert.equal(r.properties.$pathname, '/shop');
    assert.equal(r.properties.$device_id, anon);
    assert.ok(r.properties.$session_id);
    assert.ok(Math.abs(Date.parse(r.timestamp) - Date.now()) < 120_000, `timestamp ${r.timestamp} is about now`);
  }
  const [identify] = await waitRows('$identify', `event = '$identify' AND distinct_id = '${user}'`, 1);
  assert.equal(identify.properties.$anon_distinct_id, anon);
  assert.deepEqual(identify.properties.$set, { email: 'web@example.com' });
  const [alias] = await waitRows('$create_alias', `event = '$create_alias' AND distinct_id = '${user}'`, 1);
  assert.equal(alias.properties.alias, 'legacy-web-7');
  await waitRows('event after identify carries the user id', `${eventIs(`${ev}_after`)} AND distinct_id = '${user}'`, 1);
  const views = await waitRows('$pageview on load and on pushState', `event = '$pageview' AND JSONExtractString(properties, '$device_id') = '${anon}'`, 2);
  assert.deepEqual(views.map((v) => v.properties.$pathname).sort(), ['/checkout', '/shop']);
  await context.close();
});

await scenario('the anonymous id survives a reload', async () => {
  const { context, page: p } = await openSdk('/reload');
  const before = await p.evaluate(() => window.cairn.getDistinctId());
  await p.reload();
  await initSdk(p);
  const after = await p.evaluate(() => window.cairn.getDistinctId());
  assert.equal(after, before);
  await p.evaluate((ev) => (window.cairn.capture(ev), window.cairn.flush()), `web_${RUN}_reloaded`);
  const [r] = await waitRows('event after reload', eventIs(`web_${RUN}_reloaded`), 1);
  assert.equal(r.distinct_id, before);
  await context.close();
});

await scenario('events captured offline wait in localStorage and are sent by the next page load', async () => {
  const ev = `web_${RUN}_offline`;
  const { context, page: p } = await openSdk('/offline');
  await context.route(`${CAPTURE}/**`, (route) => route.abort('internetdisconnected'));
  await p.evaluate((ev) => {
    for (let i = 0; i < 10; i++) window.cairn.capture(ev, { i });
    return window.cairn.flush();
  }, ev);
  const queued = await p.evaluate((key) => JSON.parse(localStorage.getItem(`cairn_${key}_queue`) ?? '[]').length, KEY);
  assert.ok(queued >= 10, `the queue is persisted (${queued} events in localStorage)`);
  assert.equal((await rows(eventIs(ev))).length, 0, 'nothing arrived while offline');
  await context.unroute(`${CAPTURE}/**`);
  await p.reload(); // the page dies with its timers; the next load finds the queue
  await initSdk(p, { capturePageview: false });
  await waitRows('offline events after the reload', eventIs(ev), 10);
  await context.close();
});

await scenario('503 from capture is retried with the same event ids: every event exactly once', async () => {
  const ev = `web_${RUN}_retried`;
  const { context, page: p } = await openSdk('/retry', { retryBaseDelay: 100, capturePageview: false });
  const seen = [];
  const gzipped = [];
  let refused = 0;
  const isBatch = (url) => url.origin === CAPTURE && url.pathname === '/batch';
  await context.route(isBatch, async (route) => {
    // Bodies over 1 KB come gzipped (?compression=gzip-js).
    const raw = route.request().postDataBuffer() ?? Buffer.alloc(0);
    const gz = raw[0] === 0x1f && raw[1] === 0x8b;
    if (gz) gzipped.push(route.request().url());
    const body = gz ? gunzipSync(raw) : raw;
    seen.push(JSON.parse(body.toString('utf8')).batch.map((e) => e.uuid).join());
    if (refused < 2) {
      refused += 1;
      await route.fulfill({ status: 503, headers: { 'Retry-After': '0', 'Access-Control-Allow-Origin': '*' }, body: '{"error":"unavailable","message":"test"}' });
    } else {
      await route.continue();
    }
  });
  await p.evaluate((ev) => {
    for (let i = 0; i < 5; i++) window.cairn.capture(ev, { i });
    return window.cairn.flush();
  }, ev);
  await p.waitForFunction(() => window.cairn.queued === 0, null, { timeout: 30_000 });
  assert.ok(seen.length >= 3, `${seen.length} attempts`);
  assert.equal(new Set(seen.slice(0, 3)).size, 1, 'each attempt carried the same uuids');
  assert.ok(gzipped.length > 0 && gzipped.every((u) => u.endsWith('?compression=gzip-js')), 'Chromium gzipped the body');
  await waitRows('retried events, once each', eventIs(ev), 5);
  await context.close();
});

await scenario('leaving the page hands the queue to sendBeacon', async () => {
  const ev = `web_${RUN}_beacon`;
  const { context, page: p } = await openSdk('/leave', { flushInterval: 600_000, flushAt: 1000, capturePageview: false });
  await p.evaluate((ev) => {
    for (let i = 0; i < 7; i++) window.cairn.capture(ev, { i });
  }, ev);
  assert.equal(await p.evaluate(() => window.cairn.queued), 7);
  await p.goto('about:blank'); // pagehide
  await waitRows('events sent by the beacon', eventIs(ev), 7);
  await context.close();
});

await scenario("PostHog's posthog-js sends to Cairn unchanged", async () => {
  const ev = `posthog_js_${RUN}`;
  const context = await browser.newContext();
  const p = await context.newPage();
  await p.goto(`${SITE}/posthog-page`);
  await p.evaluate(
    ([key, host]) =>
      window.posthog.init(key, {
        api_host: host,
        autocapture: false,
        capture_pageview: true,
        disable_session_recording: true,
        disable_surveys: true,
        advanced_disable_flags: true,
        persistence: 'localStorage',
        request_batching: true,
        // posthog-js drops events from browsers driven by automation (navigator.webdriver), as
        // this one is; PostHog documents this switch for end-to-end tests.
        opt_out_useragent_filter: true,
      }),
    [KEY, CAPTURE],
  );
  const anon = await p.evaluate(() => window.posthog.get_distinct_id());
  await p.evaluate((ev) => {
    for (let i = 0; i < 5; i++) window.posthog.capture(ev, { i, plan: 'pro' });
    window.posthog.identify('posthog-user-1', { email: 'ph@example.com' });
  }, ev);
  const got = await waitRows('posthog-js events', eventIs(ev), 5);
  for (const r of got) {
    assert.equal(r.distinct_id, anon);
    assert.equal(r.properties.plan, 'pro');
    assert.equal(r.properties.$lib, 'web');
  }
  const [identify] = await waitRows('posthog-js $identify', `event = '$identify' AND distinct_id = 'posthog-user-1'`, 1);
  assert.equal(identify.properties.$anon_distinct_id, anon);
  await waitRows('posthog-js $pageview', `event = '$pageview' AND distinct_id = '${anon}'`, 1);
  // identify then alias: the anonymous id, the user id and the alias are one person (the user's):
  // Cairn's persons pipeline moves the other two to it.
  await p.evaluate(() => window.posthog.alias('posthog-alias-1'));
  await waitRows('posthog-js $create_alias', `event = '$create_alias' AND distinct_id = 'posthog-user-1'`, 1);
  const moved = await waitSql(
    'the anonymous id and the alias joined the user',
    `SELECT count() AS n FROM (SELECT id_hash, argMax(person_id, version) AS p FROM person_overrides WHERE project_id = ${PROJECT}
       AND id_hash IN (cityHash64('${anon}'), cityHash64('posthog-alias-1')) GROUP BY id_hash) WHERE p = cityHash64('posthog-user-1')`,
    (r) => Number(r[0]?.n) === 2,
  );
  assert.ok(moved);
  await context.close();
});

await browser.close();
server.close();
console.log(`web SDK e2e: ${failed ? 'FAILED' : 'passed'} in ${Date.now() - t0} ms`);
process.exit(failed ? 1 : 0);
