import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { NotHashableError, stateHash } from './stateHash.js';

describe('stateHash', () => {
  it('is the SHA-256 of JSON with sorted keys', () => {
    const expected = createHash('sha256').update('{"a":[1,{"x":null,"y":"z"}],"b":true}').digest('hex');
    expect(stateHash({ b: true, a: [1, { y: 'z', x: null }] })).toBe(expected);
  });

  it('does not depend on property order at any depth', () => {
    const one = {
      status: 'open',
      steps: { a: { seq: 1, status: 'queued' }, b: { seq: 2, status: 'running' } },
    };
    const two = {
      steps: { b: { status: 'running', seq: 2 }, a: { status: 'queued', seq: 1 } },
      status: 'open',
    };
    expect(stateHash(one)).toBe(stateHash(two));
  });

  it('depends on array order and on every value', () => {
    expect(stateHash({ order: ['a', 'b'] })).not.toBe(stateHash({ order: ['b', 'a'] }));
    expect(stateHash({ epoch: 1 })).not.toBe(stateHash({ epoch: 2 }));
    expect(stateHash({ epoch: 1 })).not.toBe(stateHash({ epoch: '1' }));
  });

  it('treats an undefined property as absent, as JSON does', () => {
    expect(stateHash({ a: 1, b: undefined })).toBe(stateHash({ a: 1 }));
    expect(stateHash([1, undefined])).toBe(stateHash([1, null]));
  });

  it.each([
    ['a function', { f: () => 1 }],
    ['a bigint', { n: 1n }],
    ['NaN', { n: Number.NaN }],
    ['undefined', undefined],
  ])('refuses %s with NotHashableError', (_what, value) => {
    expect(() => stateHash(value)).toThrow(NotHashableError);
  });

  it('refuses a cycle, but hashes a value shared by two properties', () => {
    const shared = { x: 1 };
    expect(stateHash({ a: shared, b: shared })).toBe(stateHash({ a: { x: 1 }, b: { x: 1 } }));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => stateHash(cyclic)).toThrow(NotHashableError);
  });
});
