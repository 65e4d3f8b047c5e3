import type { z } from 'zod';
import { requestHash } from '../idempotency.js';
import { hashedOpenFields, openFieldsOf } from '../openFields.js';
import type { BatchItem, batchItemSchema } from '../http/schemas.js';

/** An error as an item answers it: the shape of a whole request's error body. */
export interface ItemError {
  code: string;
  message: string;
  details?: unknown;
}

/** A batch item after its own validation: the item understood, or the 400 it answers. */
export type ParsedBatchItem =
  | { ok: true; index: number; item: BatchItem; clientRef?: string }
  | { ok: false; index: number; raw: unknown; clientRef?: string; error: ItemError };

// An item's open fields are understood as POST /v1/sessions understands its body.
export { openFieldsOf } from '../openFields.js';

/**
 * Validates each item on its own. A refused item gets the error a whole request would get, with every field
 * named from the top of the body (`items.3.steps.0.url`), and keeps its clientRef when that alone is valid.
 */
export function parseBatchItems(
  raw: readonly unknown[],
  schema: ReturnType<typeof batchItemSchema>,
): ParsedBatchItem[] {
  return raw.map((value, index) => {
    const parsed = schema.safeParse(value);
    if (parsed.success) {
      const { clientRef } = parsed.data;
      return { ok: true, index, item: parsed.data, ...(clientRef === undefined ? {} : { clientRef }) };
    }
    const clientRef = schema.shape.clientRef.safeParse(
      typeof value === 'object' && value !== null ? (value as Record<string, unknown>).clientRef : undefined,
    ).data;
    return {
      ok: false,
      index,
      raw: value,
      ...(clientRef === undefined ? {} : { clientRef }),
      error: validationError(index, parsed.error),
    };
  });
}

function validationError(index: number, error: z.ZodError): ItemError {
  const details = error.issues.map((issue) => ({
    field: ['items', index, ...issue.path].map(String).join('.'),
    message: issue.message,
  }));
  return {
    code: 'VALIDATION_FAILED',
    message: details.map((d) => `${d.field}: ${d.message}`).join('; '),
    details,
  };
}

/**
 * The hash a keyed batch is remembered by. Valid items count as understood (defaults filled in, like a single
 * open), refused ones as sent; order matters, since the n-th item always opens the n-th session.
 */
export function batchRequestHash(items: readonly ParsedBatchItem[]): string {
  return requestHash({
    items: items.map((p) =>
      p.ok
        ? {
            ...hashedOpenFields(openFieldsOf(p.item)),
            steps: p.item.steps ?? [],
            clientRef: p.item.clientRef,
          }
        : p.raw,
    ),
  });
}
