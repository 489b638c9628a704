// UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Every event gets one when it
// is captured, so a retried or re-sent batch carries the same ids and Cairn counts each event once.

let lastMs = -1;
let seq = 0;

function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c && typeof c.getRandomValues === 'function') {
    c.getRandomValues(bytes);
  } else {
    for (let i = 0; i < n; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  return bytes;
}

/** A new UUIDv7 as text; ids made in the same millisecond by this page still sort in order. */
export function uuidv7(now: number = Date.now()): string {
  const b = randomBytes(16);
  let ms = Math.max(now, lastMs);
  if (ms === lastMs) {
    seq = (seq + 1) & 0xfff;
    if (seq === 0) ms += 1; // 4096 ids in one millisecond: borrow the next one
  } else {
    seq = ((b[6] ?? 0) & 0x07) << 8 | (b[7] ?? 0); // random start, room to count up
  }
  lastMs = ms;
  // 48-bit big-endian milliseconds (two parts: JavaScript's bit operators are 32-bit).
  const hi = Math.floor(ms / 0x10000);
  const lo = ms % 0x10000;
  b[0] = (hi >>> 24) & 0xff;
  b[1] = (hi >>> 16) & 0xff;
  b[2] = (hi >>> 8) & 0xff;
  b[3] = hi & 0xff;
  b[4] = (lo >>> 8) & 0xff;
  b[5] = lo & 0xff;
  b[6] = 0x70 | ((seq >>> 8) & 0x0f); // version 7 + 12 bits of sequence (rand_a)
  b[7] = seq & 0xff;
  b[8] = 0x80 | ((b[8] ?? 0) & 0x3f); // variant 10
  let hex = '';
  for (let i = 0; i < 16; i++) hex += (b[i] ?? 0).toString(16).padStart(2, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
