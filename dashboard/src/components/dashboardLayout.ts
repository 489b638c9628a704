// Tile placement on a dashboard. The API keeps each tile's `layout` object as given; the
// dashboard writes `{x, y, w, h}` on a 12-column grid (y and h count rows). Tiles keep the API's
// order (position); `w` and `h` are theirs; `x` and `y` follow from packing them in that order,
// left to right, a new row when the next one does not fit. Moving a tile changes its place in
// the order; resizing changes w or h; both re-pack and save.

import type { TileInput, TileLayout } from '../api/types';

export const COLUMNS = 12;
export const MIN_W = 3;
export const W_STEP = 3;
export const MIN_H = 1;
export const MAX_H = 4;
export const DEFAULT_TILE = { w: 6, h: 2 };

const int = (v: unknown, dflt: number, min: number, max: number) => {
  const n = typeof v === 'number' && Number.isFinite(v) ? Math.round(v) : dflt;
  return Math.min(max, Math.max(min, n));
};

/** A tile's size from its stored layout (defaults for a missing or odd one). */
export function sizeOf(layout: unknown): { w: number; h: number } {
  const l = (layout && typeof layout === 'object' ? layout : {}) as Record<string, unknown>;
  return { w: int(l.w, DEFAULT_TILE.w, MIN_W, COLUMNS), h: int(l.h, DEFAULT_TILE.h, MIN_H, MAX_H) };
}

/** Places tiles of these sizes in order, row by row. */
export function pack(sizes: { w: number; h: number }[]): TileLayout[] {
  let x = 0;
  let y = 0;
  let rowH = 0;
  return sizes.map(({ w, h }) => {
    if (x + w > COLUMNS) {
      y += rowH;
      x = 0;
      rowH = 0;
    }
    const placed = { x, y, w, h };
    x += w;
    rowH = Math.max(rowH, h);
    return placed;
  });
}

/** The tiles with their layouts re-packed (other keys of a layout are kept). */
export function packTiles(tiles: TileInput[]): TileInput[] {
  const placed = pack(tiles.map((t) => sizeOf(t.layout)));
  return tiles.map((t, i) => ({ insight_id: t.insight_id, layout: { ...(t.layout ?? {}), ...placed[i] } }));
}

/** Moves tile `i` by `delta` places in the order (−1 earlier, +1 later). */
export function moveTile(tiles: TileInput[], i: number, delta: number): TileInput[] {
  const j = i + delta;
  if (i < 0 || i >= tiles.length || j < 0 || j >= tiles.length) return tiles;
  const next = [...tiles];
  const [t] = next.splice(i, 1);
  next.splice(j, 0, t!);
  return packTiles(next);
}

/** Makes tile `i` wider/narrower (by W_STEP columns) or taller/shorter (by a row). */
export function resizeTile(tiles: TileInput[], i: number, dw: number, dh: number): TileInput[] {
  const t = tiles[i];
  if (!t) return tiles;
  const { w, h } = sizeOf(t.layout);
  const nw = Math.min(COLUMNS, Math.max(MIN_W, w + dw * W_STEP));
  const nh = Math.min(MAX_H, Math.max(MIN_H, h + dh));
  if (nw === w && nh === h) return tiles;
  const next = tiles.map((x, k) => (k === i ? { ...x, layout: { ...(x.layout ?? {}), w: nw, h: nh } } : x));
  return packTiles(next);
}
