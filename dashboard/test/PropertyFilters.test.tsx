import { useState } from 'react';
import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Breakdown, PropertyFilter } from '../src/api/types';
import { BreakdownEditor, BreakdownKind, filterValue, PropertyFilters, withOperator } from '../src/components/PropertyFilters';
import { breakdownComplete, completeFilters } from '../src/queries';
import { json, renderAt, stubFetch } from './helpers';

afterEach(() => vi.unstubAllGlobals());

function Harness({ initial = [], onChange, sessions = false }: { initial?: PropertyFilter[]; onChange: (f: PropertyFilter[]) => void; sessions?: boolean }) {
  const [filters, setFilters] = useState<PropertyFilter[]>(initial);
  return (
    <PropertyFilters
      label="Filters"
      sessions={sessions}
      value={filters}
      event="$pageview"
      onChange={(f) => {
        setFilters(f);
        onChange(f);
      }}
    />
  );
}

function pickers() {
  return stubFetch(async (c) => {
    if (c.path === '/api/v1/projects/3/property-keys') return json(200, { results: [{ name: '$browser', count: 120 }, { name: 'seats', count: 4 }] });
    if (c.path === '/api/v1/projects/3/property-values') return json(200, { results: [{ name: 'Chrome', count: 80 }, { name: 'Firefox', count: 40 }] });
    return undefined;
  });
}

const last = (fn: ReturnType<typeof vi.fn>) => fn.mock.calls[fn.mock.calls.length - 1]![0] as PropertyFilter[];

