// The dashboard end to end in a real Chromium (Debian's, driven by playwright-core), against the
// real services: query serving dashboard/dist at / with auth behind it, and seeded events.
// e2e/tests/dashboard.rs in the repository starts them, signs up a user, seeds the events and
// runs this script; it defines the seeded data:
//   $pageview: 120 events by 40 users in the last 5 days, $browser Chrome on 80 and Firefox on 40;
//   signed_up by 30 users → activated by 18 of them → purchased by 9 of those.
//
// Environment: CAIRN_DASHBOARD_URL, CAIRN_E2E_EMAIL, CAIRN_E2E_PASSWORD, CAIRN_PROJECT_ID,
// CAIRN_E2E_SCREENSHOTS (a directory; created), CAIRN_CHROMIUM (default /usr/bin/chromium).
// Prints each step with its timing; on the first failure takes a screenshot, prints what the
// page logged, and exits 1.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') {
    console.error(`${name} is not set (see the header of e2e/dashboard.mjs)`);
    process.exit(2);
  }
  return v;
};
const BASE = env('CAIRN_DASHBOARD_URL').replace(/\/+$/, '');
const EMAIL = env('CAIRN_E2E_EMAIL');
const PASSWORD = env('CAIRN_E2E_PASSWORD');
const PROJECT = Number(env('CAIRN_PROJECT_ID'));
const SHOTS = env('CAIRN_E2E_SCREENSHOTS', 'e2e/screenshots');
const CHROMIUM = env('CAIRN_CHROMIUM', '/usr/bin/chromium');
const WAIT_MS = Number(process.env.CAIRN_E2E_WAIT_MS ?? 15_000);

mkdirSync(SHOTS, { recursive: true });

const t0 = Date.now();
let shotNo = 0;
const logs = [];

let browser;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
} catch (e) {
  console.error(`could not start Chromium at ${CHROMIUM} (set CAIRN_CHROMIUM): ${e.message}`);
  process.exit(1);
}
const context = await browser.newContext({ viewport: { width: 1440, height: 960 } });
const page = await context.newPage();
page.setDefaultTimeout(WAIT_MS);
page.on('console', (m) => {
  if (m.type() === 'error' || m.type() === 'warning') logs.push(`console.${m.type()}: ${m.text()}`);
});
page.on('pageerror', (e) => logs.push(`page error: ${e.message}`));
page.on('response', (r) => {
  if (r.url().includes('/api/') && r.status() >= 400) logs.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
});

async function shot(name) {
  shotNo += 1;
  const file = join(SHOTS, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

class Failure extends Error {}

/** Polls `read` until `ok(value)`; fails with `what` and the last value read. */
async function until(what, read, ok, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastErr;
  while (Date.now() < deadline) {
    try {
      last = await read();
      lastErr = undefined;
      if (ok(last)) return last;
    } catch (e) {
      lastErr = e;
    }
    await page.waitForTimeout(150);
  }
  throw new Failure(`${what}: timed out after ${timeoutMs} ms; last seen ${JSON.stringify(last)}${lastErr ? ` (${lastErr.message.split('\n')[0]})` : ''}`);
}

const textOf = async (locator) => ((await locator.count()) ? ((await locator.first().textContent()) ?? '').trim() : null);
const textsOf = async (locator) => (await locator.allTextContents()).map((s) => s.trim());
const expectText = (what, locator, expected) => until(what, () => textOf(locator), (v) => v === expected);
const expectTexts = (what, locator, expected) =>
  until(what, () => textsOf(locator), (v) => v.length === expected.length && v.every((x, i) => x === expected[i]));

/** Waits until the results area is no longer running a query. */
const settled = () => until('the results to finish loading', () => page.locator('section.results').first().getAttribute('aria-busy'), (v) => v === 'false');

/** Types into a labelled suggestion field and commits it with Enter. */
async function pick(label, value) {
  const input = page.getByLabel(label, { exact: true });
  await input.fill(value);
  await input.press('Enter');
}

const trendRow = (series, breakdown) =>
  page.locator(`table[aria-label="Trend results"] tbody tr[data-series="${series}"]${breakdown === undefined ? '' : `[data-breakdown="${breakdown}"]`}`);
const trendTotal = (series, breakdown) => trendRow(series, breakdown).locator('[data-testid="trend-total"]');
const nav = (name) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });

let dashboardHref = null;
const steps = [];
function step(name, fn) {
  steps.push({ name, fn });
}

