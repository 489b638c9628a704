import { render, screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { RetentionResponse } from '../src/api/types';
import { RetentionTable, shade } from '../src/components/charts/RetentionTable';

const result: RetentionResponse = {
  timezone: 'Europe/Berlin',
  period: 'week',
  retention_type: 'first_time',
  cohorts: [
    { date: '2026-11-09T00:00:00+01:00', size: 120, values: [120, 54, 41] },
    { date: '2026-11-16T00:00:00+01:00', size: 0, values: [0, 0] },
    { date: '2026-11-23T00:00:00+01:00', size: 77, values: [77] },
  ],
};

describe('RetentionTable', () => {
  it('shows each cohort’s size and the share that came back each period', () => {
    render(<RetentionTable result={result} />);
    const table = screen.getByRole('table', { name: 'Retention by cohort' });
    expect(within(table).getAllByRole('columnheader').map((h) => h.textContent)).toEqual(['Cohort', 'Users', 'Week 0', 'Week 1', 'Week 2']);
    const rows = within(table).getAllByRole('row').slice(1);
    expect(within(rows[0]!).getByRole('rowheader')).toHaveTextContent('Nov 9');
    const first = within(rows[0]!).getAllByRole('cell');
    expect(first.map((c) => c.textContent)).toEqual(['120', '100%120', '45%54', '34.2%41']);
    expect(first[2]).toHaveAttribute('data-ratio', String(54 / 120));
    expect(first[2]).toHaveAttribute('title', '54 of 120 users');
    // An empty cohort has no percentages; a young cohort has no later periods yet.
    expect(within(rows[1]!).getAllByRole('cell').map((c) => c.textContent)).toEqual(['0', '—0', '—0', '']);
    const last = within(rows[2]!).getAllByRole('cell');
    expect(last[2]).toHaveClass('retention-future');
    expect(last[3]).toHaveClass('retention-future');
  });

  it('shades cells darker for larger shares', () => {
    render(<RetentionTable result={result} />);
    const cells = screen.getAllByRole('cell').filter((c) => c.hasAttribute('data-ratio'));
    const alpha = (el: HTMLElement) => Number(/rgba\(37, 99, 235, ([\d.]+)\)/.exec(el.style.background)?.[1]);
    const [full, half, third] = [cells[0]!, cells[1]!, cells[2]!];
    expect(alpha(full)).toBeCloseTo(0.95);
    expect(alpha(half)).toBeGreaterThan(alpha(third));
    expect(alpha(full)).toBeGreaterThan(alpha(half));
    // Dark cells get light text.
    expect(full).toHaveClass('retention-dark');
    expect(half).not.toHaveClass('retention-dark');
  });

  it('leaves zero unshaded', () => {
    expect(shade(0)).toBe('transparent');
    expect(shade(NaN)).toBe('transparent');
    expect(shade(2)).toBe('rgba(37, 99, 235, 0.950)');
  });
});
