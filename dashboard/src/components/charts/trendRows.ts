import type { Math, TrendsResponse } from '../../api/types';

/** One line of a trend: a series (per breakdown value), or the formula (per breakdown value). */
export interface TrendRow {
  key: string;
  /** A, B, … for series; "ƒ" for the formula. */
  letter: string;
  name: string;
  math: Math | null;
  breakdown: string | null;
  data: (number | null)[];
  /** The value over the whole range (the API's aggregated_value: a sum for total and sum, computed
   * over the range for unique users, averages, quantiles); null for the formula. */
  total: number | null;
  formula: boolean;
}

export function trendRows(res: TrendsResponse): TrendRow[] {
  const rows: TrendRow[] = res.results.map((r) => ({
    key: `s${r.series}:${r.breakdown_value ?? ''}`,
    letter: r.label,
    name: r.name,
    math: r.math,
    breakdown: r.breakdown_value,
    data: r.data,
    total: r.aggregated_value,
    formula: false,
  }));
  for (const f of res.formula ?? []) {
    rows.push({
      key: `f:${f.breakdown_value ?? ''}`,
      letter: 'ƒ',
      name: f.formula,
      math: null,
      breakdown: f.breakdown_value,
      data: f.data,
      total: null,
      formula: true,
    });
  }
  return rows;
}
