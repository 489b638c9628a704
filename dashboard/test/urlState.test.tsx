import { act, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { TrendsRequest } from '../src/api/types';
import { defaultTrends, sanitizeFunnels, sanitizeRetention, sanitizeTrends } from '../src/queries';
import { decodeQuery, editorPath, insightEditorPath, QUERY_PARAM, searchFor, useUrlQuery } from '../src/urlState';
import { renderAt } from './helpers';

const complex: TrendsRequest = {
  series: [
    { event: '$pageview', math: 'unique_users', filters: [{ key: '$browser', operator: 'exact', value: ['Chrome', 'Firefox'] }] },
    { event: 'purchase', math: 'sum', math_property: 'amount', name: 'Revenue' },
    { event: null, math: 'total' },
  ],
  date_from: '2026-11-01',
  date_to: '2026-11-07',
  interval: 'hour',
  timezone: 'Europe/Berlin',
  filters: [
    { key: 'plan', operator: 'is_not', value: 'free' },
    { key: 'seats', operator: 'gte', value: 3 },
    { key: 'beta', operator: 'is_set' },
    { key: 'path', operator: 'icontains', value: '/pricing?a=1&b=2 #x' },
  ],
  breakdown: { property: '$os', limit: 5 },
  formula: '(A - B) * 100 / A',
};

describe('query ⇄ URL', () => {
  it('round-trips a complex trends query through the search string', () => {
    const search = searchFor(complex);
    // Percent-encoded: no raw braces, quotes, spaces, & or # in the URL.
    expect(search).not.toMatch(/[{}" #]/);
    expect(search.split('&')).toHaveLength(1);
    const raw = new URLSearchParams(search).get(QUERY_PARAM);
    const back = decodeQuery(raw, defaultTrends(), sanitizeTrends);
    expect(back).toEqual({ value: complex, invalid: false, missing: false });
  });

  it('round-trips funnels and retention queries', () => {
    const funnel = { steps: [{ event: 'a' }, { event: 'b', filters: [{ key: 'k', value: 1 }] }], conversion_window: { value: 2, unit: 'hour' as const }, order: 'strict' as const, breakdown: { property: 'p' } };
    expect(decodeQuery(new URLSearchParams(searchFor(funnel)).get('q'), null, sanitizeFunnels).value).toEqual(funnel);
    const ret = { target_event: { event: 'signed_up' }, returning_event: { event: '$pageview' }, retention_type: 'first_time' as const, period: 'week' as const, periods: 12 };
    expect(decodeQuery(new URLSearchParams(searchFor(ret)).get('q'), null, sanitizeRetention).value).toEqual(ret);
  });

  it('falls back, and says so, for a query it cannot read', () => {
    const fallback = defaultTrends();
    expect(decodeQuery('{not json', fallback, sanitizeTrends)).toEqual({ value: fallback, invalid: true, missing: false });
    expect(decodeQuery('{"series":[]}', fallback, sanitizeTrends).invalid).toBe(true);
    expect(decodeQuery('[1,2]', fallback, sanitizeTrends).invalid).toBe(true);
    expect(decodeQuery(null, fallback, sanitizeTrends)).toEqual({ value: fallback, invalid: false, missing: true });
  });

  it('drops unknown fields and wrong types (the API refuses unknown fields)', () => {
    const raw = JSON.stringify({ series: [{ event: 'x', math: 'bogus', evil: 1 }], interval: 'fortnight', extra: true, filters: [{ key: 'a', operator: 'nope', value: { o: 1 } }, { nokey: 1 }] });
    expect(decodeQuery(raw, defaultTrends(), sanitizeTrends).value).toEqual({ series: [{ event: 'x' }], filters: [{ key: 'a' }] });
  });

  it('builds editor links, a saved insight’s without its kind', () => {
    expect(editorPath(3, 'funnels', { steps: [] })).toBe(`/project/3/funnels?q=${encodeURIComponent('{"steps":[]}')}`);
    const path = insightEditorPath(3, { id: 7, query: { kind: 'trends', series: [{ event: 'e' }] } });
    const u = new URL(path, 'http://x');
    expect(u.pathname).toBe('/project/3/trends');
    expect(JSON.parse(u.searchParams.get('q')!)).toEqual({ series: [{ event: 'e' }] });
    expect(u.searchParams.get('insight')).toBe('7');
  });
});

function Probe() {
  const { value, setQuery, missing, insightId } = useUrlQuery<TrendsRequest>(defaultTrends(), sanitizeTrends);
  return (
    <div>
      <output data-testid="event">{value.series[0]?.event ?? 'all'}</output>
      <output data-testid="missing">{String(missing)}</output>
      <output data-testid="insight">{String(insightId)}</output>
      <button onClick={() => setQuery({ ...value, series: [{ event: 'signed_up' }] })}>set</button>
    </div>
  );
}

describe('useUrlQuery', () => {
  it('reads the URL, pushes edits as history entries, and back restores', async () => {
    const q = { series: [{ event: 'opened' }] };
    const { router } = renderAt(<Probe />, { url: `/project/3/trends${searchFor(q, 12)}` });
    expect(screen.getByTestId('event')).toHaveTextContent('opened');
    expect(screen.getByTestId('insight')).toHaveTextContent('12');

    await act(async () => screen.getByText('set').click());
    expect(screen.getByTestId('event')).toHaveTextContent('signed_up');
    const params = new URLSearchParams(router.state.location.search);
    expect(JSON.parse(params.get('q')!)).toEqual({ series: [{ event: 'signed_up' }] });
    expect(params.get('insight')).toBe('12');

    await act(async () => router.navigate(-1));
    expect(screen.getByTestId('event')).toHaveTextContent('opened');
    await act(async () => router.navigate(1));
    expect(screen.getByTestId('event')).toHaveTextContent('signed_up');
  });

  it('uses the default query when the URL has none', () => {
    renderAt(<Probe />, { url: '/project/3/trends' });
    expect(screen.getByTestId('event')).toHaveTextContent('$pageview');
    expect(screen.getByTestId('missing')).toHaveTextContent('true');
  });
});
