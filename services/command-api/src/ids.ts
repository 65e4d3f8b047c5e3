import { v5 as uuidv5, v7 as uuidv7 } from 'uuid';

/** Where fresh ids come from; injected so that tests can predict them. */
export interface IdSource {
  sessionId(): string;
  commandId(): string;
}

/** Time-ordered random ids (UUID v7): they sort by creation and index well. */
export const randomIds: IdSource = { sessionId: () => uuidv7(), commandId: () => uuidv7() };

// Fixed namespaces: changing one would map every retried request to new ids.
const SESSION_NS = 'a3f4d1c2-7b8e-4f60-9d21-5c0e6b7a8f91';
const COMMAND_NS = '0d5b9e7c-2a41-4c83-b6f2-91e8d4a7c350';
const STEP_NS = 'e81c6f24-9b3d-4a57-8c0e-3f2a1d9b6e74';

/** The session an Idempotency-Key opens: the same tenant and key always name the same session. */
export function keyedSessionId(tenantId: string, key: string): string {
  return uuidv5(JSON.stringify(['session', tenantId, key]), SESSION_NS);
}

/**
 * The session the `index`-th item of a keyed batch opens. Kept apart from keyedSessionId, so that a batch key and
 * an open key that happen to be equal name different sessions.
 */
export function keyedBatchSessionId(tenantId: string, key: string, index: number): string {
  return uuidv5(JSON.stringify(['batch', tenantId, key, index]), SESSION_NS);
}

/** The command id of a keyed request, so that its retry derives the same event ids. */
export function keyedCommandId(
  kind: 'open' | 'submit',
  tenantId: string,
  sessionId: string,
  key: string,
): string {
  return uuidv5(JSON.stringify([kind, tenantId, sessionId, key]), COMMAND_NS);
}

/** The id of the n-th step a command submits: a retried command submits the same ids. */
export function stepIdFor(commandId: string, index: number): string {
  return uuidv5(`${commandId}#${index}`, STEP_NS);
}