describe('PropertyFilters', () => {
  it('offers session properties where asked (trends), from a fixed list', async () => {
    pickers();
    const onChange = vi.fn();
    const user = userEvent.setup();
    const { unmount } = renderAt(<Harness onChange={onChange} sessions initial={[{ key: '', operator: 'exact', value: '' }]} />);
    await user.selectOptions(screen.getByLabelText('Filter 1 applies to'), 'session');
    expect(last(onChange)).toEqual([{ key: '$session_duration', operator: 'exact', value: '', type: 'session' }]);
    await user.selectOptions(screen.getByLabelText('Filter 1 property'), '$is_bounce');
    expect(last(onChange)[0]).toMatchObject({ key: '$is_bounce', type: 'session' });
    unmount();
    // Elsewhere no session option.
    renderAt(<Harness onChange={vi.fn()} initial={[{ key: '', operator: 'exact', value: '' }]} />);
    expect([...(screen.getByLabelText('Filter 1 applies to') as HTMLSelectElement).options].map((o) => o.value)).toEqual(['event', 'person', 'cohort']);
  });

  it('builds {key, operator, value} from the pickers', async () => {
    const { calls } = pickers();
    const onChange = vi.fn();
    const user = userEvent.setup();
    renderAt(<Harness onChange={onChange} />);

    await user.click(screen.getByRole('button', { name: '+ Add filter' }));
    expect(last(onChange)).toEqual([{ key: '', operator: 'exact', value: '' }]);
    // An unfinished row is not sent.
    expect(completeFilters(last(onChange))).toBeUndefined();

    await user.type(screen.getByLabelText('Filter 1 property'), '$browser{Enter}');
    await user.type(screen.getByLabelText('Filter 1 value'), 'Chrome{Enter}');
    expect(last(onChange)).toEqual([{ key: '$browser', operator: 'exact', value: 'Chrome' }]);
    expect(completeFilters(last(onChange))).toEqual([{ key: '$browser', operator: 'exact', value: 'Chrome' }]);

    // The pickers asked for this event's keys, and for the chosen key's values.
    await waitFor(() => expect(calls.some((c) => c.path.endsWith('/property-values') && c.search.get('key') === '$browser')).toBe(true));
    expect(calls.find((c) => c.path.endsWith('/property-keys'))!.search.get('event')).toBe('$pageview');
    // Suggestions come from the API.
    const options = [...document.querySelectorAll('datalist option')].map((o) => (o as HTMLOptionElement).value);
    expect(options).toEqual(expect.arrayContaining(['$browser', 'seats', 'Chrome', 'Firefox']));

    await user.selectOptions(screen.getByLabelText('Filter 1 operator'), 'is_not');
    expect(last(onChange)).toEqual([{ key: '$browser', operator: 'is_not', value: 'Chrome' }]);
  });

  it("filters by the person's property when asked, and keeps that through operator changes", async () => {
    pickers();
    const onChange = vi.fn();
    const user = userEvent.setup();
    renderAt(<Harness initial={[{ key: 'plan', operator: 'exact', value: 'pro' }]} onChange={onChange} />);
    await user.selectOptions(screen.getByLabelText('Filter 1 applies to'), 'person');
    expect(last(onChange)).toEqual([{ key: 'plan', operator: 'exact', value: 'pro', type: 'person' }]);
    await user.selectOptions(screen.getByLabelText('Filter 1 operator'), 'is_set');
    expect(last(onChange)).toEqual([{ key: 'plan', operator: 'is_set', type: 'person' }]);
    await user.selectOptions(screen.getByLabelText('Filter 1 applies to'), 'event');
    expect(last(onChange)).toEqual([{ key: 'plan', operator: 'is_set' }]);
  });

  it("reads a breakdown of the person's property", async () => {
    const onChange = vi.fn();
    const user = userEvent.setup();
    renderAt(<BreakdownKind value={undefined} onChange={onChange} />);
    await user.selectOptions(screen.getByLabelText('Breakdown property of'), 'person');
    expect(onChange).toHaveBeenLastCalledWith('person');
  });

  it('breaks down by saved cohorts, chosen by name, and back to a property', async () => {
    stubFetch(async (c) => {
      if (c.path === '/api/v1/projects/3/cohorts') return json(200, { results: [{ id: 4, name: 'Pro' }, { id: 9, name: 'Repeat buyers' }] });
      if (c.path === '/api/v1/projects/3/property-keys') return json(200, { results: [{ name: 'plan', count: 3 }] });
      return undefined;
    });
    const onChange = vi.fn();
    const user = userEvent.setup();
    function Editor() {
      const [b, setB] = useState<Breakdown | null>({ property: 'plan', type: 'person' });
      return (
        <BreakdownEditor
          value={b}
          onChange={(next) => {
            setB(next);
            onChange(next);
          }}
        />
      );
    }
    renderAt(<Editor />);
    await user.selectOptions(screen.getByLabelText('Breakdown property of'), 'cohort');
    expect(onChange).toHaveBeenLastCalledWith({ type: 'cohort', cohorts: [] });
    expect(breakdownComplete(onChange.mock.calls.at(-1)![0])).toBe(false);
    await waitFor(() => expect(screen.getByRole('option', { name: 'Repeat buyers' })).toBeTruthy());
    await user.selectOptions(screen.getByLabelText('Breakdown cohorts'), ['Pro', 'Repeat buyers']);
    expect(onChange).toHaveBeenLastCalledWith({ type: 'cohort', cohorts: [4, 9] });
    expect(breakdownComplete(onChange.mock.calls.at(-1)![0])).toBe(true);
    await user.selectOptions(screen.getByLabelText('Breakdown property of'), 'person');
    expect(onChange).toHaveBeenLastCalledWith({ property: '', type: 'person' });
    await user.click(screen.getByRole('button', { name: 'Remove breakdown' }));
    expect(onChange).toHaveBeenLastCalledWith(null);
  });

  it('reads numbers for numeric operators and drops the value for is_set', async () => {
    pickers();
    const onChange = vi.fn();
    const user = userEvent.setup();
    renderAt(<Harness initial={[{ key: 'seats', operator: 'exact', value: '3' }]} onChange={onChange} />);
    await user.selectOptions(screen.getByLabelText('Filter 1 operator'), 'gte');
    expect(last(onChange)).toEqual([{ key: 'seats', operator: 'gte', value: 3 }]);
    await user.selectOptions(screen.getByLabelText('Filter 1 operator'), 'is_set');
    expect(last(onChange)).toEqual([{ key: 'seats', operator: 'is_set' }]);
    expect(screen.queryByLabelText('Filter 1 value')).toBeNull();
    expect(completeFilters(last(onChange))).toEqual([{ key: 'seats', operator: 'is_set' }]);
  });

  it('removes a row', async () => {
    pickers();
    const onChange = vi.fn();
    const user = userEvent.setup();
    renderAt(
      <Harness
        initial={[
          { key: 'a', operator: 'exact', value: '1' },
          { key: 'b', operator: 'icontains', value: 'x' },
        ]}
        onChange={onChange}
      />,
    );
    await user.click(screen.getByRole('button', { name: 'Remove filter 1' }));
    expect(last(onChange)).toEqual([{ key: 'b', operator: 'icontains', value: 'x' }]);
  });

  it('converts values as the operator needs', () => {
    expect(filterValue('gt', ' 12.5 ')).toBe(12.5);
    expect(filterValue('gt', 'abc')).toBe('abc');
    expect(filterValue('exact', '42')).toBe('42');
    expect(withOperator({ key: 'k', operator: 'exact', value: ['a', 'b'] }, 'is_not')).toEqual({ key: 'k', operator: 'is_not', value: ['a', 'b'] });
    expect(withOperator({ key: 'k', operator: 'exact', value: '7' }, 'lt')).toEqual({ key: 'k', operator: 'lt', value: 7 });
  });
});
