// Sends events with the web SDK from a real Chromium to a platform behind a Kubernetes Ingress.
// The page is served on loopback; the SDK's requests go to http://<ingress host>:<port>, which
// Chromium resolves to the node (--host-resolver-rules), as a DNS record would for a user.
//
//   node e2e/kubernetes/send-web.mjs
// Reads CAIRN_CAPTURE_URL (http://host:port), CAIRN_INGRESS_ADDR (ip:port the host name maps
// to), CAIRN_API_KEY, CAIRN_EVENT (event name), CAIRN_EVENTS (how many), CAIRN_CHROMIUM.
// Prints the number of events the SDK reported as delivered; exits non-zero on any SDK error.
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const web = join(here, '../../sdks/web');
const { chromium } = createRequire(join(web, 'package.json'))('playwright-core');

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set (see e2e/tests/kubernetes.rs)`);
  return v;
};
const CAPTURE = env('CAIRN_CAPTURE_URL');
const INGRESS = env('CAIRN_INGRESS_ADDR');
const KEY = env('CAIRN_API_KEY');
const EVENT = env('CAIRN_EVENT');
const N = Number(env('CAIRN_EVENTS', '20'));
const host = new URL(CAPTURE).hostname;

const sdk = await readFile(join(web, 'dist/cairn.min.js'));
const server = createServer((req, res) => {
  if (req.url === '/cairn.min.js') {
    res.writeHead(200, { 'Content-Type': 'text/javascript' });
    res.end(sdk);
  } else {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><html><head><script src="/cairn.min.js"></script></head><body>e2e</body></html>');
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));

const browser = await chromium.launch({
  executablePath: env('CAIRN_CHROMIUM', '/usr/bin/chromium'),
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--host-resolver-rules=MAP ${host} ${INGRESS.split(':')[0]}`,
  ],
});
let code = 0;
try {
  const page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const errors = await page.evaluate(
    async ([key, capture, event, n]) => {
      const errors = [];
      window.cairn.init(key, {
        host: capture,
        flushInterval: 100,
        capturePageview: false,
        onError: (e) => errors.push(String(e?.message ?? e)),
      });
      window.cairn.identify('web-user');
      for (let i = 0; i < n; i++) window.cairn.capture(event, { i, sdk: 'web' });
      if (!(await window.cairn.flush())) errors.push('flush reported undelivered events');
      return errors;
    },
    [KEY, CAPTURE, EVENT, N],
  );
  if (errors.length) {
    console.error('SDK errors:', errors.join('; '));
    code = 1;
  } else {
    console.log(`web SDK delivered ${N} ${EVENT} events to ${CAPTURE}`);
  }
} finally {
  await browser.close();
  server.close();
}
process.exit(code);
