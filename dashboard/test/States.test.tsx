import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { ApiError } from '../src/api/client';
import { describeError, Empty, ErrorState, Loading } from '../src/components/States';
import { Results } from '../src/components/Results';
import type { UseQueryResult } from '@tanstack/react-query';

const q = (over: Partial<UseQueryResult<number>>) => ({ data: undefined, error: null, isFetching: false, refetch: vi.fn(), ...over }) as unknown as UseQueryResult<number>;

describe('states', () => {
  it('an error shows the server’s message, and for a 400 the field', async () => {
    const onRetry = vi.fn();
    render(<ErrorState error={new ApiError(400, { error: 'invalid_request', message: 'date_from must come before date_to', field: 'date_from' })} onRetry={onRetry} />);
    const alert = screen.getByRole('alert');
    expect(alert).toHaveTextContent('The query was refused');
    expect(alert).toHaveTextContent('date_from must come before date_to');
    expect(alert.querySelector('code')).toHaveTextContent('date_from');
    await userEvent.click(screen.getByRole('button', { name: 'Retry' }));
    expect(onRetry).toHaveBeenCalledTimes(1);
  });

  it('names the kinds of failure', () => {
    expect(describeError(new ApiError(404, { error: 'not_found', message: 'no such project' }))).toEqual({ title: 'Not found, or no access', message: 'no such project' });
    expect(describeError(new ApiError(504, { error: 'timeout', message: 'ran past 30 s' })).title).toBe('The query took too long');
    expect(describeError(new ApiError(0, { error: 'network', message: 'offline' })).title).toBe('Cannot reach Cairn');
    expect(describeError(new ApiError(500, {})).message).toBe('Request failed (HTTP 500)');
    // Only a 400 names a field.
    expect(describeError(new ApiError(403, { error: 'forbidden', message: 'no', field: 'x' })).field).toBeUndefined();
  });

  it('loading and empty', () => {
    render(
      <>
        <Loading label="Running…" />
        <Empty title="No events">Try a longer range.</Empty>
      </>,
    );
    expect(screen.getByRole('status')).toHaveTextContent('Running…');
    expect(screen.getByTestId('empty-state')).toHaveTextContent('No eventsTry a longer range.');
  });

  it('Results: loading, then the error, then the data (kept, marked busy, while a new query runs)', () => {
    const child = (n: number) => <p>value {n}</p>;
    const { rerender, container } = render(<Results query={q({ isFetching: true })}>{child}</Results>);
    expect(screen.getByRole('status')).toHaveTextContent('Running the query…');
    expect(container.querySelector('section')).toHaveAttribute('aria-busy', 'true');

    rerender(<Results query={q({ error: new ApiError(400, { error: 'invalid_request', message: 'bad math', field: 'series[0].math' }) })}>{child}</Results>);
    expect(screen.getByRole('alert')).toHaveTextContent('bad math');

    rerender(<Results query={q({ data: 7, isFetching: true })}>{child}</Results>);
    expect(screen.getByText('value 7')).toBeInTheDocument();
    expect(container.querySelector('section')).toHaveClass('results-stale');
    expect(container.querySelector('section')).toHaveAttribute('aria-busy', 'true');
  });
});