// ── the steps ──────────────────────────────────────────────────────────────────────────────

step('log in through the UI', async () => {
  await page.goto(`${BASE}/`);
  await page.waitForURL(/\/login/);
  await page.getByLabel('Email').fill(EMAIL);
  await page.getByLabel('Password').fill(PASSWORD);
  await shot('login');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Choose a project' }).or(page.getByRole('navigation', { name: 'Main' })).first().waitFor();
});

step(`pick project ${PROJECT}`, async () => {
  const link = page.locator(`a[data-project-id="${PROJECT}"]`);
  if (await link.count()) {
    await shot('projects');
    await link.click();
  }
  await page.waitForURL(new RegExp(`/project/${PROJECT}/trends`));
  await page.getByRole('heading', { name: 'Trends' }).waitFor();
});

step('trend of $pageview (total), last 7 days: total 120', async () => {
  await pick('Series A event', '$pageview');
  await page.getByLabel('Series A math', { exact: true }).selectOption('total');
  await page.getByLabel('Date range', { exact: true }).selectOption('-7d');
  await page.getByLabel('Interval', { exact: true }).selectOption('day');
  await settled();
  await expectText('the total of series A', trendTotal('A'), '120');
  await shot('trend-total');
});

step('math: unique users: 40 over the range', async () => {
  await page.getByLabel('Series A math', { exact: true }).selectOption('unique_users');
  await until('series A to show unique users', () => textOf(trendRow('A').locator('th')), (v) => v?.includes('Unique users'));
  await settled();
  // The Total column is the value over the whole range: the 40 visitors, each counted once,
  // although each came on three different days (the daily cells add up to 120).
  await expectText('unique users over the range', trendTotal('A'), '40');
  const cells = (await textsOf(trendRow('A').locator('td.num:not(.total-cell)'))).map(Number);
  const sum = cells.reduce((a, b) => a + b, 0);
  if (cells.some((v) => v > 40) || sum !== 120) throw new Failure(`unique users per day: ${cells} (sum ${sum}, want 120)`);
  console.log(`    unique users per day ${cells.filter((v) => v > 0).join(' ')}; over the range 40`);
  await shot('trend-unique-users');
});

step('breakdown by $browser: Chrome 80, Firefox 40', async () => {
  await page.getByLabel('Series A math', { exact: true }).selectOption('total');
  await expectText('the total back at 120', trendTotal('A'), '120');
  await pick('Breakdown by property', '$browser');
  await settled();
  await expectText('Chrome', trendTotal('A', 'Chrome'), '80');
  await expectText('Firefox', trendTotal('A', 'Firefox'), '40');
  await shot('trend-breakdown');
});

step('reload: the query comes back from the URL', async () => {
  const before = new URL(page.url()).searchParams.get('q');
  await page.reload();
  await page.getByRole('heading', { name: 'Trends' }).waitFor();
  const q = JSON.parse(new URL(page.url()).searchParams.get('q'));
  if (JSON.stringify(q) !== before || q.breakdown?.property !== '$browser' || q.series?.[0]?.event !== '$pageview') {
    throw new Failure(`the URL's query changed on reload: ${before} → ${JSON.stringify(q)}`);
  }
  await until('the breakdown field restored', () => page.getByLabel('Breakdown by property', { exact: true }).inputValue(), (v) => v === '$browser');
  await expectText('Chrome after reload', trendTotal('A', 'Chrome'), '80');
  await expectText('Firefox after reload', trendTotal('A', 'Firefox'), '40');
});

step('back and forward step through the edits', async () => {
  await page.goBack();
  await expectText('the total before the breakdown', trendTotal('A'), '120');
  await page.goForward();
  await expectText('Chrome again', trendTotal('A', 'Chrome'), '80');
});

step('funnel signed_up → activated → purchased: 30 / 18 / 9', async () => {
  await nav('Funnels').click();
  await page.getByRole('heading', { name: 'Funnels' }).waitFor();
  await pick('Step 1 event', 'signed_up');
  await pick('Step 2 event', 'activated');
  await page.getByRole('button', { name: '+ Add step' }).click();
  await pick('Step 3 event', 'purchased');
  await settled();
  await expectTexts('users per step', page.getByTestId('funnel-count'), ['30', '18', '9']);
  await expectTexts('% of the first step', page.getByTestId('funnel-conversion'), ['100%', '60%', '30%']);
  await expectTexts('% of the previous step', page.getByTestId('funnel-step-conversion'), ['60%', '50%']);
  await expectTexts('drop-off', page.getByTestId('funnel-dropoff'), ['12 (40%)', '9 (50%)']);
  await expectText('overall conversion', page.getByTestId('funnel-overall'), '30%');
  await shot('funnel');
});

