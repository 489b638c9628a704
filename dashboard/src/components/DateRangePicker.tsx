import { useId } from 'react';

export const DATE_PRESETS: { value: string; label: string }[] = [
  { value: '-24h', label: 'Last 24 hours' },
  { value: '-7d', label: 'Last 7 days' },
  { value: '-14d', label: 'Last 14 days' },
  { value: '-30d', label: 'Last 30 days' },
  { value: '-90d', label: 'Last 90 days' },
];

const CUSTOM = 'custom';
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

export interface DateRange {
  date_from?: string | null;
  date_to?: string | null;
}

function today(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

function daysAgo(n: number): string {
  const d = new Date(Date.now() - n * 86_400_000);
  const p = (x: number) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

interface Props {
  value: DateRange;
  onChange: (range: DateRange) => void;
  /** Used when date_from is absent (the API's default for this analysis). */
  defaultFrom: string;
  label?: string;
}

/**
 * A relative preset (`-7d` → now) or custom dates (`2026-11-01` → `2026-11-03`, both days whole:
 * the API reads a date_to date as the end of that day).
 */
export function DateRangePicker({ value, onChange, defaultFrom, label = 'Date range' }: Props) {
  const id = useId();
  const from = value.date_from ?? defaultFrom;
  const isPreset = !value.date_to && DATE_PRESETS.some((p) => p.value === from);
  const isOtherRelative = !value.date_to && !isPreset && from.startsWith('-');
  const selected = isPreset || isOtherRelative ? from : CUSTOM;

  return (
    <div className="date-range">
      <div className="field">
        <label htmlFor={`${id}-preset`}>{label}</label>
        <select
          id={`${id}-preset`}
          value={selected}
          onChange={(e) => {
            const v = e.target.value;
            if (v === CUSTOM) onChange({ date_from: DATE_RE.test(from) ? from : daysAgo(7), date_to: value.date_to ?? today() });
            else onChange({ date_from: v, date_to: null });
          }}
        >
          {DATE_PRESETS.map((p) => (
            <option key={p.value} value={p.value}>
              {p.label}
            </option>
          ))}
          {isOtherRelative ? <option value={from}>Since {from}</option> : null}
          <option value={CUSTOM}>Custom dates</option>
        </select>
      </div>
      {selected === CUSTOM ? (
        <>
          <div className="field">
            <label htmlFor={`${id}-from`}>From</label>
            <input
              id={`${id}-from`}
              type="date"
              value={DATE_RE.test(from) ? from : from.slice(0, 10)}
              max={value.date_to && DATE_RE.test(value.date_to) ? value.date_to : undefined}
              onChange={(e) => e.target.value && onChange({ date_from: e.target.value, date_to: value.date_to ?? today() })}
            />
          </div>
          <div className="field">
            <label htmlFor={`${id}-to`}>To (inclusive)</label>
            <input
              id={`${id}-to`}
              type="date"
              value={value.date_to ? value.date_to.slice(0, 10) : ''}
              min={DATE_RE.test(from) ? from : undefined}
              onChange={(e) => onChange({ date_from: from, date_to: e.target.value || null })}
            />
          </div>
        </>
      ) : null}
    </div>
  );
}
