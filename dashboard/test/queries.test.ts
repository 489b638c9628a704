import { describe, expect, it } from 'vitest';
import { funnelsRequest, retentionRequest, sanitizeTrends, trendsRequest } from '../src/queries';

describe('requests built from the editors’ queries', () => {
  it('trends: leaves out unfinished filters, an empty formula or breakdown, and a stray math property', () => {
    expect(
      trendsRequest({
        series: [
          { event: 'a', math: 'total', math_property: 'amount', filters: [{ key: '', value: '' }, { key: 'k', operator: 'exact', value: '' }] },
          { event: 'b', math: 'sum', math_property: 'amount', filters: [{ key: 'k', operator: 'is_set' }] },
        ],
        filters: [{ key: 'plan', operator: 'exact', value: 'pro' }],
        formula: '  ',
        breakdown: { property: ' ' },
      }),
    ).toEqual({
      series: [
        { event: 'a', math: 'total' },
        { event: 'b', math: 'sum', math_property: 'amount', filters: [{ key: 'k', operator: 'is_set' }] },
      ],
      filters: [{ key: 'plan', operator: 'exact', value: 'pro' }],
    });
  });

  it('keeps a cohort breakdown with cohorts, from the editor and from a link', () => {
    expect(trendsRequest({ series: [{ event: 'a' }], breakdown: { type: 'cohort', cohorts: [] } })).toEqual({ series: [{ event: 'a' }] });
    expect(trendsRequest({ series: [{ event: 'a' }], breakdown: { type: 'cohort', cohorts: [4] } })).toEqual({
      series: [{ event: 'a' }],
      breakdown: { type: 'cohort', cohorts: [4] },
    });
    expect(sanitizeTrends({ series: [{ event: 'a' }], breakdown: { type: 'cohort', cohorts: [4, 'x', -1, 9] } })?.breakdown).toEqual({
      type: 'cohort',
      cohorts: [4, 9],
    });
  });

  it('funnels and retention likewise', () => {
    expect(funnelsRequest({ steps: [{ event: 'a', filters: [{ key: '' }] }, { event: 'b' }], breakdown: { property: '' } })).toEqual({ steps: [{ event: 'a' }, { event: 'b' }] });
    expect(retentionRequest({ target_event: { event: 'a', filters: [] }, returning_event: null, filters: [{ key: 'x', value: 0 }] })).toEqual({
      target_event: { event: 'a' },
      filters: [{ key: 'x', value: 0 }],
    });
  });
});
