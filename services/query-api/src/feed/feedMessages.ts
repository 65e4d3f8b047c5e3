import { z } from 'zod';
import type { SessionDocument } from '@rpa/shared';
import { SessionId } from '../http/schemas.js';

const Target = z
  .strictObject({
    session: SessionId.optional(),
    all: z.literal(true).optional(),
  })
  .refine((t) => (t.session === undefined) !== (t.all === undefined), {
    message: 'give exactly one of "session" or "all": true',
  });

/** What a feed client may send: subscribe to one session or to all of its tenant's, or unsubscribe. */
export const ClientMessage = z
  .strictObject({
    subscribe: z
      .strictObject({
        session: SessionId.optional(),
        all: z.literal(true).optional(),
        /** Resume: first send every matching document whose position is above this one. */
        fromPosition: z.number().int().nonnegative().optional(),
      })
      .refine((t) => (t.session === undefined) !== (t.all === undefined), {
        message: 'give exactly one of "session" or "all": true',
      })
      .optional(),
    unsubscribe: Target.optional(),
  })
  .refine((m) => (m.subscribe === undefined) !== (m.unsubscribe === undefined), {
    message: 'a message holds exactly one of "subscribe" or "unsubscribe"',
  });
export type ClientMessage = z.infer<typeof ClientMessage>;

const RequestId = z
  .string()
  .min(1)
  .max(100)
  .optional()
  .describe('Echoed in the control-result frame, to match answers to requests');

/**
 * What a feed client may send to steer a session, as the command API would: pause, resume or cancel it, or retry
 * one of its steps that failed for good.
 */
export const ControlMessage = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('pause'), sessionId: SessionId, requestId: RequestId }),
  z.strictObject({ type: z.literal('resume'), sessionId: SessionId, requestId: RequestId }),
  z.strictObject({
    type: z.literal('cancel'),
    sessionId: SessionId,
    requestId: RequestId,
    reason: z.string().max(500).optional(),
  }),
  z.strictObject({
    type: z.literal('retry'),
    sessionId: SessionId,
    stepId: z.string().min(1).max(100),
    requestId: RequestId,
  }),
]);
export type ControlMessage = z.infer<typeof ControlMessage>;

/** A subscription as acknowledged back to the client. */
export type SubscriptionRef = { session: string } | { all: true };

/** Codes of the error frames the feed sends. */
export type FeedErrorCode =
  | 'INVALID_JSON'
  | 'INVALID_MESSAGE'
  | 'MESSAGE_TOO_LARGE'
  | 'SUBSCRIPTION_LIMIT'
  | 'CONTROLS_UNAVAILABLE'
  | 'TOO_MANY_CONTROLS'
  | 'INTERNAL';

/** How a control message ended: the session's status right after it, or why it was refused. */
export type ControlResult = {
  type: 'control-result';
  requestId?: string;
  control: ControlMessage['type'];
  sessionId: string;
  stepId?: string;
} & ({ ok: true; status: string } | { ok: false; error: { code: string; message: string } });

/** What the feed sends. */
export type ServerMessage =
  | { type: 'subscribed'; subscription: SubscriptionRef }
  | { type: 'unsubscribed'; subscription: SubscriptionRef }
  | { type: 'session'; document: SessionDocument }
  | { type: 'sessionRemoved'; sessionId: string }
  | ControlResult
  | { type: 'error'; requestId?: string; error: { code: FeedErrorCode; message: string } };
