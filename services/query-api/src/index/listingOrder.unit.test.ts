import { describe, expect, it } from 'vitest';
import { compareListingKeys, decodeCursor, encodeCursor } from './listingOrder.js';

describe('listing order and cursors', () => {
  it('orders newest first, then by session id', () => {
    const keys = [
      { createdAtMs: 1, sessionId: 'b' },
      { createdAtMs: 2, sessionId: 'z' },
      { createdAtMs: 1, sessionId: 'a' },
    ].sort(compareListingKeys);
    expect(keys.map((k) => k.sessionId)).toEqual(['z', 'a', 'b']);
  });

  it('round-trips a key through an opaque URL-safe cursor', () => {
    const key = { createdAtMs: 1_893_456_000_000, sessionId: 's-01' };
    const cursor = encodeCursor(key);
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(cursor)).toEqual(key);
  });

  it('rejects strings it did not issue', () => {
    for (const bad of [
      '',
      'not a cursor',
      'e30',
      Buffer.from('{"v":1,"t":"x","s":"a"}').toString('base64url'),
    ])
      expect(decodeCursor(bad)).toBeNull();
  });
});
