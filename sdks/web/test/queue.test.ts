import { describe, expect, it } from 'vitest';
import { PersistentQueue } from '../src/queue';
import { MemoryStore } from '../src/storage';
import type { CaptureEvent } from '../src/types';

const ev = (i: number): CaptureEvent => ({
  event: `e${i}`,
  distinct_id: 'u',
  properties: {},
  timestamp: new Date(0).toISOString(),
  uuid: `id-${i}`,
});

describe('PersistentQueue', () => {
  it('keeps at most its capacity, dropping the oldest and counting them', () => {
    const q = new PersistentQueue(new MemoryStore(), 'q', 3);
    for (let i = 0; i < 5; i++) q.push(ev(i));
    expect(q.peek(10).map((e) => e.event)).toEqual(['e2', 'e3', 'e4']);
    expect(q.dropped).toBe(2);
  });

  it('survives a reload: a new queue on the same store has the same events', () => {
    const store = new MemoryStore();
    const q = new PersistentQueue(store, 'q', 10);
    q.push(ev(1));
    q.push(ev(2));
    q.remove(['id-1']);
    const again = new PersistentQueue(store, 'q', 10);
    expect(again.peek(10).map((e) => e.uuid)).toEqual(['id-2']);
  });

  it('ignores what is not a queue in the store', () => {
    const store = new MemoryStore();
    store.set('q', '{not json');
    expect(new PersistentQueue(store, 'q', 10).length).toBe(0);
    store.set('q', JSON.stringify([{ nope: 1 }, ev(7)]));
    expect(new PersistentQueue(store, 'q', 10).peek(5).map((e) => e.uuid)).toEqual(['id-7']);
  });

  it('removes by uuid wherever the events are', () => {
    const q = new PersistentQueue(new MemoryStore(), 'q', 10);
    for (let i = 0; i < 4; i++) q.push(ev(i));
    q.remove(['id-3', 'id-1']);
    expect(q.peek(10).map((e) => e.uuid)).toEqual(['id-0', 'id-2']);
  });
});
