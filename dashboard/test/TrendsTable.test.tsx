import { render, screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { TrendsTable } from '../src/components/charts/TrendsTable';
import { trendsBreakdown, trendsSingle } from './fixtures/trends';

const cells = (row: HTMLElement) => within(row).getAllByRole('cell').map((c) => c.textContent);

describe('TrendsTable', () => {
  it('has a column per bucket and a total, one row per series', () => {
    render(<TrendsTable result={trendsSingle} />);
    const table = screen.getByRole('table', { name: 'Trend results' });
    const headers = within(table).getAllByRole('columnheader').map((h) => h.textContent);
    expect(headers).toEqual(['Series', 'Nov 24', 'Nov 25', 'Nov 26', 'Total']);
    const rows = within(table).getAllByRole('row').slice(1);
    expect(rows).toHaveLength(1);
    expect(within(rows[0]!).getByRole('rowheader')).toHaveTextContent('A $pageview · Total count');
    expect(cells(rows[0]!)).toEqual(['50', '40', '30', '120']);
    expect(within(rows[0]!).getByTestId('trend-total')).toHaveTextContent('120');
  });

  it('shows a row per series and breakdown value, the formula’s too', () => {
    render(<TrendsTable result={trendsBreakdown} breakdownProperty="$browser" />);
    const table = screen.getByRole('table', { name: 'Trend results' });
    const headers = within(table).getAllByRole('columnheader').map((h) => h.textContent);
    expect(headers).toEqual(['Series', '$browser', 'Nov 24', 'Nov 25', 'Nov 26', 'Total']);
    const rows = within(table).getAllByRole('row').slice(1);
    expect(rows).toHaveLength(9);
    // Series A by Chrome: thousands separators and decimals.
    expect(cells(rows[0]!)).toEqual(['Chrome', '30', '1,200', '20.5', '1,250.5']);
    // $none and $other are named for people.
    expect(cells(rows[1]!)).toEqual(['(none)', '1', '2', '3', '6']);
    expect(cells(rows[2]!)).toEqual(['Other', '0', '0', '4', '4']);
    expect(within(rows[3]!).getByRole('rowheader')).toHaveTextContent('B Buyers · Unique users');
    // Unique users over the range (aggregated_value), not the sum of each day's 3 + 4 + 5.
    expect(cells(rows[3]!)).toEqual(['Chrome', '3', '4', '5', '9']);
    // The formula: null buckets as a dash, and no total (a sum of ratios means nothing).
    expect(within(rows[6]!).getByRole('rowheader')).toHaveTextContent('ƒ A / B');
    expect(cells(rows[6]!)).toEqual(['Chrome', '10', '300', '4.1', '—']);
    expect(cells(rows[7]!)).toEqual(['(none)', '—', '2', '—', '—']);
  });

  it('marks rows with their series and breakdown value', () => {
    const { container } = render(<TrendsTable result={trendsBreakdown} />);
    expect(container.querySelector('tr[data-series="B"][data-breakdown="Chrome"] [data-testid="trend-total"]')).toHaveTextContent('9');
    expect(container.querySelector('tr[data-series="A"][data-breakdown="$other"] [data-testid="trend-total"]')).toHaveTextContent('4');
  });

  it('labels hourly and monthly buckets', () => {
    render(<TrendsTable result={{ ...trendsSingle, interval: 'hour', labels: ['2026-11-26T14:00:00+01:00', '2026-11-26T15:00:00+01:00', '2026-11-26T16:00:00+01:00'] }} />);
    expect(screen.getAllByRole('columnheader').map((h) => h.textContent).slice(1, 4)).toEqual(['Nov 26 14:00', 'Nov 26 15:00', 'Nov 26 16:00']);
  });
});