step('retention: the cohort table has nonzero cells', async () => {
  await nav('Retention').click();
  await page.getByRole('heading', { name: 'Retention' }).waitFor();
  await settled();
  const table = page.getByRole('table', { name: 'Retention by cohort' });
  await table.waitFor();
  const nonzero = await until(
    'nonzero retention cells',
    () => table.locator('td.retention-cell[data-ratio]').evaluateAll((tds) => tds.filter((td) => Number(td.getAttribute('data-ratio')) > 0).length),
    (n) => n > 0,
  );
  console.log(`    ${nonzero} nonzero cells`);
  await shot('retention');
});

step('stickiness: the 40 $pageview users by days active', async () => {
  await nav('Stickiness').click();
  await page.getByRole('heading', { name: 'Stickiness' }).waitFor();
  await settled();
  const row = page.getByRole('table', { name: 'Stickiness' }).getByRole('row').nth(1);
  await until('persons in the stickiness table', () => textOf(row.getByRole('cell').first()), (v) => v === '40');
  await shot('stickiness');
});

step('SQL: $pageviews by browser, refused ways out', async () => {
  await nav('SQL').click();
  await page.getByRole('heading', { name: 'SQL' }).waitFor();
  const text = page.getByRole('textbox');
  await text.fill("SELECT JSONExtractString(properties, '$browser') AS browser, count() AS n FROM events WHERE event = '$pageview' GROUP BY browser ORDER BY browser");
  await page.getByRole('button', { name: /Run/ }).click();
  const table = page.getByRole('table', { name: 'Query result' });
  await until('the rows', () => textOf(table.locator('tbody')), (v) => v?.includes('Chrome80') && v?.includes('Firefox40'));
  await page.getByRole('button', { name: 'Chart' }).click();
  await page.getByRole('img', { name: /Bar chart of n by browser/ }).waitFor();
  await shot('sql');
  await text.fill('SELECT * FROM system.tables');
  await page.getByRole('button', { name: /Run/ }).click();
  await until('the refusal', () => textOf(page.getByRole('alert')), (v) => v?.includes('is not a table here'));
});

step('events: recent $pageview rows, properties expand', async () => {
  await nav('Events').click();
  await page.getByRole('heading', { name: 'Events' }).waitFor();
  const rows = page.locator('table[aria-label="Recent events"] tr.event-row[data-event="$pageview"]');
  await until('$pageview rows', () => rows.count(), (n) => n > 0);
  await rows.first().getByRole('button').click();
  await until('the expanded properties', () => textOf(page.locator('tr.event-details')), (v) => v?.includes('$browser'));
  await shot('events');
});

