import { describe, expect, it } from 'vitest';
import { batchItemSchema } from '../http/schemas.js';
import { batchRequestHash, openFieldsOf, parseBatchItems, type ParsedBatchItem } from './batchItems.js';

const schema = batchItemSchema(3);
const navigate = (url: string) => ({ action: 'navigate', url });
const errorOf = (p: ParsedBatchItem | undefined) => {
  if (!p || p.ok) throw new TypeError('expected a refused item');
  return p.error as { code: string; message: string; details: Array<{ field: string; message: string }> };
};

describe('parseBatchItems', () => {
  it('keeps valid items as understood, with their index and clientRef', () => {
    const [a, b] = parseBatchItems(
      [{}, { labels: { team: 'ops' }, steps: [navigate('https://example.com/')], clientRef: 'row-2' }],
      schema,
    );
    expect(a).toEqual({ ok: true, index: 0, item: {} });
    expect(b).toMatchObject({ ok: true, index: 1, clientRef: 'row-2', item: { labels: { team: 'ops' } } });
  });

  it('names every bad field from the top of the body, per item', () => {
    const parsed = parseBatchItems(
      [
        { steps: [navigate('https://ok.example/')] },
        { steps: [navigate('https://ok.example/'), navigate('file:///etc/passwd')] },
        { idleTimeoutMs: 5, browser: { viewport: { width: 1, height: 720 } } },
        { steps: [{ action: 'evaluate', code: '1' }] },
      ],
      schema,
    );
    expect(parsed[0]?.ok).toBe(true);
    expect(errorOf(parsed[1])).toEqual({
      code: 'VALIDATION_FAILED',
      message: 'items.1.steps.1.url: must be an absolute http:// or https:// URL',
      details: [{ field: 'items.1.steps.1.url', message: 'must be an absolute http:// or https:// URL' }],
    });
    expect(
      errorOf(parsed[2])
        .details.map((d) => d.field)
        .sort(),
    ).toEqual(['items.2.browser.viewport.width', 'items.2.idleTimeoutMs']);
    expect(errorOf(parsed[3]).details[0]?.field).toBe('items.3.steps.0.action');
  });

  it('refuses unknown fields, non-objects, too many steps and a bad clientRef, naming the place', () => {
    const parsed = parseBatchItems(
      [
        { labels: {}, script: 'alert(1)' },
        null,
        'open please',
        { steps: Array(4).fill(navigate('https://example.com/')) },
        { clientRef: 'x'.repeat(201) },
        { clientRef: '' },
      ],
      schema,
    );
    expect(errorOf(parsed[0]).details[0]?.field).toBe('items.0');
    expect(errorOf(parsed[0]).message).toContain('"script"');
    expect(errorOf(parsed[1]).details[0]?.field).toBe('items.1');
    expect(errorOf(parsed[2]).details[0]?.field).toBe('items.2');
    expect(errorOf(parsed[3]).details[0]?.field).toBe('items.3.steps');
    expect(errorOf(parsed[4]).details[0]?.field).toBe('items.4.clientRef');
    expect(errorOf(parsed[5]).details[0]?.field).toBe('items.5.clientRef');
  });

  it('echoes the clientRef of a refused item when the clientRef itself is valid', () => {
    const [good, bad] = parseBatchItems(
      [
        { clientRef: 'row-1', idleTimeoutMs: 'soon' },
        { clientRef: 7, idleTimeoutMs: 'soon' },
      ],
      schema,
    );
    expect(good).toMatchObject({ ok: false, clientRef: 'row-1' });
    expect(bad).not.toHaveProperty('clientRef');
  });
});

describe('batchRequestHash', () => {
  const hash = (items: unknown[]) => batchRequestHash(parseBatchItems(items, schema));

  it('is equal for the same batch written differently: key order, explicit defaults', () => {
    expect(hash([{ labels: { a: '1', b: '2' } }, { clientRef: 'r' }])).toBe(
      hash([
        { idleTimeoutMs: null, browser: {}, labels: { b: '2', a: '1' }, steps: [] },
        { clientRef: 'r', labels: {} },
      ]),
    );
  });

  it('differs when any item, its position, its clientRef or a refused item changes', () => {
    const base = hash([{ labels: { a: '1' } }, { steps: [navigate('https://a.example/')] }]);
    expect(hash([{ labels: { a: '2' } }, { steps: [navigate('https://a.example/')] }])).not.toBe(base);
    expect(hash([{ steps: [navigate('https://a.example/')] }, { labels: { a: '1' } }])).not.toBe(base);
    expect(
      hash([{ labels: { a: '1' } }, { steps: [navigate('https://a.example/')], clientRef: 'x' }]),
    ).not.toBe(base);
    expect(hash([{ idleTimeoutMs: 'x' }])).not.toBe(hash([{ idleTimeoutMs: 'y' }]));
  });
});

describe('openFieldsOf', () => {
  it('fills the defaults POST /v1/sessions fills', () => {
    expect(openFieldsOf({})).toEqual({
      labels: {},
      browser: {},
      idleTimeoutMs: null,
      priority: 'normal',
      onStepFailure: 'pause',
      requires: {},
    });
  });

  it('hashes the new fields only when they differ from their default, so keys remembered before still match', () => {
    const hash = (items: unknown[]) => batchRequestHash(parseBatchItems(items, batchItemSchema(500)));
    const base = hash([{ labels: { a: '1' } }]);
    expect(hash([{ labels: { a: '1' }, priority: 'normal', onStepFailure: 'pause', requires: {} }])).toBe(
      base,
    );
    expect(hash([{ labels: { a: '1' }, priority: 'high' }])).not.toBe(base);
    expect(hash([{ labels: { a: '1' }, onStepFailure: 'fail' }])).not.toBe(base);
    expect(hash([{ labels: { a: '1' }, requires: { region: 'eu' } }])).not.toBe(base);
  });
});
