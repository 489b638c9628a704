import { vi } from 'vitest';
import type { CaptureEvent } from '../src/types';

export interface Sent {
  url: string;
  body: { api_key: string; sent_at: string; batch: CaptureEvent[] };
  init: RequestInit;
}

/** A fetch that records each request and answers from a script (the last answer repeats). */
export function scriptedFetch(answers: (() => Response | Promise<Response>)[]) {
  const sent: Sent[] = [];
  const fn = vi.fn(async (url: string, init: RequestInit) => {
    sent.push({ url, body: JSON.parse(String(init.body)), init });
    const answer = answers[Math.min(sent.length - 1, answers.length - 1)];
    if (!answer) throw new Error('no scripted answer');
    return answer();
  });
  vi.stubGlobal('fetch', fn);
  return { sent, fn };
}

export const ok = () => new Response('{"status":1,"accepted":1}', { status: 200 });
export const status = (code: number, body: unknown = {}, headers: Record<string, string> = {}) => () =>
  new Response(JSON.stringify(body), { status: code, headers });
export const networkError = () => Promise.reject(new TypeError('Failed to fetch'));

export const names = (s: Sent) => s.body.batch.map((e) => e.event);
