import { describe, expect, it } from 'vitest';
import { uuidv7 } from '../src/uuid';

describe('uuidv7', () => {
  it('has the version 7 and RFC variant bits and the time in its first 48 bits', () => {
    const now = Date.UTC(2026, 10, 26, 12, 0, 0, 123);
    const id = uuidv7(now);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(now);
  });

  it('sorts in creation order, also within one millisecond', () => {
    const ids = Array.from({ length: 5000 }, () => uuidv7(1_700_000_000_000));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('never goes back in time when the clock does', () => {
    const later = uuidv7(2_000_000_000_000);
    const earlier = uuidv7(1_000_000_000_000);
    expect(earlier > later).toBe(true);
  });
});