step('save the trend onto a new dashboard "E2E dashboard"', async () => {
  await nav('Trends').click();
  await page.getByRole('heading', { name: 'Trends' }).waitFor();
  await pick('Series A event', '$pageview');
  await page.getByLabel('Series A math', { exact: true }).selectOption('total');
  await page.getByLabel('Date range', { exact: true }).selectOption('-7d');
  await settled();
  await expectText('the total to save', trendTotal('A'), '120');
  await page.getByRole('button', { name: 'Save…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('E2E pageviews');
  await dialog.getByLabel('A new dashboard').check();
  await dialog.getByLabel("New dashboard's name").fill('E2E dashboard');
  await shot('save-insight');
  await dialog.getByRole('button', { name: 'Save', exact: true }).click();
  await page.getByText('Saved “E2E pageviews”').waitFor();
  await until('the insight id in the URL', () => new URL(page.url()).searchParams.get('insight'), (v) => /^\d+$/.test(v ?? ''));
  // The new dashboard's address (a rerun against the same database finds older "E2E dashboard"s).
  dashboardHref = await page.getByRole('link', { name: 'Open dashboard “E2E dashboard”' }).getAttribute('href');
  if (!/\/dashboards\/\d+$/.test(dashboardHref ?? '')) throw new Failure(`no link to the new dashboard (${dashboardHref})`);
});

step('dashboards: open "E2E dashboard", the tile shows 120', async () => {
  await nav('Dashboards').click();
  await page.getByRole('heading', { name: 'Dashboards' }).waitFor();
  await page.locator(`a[href="${dashboardHref}"]`, { hasText: 'E2E dashboard' }).click();
  await page.getByRole('heading', { name: 'E2E dashboard' }).waitFor();
  const tile = page.getByTestId('tile').filter({ hasText: 'E2E pageviews' });
  await expectText('the tile total', tile.getByTestId('tile-total'), '120');
  await shot('dashboard');
  // Opened again (a fresh load), the tile is still there with its live result.
  await page.reload();
  await expectText('the tile total after reopening', page.getByTestId('tile').filter({ hasText: 'E2E pageviews' }).getByTestId('tile-total'), '120');
});

step('settings: create a write key (shown once), then revoke it', async () => {
  await nav('Settings').click();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  const name = `e2e key ${Date.now().toString(36)}`;
  await page.getByLabel("New write key's name").fill(name);
  await page.getByRole('button', { name: 'Create write key' }).click();
  const key = await until('the revealed key', () => textOf(page.getByTestId('revealed-key')), (v) => /^phc_\w+$/.test(v ?? ''));
  await shot('write-key-created');
  await page.getByRole('button', { name: 'Done' }).click();
  await until('the key hidden again', () => page.getByTestId('revealed-key').count(), (n) => n === 0);
  if ((await page.content()).includes(key)) throw new Failure('the full key is still on the page after Done');
  const row = page.getByRole('table', { name: 'Write keys' }).getByRole('row').filter({ hasText: name });
  await expectText('the new key active', row.locator('td').nth(3), 'Active');
  await row.getByRole('button', { name: 'Revoke' }).click();
  const confirm = page.getByRole('alertdialog', { name: 'Revoke write key' });
  await confirm.getByRole('button', { name: 'Revoke' }).click();
  await until('the key revoked', () => textOf(row.locator('td').nth(3)), (v) => v?.startsWith('Revoked'));
  await shot('write-key-revoked');
});

step('API docs: /api/docs renders the three documents; an operation opens with its request body', async () => {
  const before = logs.length;
  await page.goto(`${BASE}/api/docs`);
  await expectText('the query document', page.locator('main h1'), 'Cairn query API (' + ((await (await fetch(`${BASE}/api/openapi/query.json`)).json()).info.version) + ')');
  const trends = page.locator('details').filter({ has: page.locator('.path', { hasText: /^\/api\/v1\/projects\/\{project_id\}\/query\/trends$/ }) });
  await trends.locator('summary').click();
  await until('the trends request body', () => textOf(trends.locator('pre')), (t) => (t ?? '').includes('series') && (t ?? '').includes('breakdown'));
  await shot('api-docs-query');
  await page.getByRole('button', { name: 'Accounts and keys' }).click();
  await until('the auth document', () => textOf(page.locator('main h1')), (t) => (t ?? '').startsWith('Cairn auth API'));
  await page.getByRole('button', { name: 'Capture' }).click();
  await until('capture\'s /batch', () => page.locator('.path', { hasText: /^\/batch$/ }).count(), (n) => n > 0);
  const logged = logs.slice(before);
  if (logged.length) throw new Failure(`the docs page logged: ${logged.join(' | ')}`);
});

// ── run ────────────────────────────────────────────────────────────────────────────────────

console.log(`dashboard e2e against ${BASE} (project ${PROJECT}), screenshots in ${SHOTS}`);
let failed = false;
for (const [i, s] of steps.entries()) {
  const started = Date.now();
  try {
    await s.fn();
    console.log(`  ✓ ${i + 1}. ${s.name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed = true;
    console.log(`  ✗ ${i + 1}. ${s.name} (${Date.now() - started} ms)`);
    console.log(`    FAILED: ${e instanceof Failure ? e.message : e.stack ?? e}`);
    console.log(`    at ${page.url()}`);
    try {
      console.log(`    screenshot: ${await shot(`FAILED-${s.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}`)}`);
    } catch (se) {
      console.log(`    (no screenshot: ${se.message})`);
    }
    if (logs.length) console.log(`    the page logged:\n      ${logs.slice(-20).join('\n      ')}`);
    break;
  }
}
await browser.close();
const total = Date.now() - t0;
if (failed) {
  console.log(`dashboard e2e FAILED after ${total} ms`);
  process.exit(1);
}
console.log(`dashboard e2e passed in ${total} ms`);
console.log(`e2e: ${steps.length} passed, 0 failed`);
