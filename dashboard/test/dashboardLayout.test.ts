import { describe, expect, it } from 'vitest';
import { moveTile, pack, packTiles, resizeTile, sizeOf } from '../src/components/dashboardLayout';

const tiles = [
  { insight_id: 1, layout: { w: 6, h: 2 } },
  { insight_id: 2, layout: { w: 6, h: 3 } },
  { insight_id: 3, layout: {} },
];

describe('dashboard layout', () => {
  it('packs tiles row by row on 12 columns', () => {
    expect(pack([{ w: 6, h: 2 }, { w: 6, h: 3 }, { w: 6, h: 2 }, { w: 9, h: 1 }])).toEqual([
      { x: 0, y: 0, w: 6, h: 2 },
      { x: 6, y: 0, w: 6, h: 3 },
      { x: 0, y: 3, w: 6, h: 2 },
      { x: 0, y: 5, w: 9, h: 1 },
    ]);
  });

  it('reads sizes defensively', () => {
    expect(sizeOf(undefined)).toEqual({ w: 6, h: 2 });
    expect(sizeOf({ w: 40, h: 0 })).toEqual({ w: 12, h: 1 });
    expect(sizeOf({ w: '5', h: 2.6 })).toEqual({ w: 6, h: 3 });
  });

  it('moves a tile in the order and re-packs', () => {
    const moved = moveTile(packTiles(tiles), 2, -2);
    expect(moved.map((t) => t.insight_id)).toEqual([3, 1, 2]);
    expect(moved.map((t) => t.layout)).toEqual([
      { x: 0, y: 0, w: 6, h: 2 },
      { x: 6, y: 0, w: 6, h: 2 },
      { x: 0, y: 2, w: 6, h: 3 },
    ]);
    expect(moveTile(tiles, 0, -1)).toBe(tiles);
  });

  it('resizes within bounds and re-packs', () => {
    const wider = resizeTile(packTiles(tiles), 0, 1, 0);
    expect(wider.map((t) => t.layout)).toEqual([
      { x: 0, y: 0, w: 9, h: 2 },
      { x: 0, y: 2, w: 6, h: 3 },
      { x: 6, y: 2, w: 6, h: 2 },
    ]);
    const taller = resizeTile(wider, 1, 0, 1);
    expect(taller[1]!.layout).toEqual({ x: 0, y: 2, w: 6, h: 4 });
    expect(resizeTile(taller, 1, 0, 1)).toBe(taller); // already at the tallest
  });
});
