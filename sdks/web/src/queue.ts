// A bounded FIFO of events that is written to the store after every change, so that what a page
// captured but could not send yet is sent by the next page load. When full, the oldest event is
// dropped (and counted): recent events are worth more than old ones to someone reading a trend.

import type { CaptureEvent } from './types';
import { readJson, type Store } from './storage';

export class PersistentQueue {
  private items: CaptureEvent[];
  /** Events dropped because the queue was full, since this page loaded. */
  dropped = 0;

  constructor(
    private readonly store: Store,
    private readonly key: string,
    private readonly capacity: number,
  ) {
    const saved = readJson<unknown>(store, key);
    this.items = Array.isArray(saved) ? (saved.filter(isEvent) as CaptureEvent[]) : [];
    this.trim();
  }

  get length(): number {
    return this.items.length;
  }

  push(event: CaptureEvent): void {
    this.items.push(event);
    this.trim();
    this.save();
  }

  /** The first `n` events, left in the queue until they are removed. */
  peek(n: number): CaptureEvent[] {
    return this.items.slice(0, n);
  }

  /** Removes the events with these uuids (wherever they are: the queue may have moved on). */
  remove(uuids: Iterable<string>): void {
    const gone = new Set(uuids);
    if (gone.size === 0) return;
    this.items = this.items.filter((e) => !gone.has(e.uuid));
    this.save();
  }

  clear(): void {
    this.items = [];
    this.save();
  }

  private trim(): void {
    const over = this.items.length - this.capacity;
    if (over > 0) {
      this.items.splice(0, over);
      this.dropped += over;
    }
  }

  private save(): void {
    if (this.items.length === 0) this.store.remove(this.key);
    else this.store.set(this.key, JSON.stringify(this.items));
  }
}

function isEvent(v: unknown): boolean {
  const e = v as Partial<CaptureEvent> | null;
  return !!e && typeof e.event === 'string' && typeof e.uuid === 'string' && typeof e.distinct_id === 'string';
}
