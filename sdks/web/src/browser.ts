// The <script> build: defines `window.cairn` (the default instance) and `window.Cairn` (the
// class). Calls made before the script loaded, through the snippet's stub
// (`window.cairn = window.cairn || []; cairn.push(['init', key, options])`), are replayed in order.

import { Cairn } from './client';

const g = globalThis as unknown as { cairn?: unknown; Cairn?: typeof Cairn };
const pending = Array.isArray(g.cairn) ? (g.cairn as unknown[][]) : [];
const instance = new Cairn();
g.cairn = instance;
g.Cairn = Cairn;
for (const call of pending) {
  const [method, ...args] = call;
  const fn = typeof method === 'string' ? (instance as unknown as Record<string, unknown>)[method] : undefined;
  if (typeof fn === 'function') (fn as (...a: unknown[]) => unknown).apply(instance, args);
}
