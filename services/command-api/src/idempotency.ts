import { createHash } from 'node:crypto';
import { z } from 'zod';

/** The Idempotency-Key header: what a client sends to make a retried request land once. */
export const IdempotencyKey = z
  .string()
  .regex(/^[A-Za-z0-9_.:-]{1,200}$/, 'must be 1-200 characters of A-Z a-z 0-9 _ . : -');

/** JSON with object keys sorted at every depth, so that equal bodies serialise to equal text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value))
    return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** The hash an idempotent request is remembered by: sha256 of the canonical JSON of its parsed body. */
export function requestHash(parsedBody: unknown): string {
  return createHash('sha256').update(canonicalJson(parsedBody)).digest('hex');
}
