import type { ReactElement, ReactNode } from 'react';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { render } from '@testing-library/react';
import { createMemoryRouter, RouterProvider } from 'react-router';
import { vi } from 'vitest';
import type { Project } from '../src/api/types';
import { ProjectContext } from '../src/project';

export const PROJECT: Project = { id: 3, organization_id: 1, name: 'Shop', timezone: 'UTC', created_at: '2026-11-01T00:00:00Z' };

export function json(status: number, body?: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
  });
}

export interface Call {
  method: string;
  url: string;
  path: string;
  search: URLSearchParams;
  body: unknown;
  auth: string | null;
}

type Handler = (call: Call) => Response | undefined | Promise<Response | undefined>;

/** Stubs fetch: each call goes to `handler` (undefined → 404); every call is recorded. */
export function stubFetch(handler: Handler) {
  const calls: Call[] = [];
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    const u = new URL(url, 'http://localhost');
    const headers = new Headers(init?.headers);
    const call: Call = {
      method: init?.method ?? 'GET',
      url,
      path: u.pathname,
      search: u.searchParams,
      body: typeof init?.body === 'string' ? JSON.parse(init.body) : undefined,
      auth: headers.get('Authorization'),
    };
    calls.push(call);
    return (await handler(call)) ?? json(404, { error: 'not_found', message: `no stub for ${call.method} ${call.path}` });
  });
  vi.stubGlobal('fetch', fn);
  return { calls, fn };
}

export function testQueryClient() {
  return new QueryClient({ defaultOptions: { queries: { retry: false, gcTime: Infinity }, mutations: { retry: false } } });
}

/** Renders `ui` inside a memory router at `url`, a query client and the test project. */
export function renderAt(ui: ReactElement, { url = '/', path = '*', project = PROJECT }: { url?: string; path?: string; project?: Project } = {}) {
  const queryClient = testQueryClient();
  const wrap = (node: ReactNode) => (
    <QueryClientProvider client={queryClient}>
      <ProjectContext.Provider value={project}>{node}</ProjectContext.Provider>
    </QueryClientProvider>
  );
  const router = createMemoryRouter([{ path, element: wrap(ui) }], { initialEntries: [url] });
  const utils = render(<RouterProvider router={router} />);
  return { ...utils, router, queryClient };
}
