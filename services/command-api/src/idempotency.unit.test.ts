import { describe, expect, it } from 'vitest';
import { canonicalJson, IdempotencyKey, requestHash } from './idempotency.js';
import { keyedCommandId, keyedSessionId, stepIdFor } from './ids.js';

describe('canonicalJson and requestHash', () => {
  it('sorts keys at every depth and keeps array order', () => {
    expect(canonicalJson({ b: [{ d: 1, c: 2 }, 3], a: { z: null, y: 'x' } })).toBe(
      '{"a":{"y":"x","z":null},"b":[{"c":2,"d":1},3]}',
    );
  });

  it('drops undefined fields, as JSON would', () => {
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
  });

  it('hashes equal bodies equally and different bodies differently', () => {
    expect(requestHash({ a: 1, b: [1, 2] })).toBe(requestHash({ b: [1, 2], a: 1 }));
    expect(requestHash({ a: 1, b: [1, 2] })).not.toBe(requestHash({ a: 1, b: [2, 1] }));
    expect(requestHash({})).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('keyed ids', () => {
  it('derive the same ids from the same inputs, and different ids per tenant, session and kind', () => {
    expect(keyedSessionId('acme', 'k')).toBe(keyedSessionId('acme', 'k'));
    expect(keyedSessionId('acme', 'k')).not.toBe(keyedSessionId('globex', 'k'));
    // No concatenation ambiguity: ("a:b", "c") and ("a", "b:c") are different requests.
    expect(keyedSessionId('a:b', 'c')).not.toBe(keyedSessionId('a', 'b:c'));
    expect(keyedCommandId('submit', 't', 's1', 'k')).not.toBe(keyedCommandId('submit', 't', 's2', 'k'));
    expect(keyedCommandId('submit', 't', 's', 'k')).not.toBe(keyedCommandId('open', 't', 's', 'k'));
    expect(stepIdFor('c', 0)).not.toBe(stepIdFor('c', 1));
  });
});

describe('IdempotencyKey', () => {
  it.each(['a', 'order-42:open', 'A_b.c-d:e', 'x'.repeat(200)])('accepts %j', (key) => {
    expect(IdempotencyKey.safeParse(key).success).toBe(true);
  });
  it.each(['', 'x'.repeat(201), 'with space', 'a/b', 'ü', 'a,b'])('refuses %j', (key) => {
    expect(IdempotencyKey.safeParse(key).success).toBe(false);
  });
});
