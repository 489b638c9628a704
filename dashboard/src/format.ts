// Numbers, percentages, durations and bucket labels as the dashboard shows them.
import type { Interval } from './api/types';

const numberFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

/** 1234.5 → "1,234.5"; null → "—". */
export function formatNumber(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return numberFmt.format(n);
}

/** 0.6 → "60%", 0.3333 → "33.3%". */
export function formatPercent(ratio: number | null | undefined): string {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return '—';
  const pct = ratio * 100;
  const rounded = Math.round(pct * 10) / 10;
  return `${Number.isInteger(rounded) ? rounded.toFixed(0) : rounded.toFixed(1)}%`;
}

/** Seconds → "45s", "12m 5s", "3h 20m", "2d 4h". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m}m ${s % 60}s` : `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * A bucket's label from its start as the API gives it (`2026-11-26T00:00:00+01:00`, already in
 * the query's timezone, so it is read as written rather than converted to the browser's).
 */
export function formatBucket(label: string, interval: Interval | 'period'): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}))?/.exec(label);
  if (!m) return label;
  const [, y, mo, d, hh, mm] = m;
  const mon = MONTHS[Number(mo) - 1] ?? mo;
  const day = `${mon} ${Number(d)}`;
  switch (interval) {
    case 'hour':
      return `${day} ${hh ?? '00'}:${mm ?? '00'}`;
    case 'month':
      return `${mon} ${y}`;
    default:
      return day;
  }
}

/** A timestamp shown in the browser's timezone: "2026-11-26 14:05:12". */
export function formatTimestamp(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "$none" → "(none)", "$other" → "Other", null → "". */
export function formatBreakdownValue(v: string | null | undefined): string {
  if (v === null || v === undefined) return '';
  if (v === '$none') return '(none)';
  if (v === '$other') return 'Other';
  return v;
}
