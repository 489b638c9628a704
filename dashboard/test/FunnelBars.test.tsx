import { render, screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { FunnelsResponse, StepResult } from '../src/api/types';
import { dropOff, FunnelBars, FunnelBreakdownTable } from '../src/components/charts/FunnelBars';

const step = (index: number, name: string, count: number, first: number, prev: number, median: number | null): StepResult => ({
  index,
  name,
  count,
  conversion_rate: first ? count / first : 0,
  step_conversion_rate: index === 0 ? 1 : prev ? count / prev : 0,
  median_time_to_convert_seconds: median,
  average_time_to_convert_seconds: median,
});

const steps = [step(0, 'signed_up', 30, 30, 30, null), step(1, 'activated', 18, 30, 30, 600), step(2, 'purchased', 9, 30, 18, 5430)];

const texts = (id: string) => screen.getAllByTestId(id).map((e) => e.textContent);

describe('FunnelBars', () => {
  it('shows each step’s users, % of the first and of the previous step, drop-off and median time', () => {
    render(<FunnelBars steps={steps} />);
    expect(screen.getAllByTestId('funnel-step')).toHaveLength(3);
    expect(texts('funnel-count')).toEqual(['30', '18', '9']);
    expect(texts('funnel-conversion')).toEqual(['100%', '60%', '30%']);
    expect(texts('funnel-step-conversion')).toEqual(['60%', '50%']);
    expect(texts('funnel-dropoff')).toEqual(['12 (40%)', '9 (50%)']);
    expect(texts('funnel-median')).toEqual(['10m', '1h 30m']);
    expect(screen.getByTestId('funnel-overall')).toHaveTextContent('30%');
  });

  it('sizes the bars by the share of the first step', () => {
    render(<FunnelBars steps={steps} />);
    const meters = screen.getAllByRole('meter');
    expect(meters.map((m) => m.getAttribute('aria-valuenow'))).toEqual(['100', '60', '30']);
    const fills = meters.map((m) => (m.querySelector('.funnel-bar-fill') as HTMLElement).style.width);
    expect(fills).toEqual(['100%', '60%', '30%']);
    // The drop-off band is what the previous step had more.
    expect((meters[2]!.querySelector('.funnel-bar-drop') as HTMLElement).style.width).toBe('30%');
  });

  it('handles a step nobody reached', () => {
    const none = [step(0, 'a', 0, 0, 0, null), step(1, 'b', 0, 0, 0, null)];
    expect(dropOff(none, 1)).toEqual({ count: 0, rate: 0 });
    render(<FunnelBars steps={none} />);
    expect(texts('funnel-conversion')).toEqual(['0%', '0%']);
    expect(texts('funnel-median')).toEqual(['—']);
  });

  it('tables a breakdown: per value, each step’s users and conversion', () => {
    const result: FunnelsResponse = {
      timezone: 'UTC',
      date_from: '',
      date_to: '',
      order: 'ordered',
      conversion_window_seconds: 86400,
      steps,
      breakdown: [
        { breakdown_value: 'Chrome', steps: [step(0, 'signed_up', 20, 20, 20, null), step(1, 'activated', 15, 20, 20, 1), step(2, 'purchased', 5, 20, 15, 1)] },
        { breakdown_value: '$none', steps: [step(0, 'signed_up', 10, 10, 10, null), step(1, 'activated', 3, 10, 10, 1), step(2, 'purchased', 4, 10, 3, 1)] },
      ],
    };
    render(<FunnelBreakdownTable result={result} property="$browser" />);
    const rows = within(screen.getByRole('table', { name: 'Funnel by breakdown' })).getAllByRole('row');
    expect(rows[0]).toHaveTextContent('$browser1. signed_up2. activated3. purchased');
    expect(within(rows[1]!).getAllByRole('cell').map((c) => c.textContent)).toEqual(['20 (100%)', '15 (75%)', '5 (25%)']);
    expect(within(rows[2]!).getByRole('rowheader')).toHaveTextContent('(none)');
  });
});
