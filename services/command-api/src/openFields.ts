import type { OpenSession } from '@rpa/shared';
import { requestHash } from './idempotency.js';
import type { OpenSessionBody } from './http/schemas.js';

/** What opening a session sets, as the OpenSession command carries it. */
export type OpenFields = Pick<
  OpenSession,
  'labels' | 'browser' | 'idleTimeoutMs' | 'priority' | 'onStepFailure' | 'requires'
>;

/** The open fields of a request (a single open or a batch item) with the defaults filled in. */
export function openFieldsOf(body: NonNullable<OpenSessionBody>): Required<OpenFields> {
  return {
    labels: body.labels ?? {},
    browser: body.browser ?? {},
    idleTimeoutMs: body.idleTimeoutMs ?? null,
    priority: body.priority ?? 'normal',
    onStepFailure: body.onStepFailure ?? 'pause',
    requires: body.requires ?? {},
  };
}

/**
 * The open fields as an idempotent request is remembered by: the request as understood, so that an omitted field
 * equals its default. Fields added after keys were first remembered count only when they differ from their
 * default, so that a request retried across an upgrade still hashes as it did before.
 */
export function hashedOpenFields(fields: Required<OpenFields>): Record<string, unknown> {
  const { priority, onStepFailure, requires, ...first } = fields;
  return {
    ...first,
    ...(priority === 'normal' ? {} : { priority }),
    ...(onStepFailure === 'pause' ? {} : { onStepFailure }),
    ...(Object.keys(requires).length === 0 ? {} : { requires }),
  };
}

/** The hash a keyed single open is remembered by. */
export function openRequestHash(fields: Required<OpenFields>): string {
  return requestHash(hashedOpenFields(fields));
}
