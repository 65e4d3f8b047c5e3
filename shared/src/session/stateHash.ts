import { createHash } from 'node:crypto';
import { RpaError } from '../errors.js';

/** A value that has no JSON form (a function, a bigint, NaN, a cycle) was asked for a hash. */
export class NotHashableError extends RpaError {
  constructor(path: string, what: string) {
    super('NOT_HASHABLE', `${path || '(root)'} is ${what}: only JSON values have a stable hash`);
  }
}

/**
 * JSON with object keys sorted at every depth, so that two states equal as data serialise identically whatever
 * order their properties were built in. Absent and `undefined` properties are the same thing, as in JSON.
 */
function canonical(value: unknown, path: string, seen: Set<object>): string {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new NotHashableError(path, String(value));
      return JSON.stringify(value);
    case 'object': {
      if (value === null) return 'null';
      if (seen.has(value)) throw new NotHashableError(path, 'a cycle');
      seen.add(value);
      try {
        const json: unknown =
          'toJSON' in value && typeof value.toJSON === 'function' ? value.toJSON() : value;
        if (json !== value) return canonical(json, path, seen);
        if (Array.isArray(value))
          return `[${value.map((item, i) => (item === undefined ? 'null' : canonical(item, `${path}[${i}]`, seen))).join(',')}]`;
        const entries = Object.keys(value)
          .sort()
          .flatMap((key) => {
            const item = (value as Record<string, unknown>)[key];
            if (item === undefined) return [];
            return [`${JSON.stringify(key)}:${canonical(item, path ? `${path}.${key}` : key, seen)}`];
          });
        return `{${entries.join(',')}}`;
      } finally {
        seen.delete(value);
      }
    }
    default:
      throw new NotHashableError(path, `a ${typeof value}`);
  }
}

/**
 * The SHA-256 (hex) of a JSON-safe value's canonical JSON: equal data gives an equal hash whatever its property
 * order. Used to pin what a recorded event stream folds to (a session state, a read-model document).
 */
export function stateHash(state: unknown): string {
  return createHash('sha256')
    .update(canonical(state, '', new Set()))
    .digest('hex');
}
