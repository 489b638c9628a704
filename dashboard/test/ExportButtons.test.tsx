import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExportButtons } from '../src/components/ExportButtons';
import { renderAt, stubFetch } from './helpers';

afterEach(() => vi.unstubAllGlobals());

describe('export buttons', () => {
  it('stream the file, count its rows against the announced total, and hand it to the browser', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const { calls } = stubFetch(async () => {
      const enc = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        async start(c) {
          c.enqueue(enc.encode('uuid,event\r\n1,a\r\n'));
          await gate;
          c.enqueue(enc.encode('2,b\r\n3,c\r\n'));
          c.close();
        },
      });
      return new Response(body, {
        status: 200,
        headers: { 'Content-Type': 'text/csv', 'Content-Disposition': 'attachment; filename="events-3.csv"', 'X-Cairn-Export-Rows': '3', 'X-Cairn-Export-Truncated': 'false' },
      });
    });
    const saved: string[] = [];
    vi.stubGlobal('URL', Object.assign(URL, { createObjectURL: () => 'blob:x', revokeObjectURL: () => undefined }));
    const click = vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(function (this: HTMLAnchorElement) {
      saved.push(this.download);
    });
    const user = userEvent.setup();
    renderAt(<ExportButtons path="/api/v1/projects/3/exports/events" query={{ event: 'a' }} />);
    await user.click(screen.getByRole('button', { name: 'CSV' }));
    await waitFor(() => expect(screen.getByTestId('export-progress')).toHaveTextContent('1 of 3 rows'));
    release();
    await waitFor(() => expect(saved).toEqual(['events-3.csv']));
    expect(screen.getByRole('status')).toHaveTextContent('Downloaded.');
    expect(calls[0]?.search.get('format')).toBe('csv');
    expect(calls[0]?.search.get('event')).toBe('a');
    click.mockRestore();
  });

  it('shows the API refusal', async () => {
    stubFetch(async () => new Response(JSON.stringify({ error: 'invalid_request', message: 'csv or json', field: 'format' }), { status: 400 }));
    const user = userEvent.setup();
    renderAt(<ExportButtons path="/api/v1/projects/3/exports/events" />);
    await user.click(screen.getByRole('button', { name: 'JSON' }));
    await waitFor(() => expect(screen.getByRole('status')).toHaveTextContent('csv or json'));
  });
});
