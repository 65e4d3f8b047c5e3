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

/** A subscription as acknowledged back to the client. */
export type SubscriptionRef = { session: string } | { all: true };

/** Codes of the error frames the feed sends. */
export type FeedErrorCode = 'INVALID_JSON' | 'INVALID_MESSAGE' | 'MESSAGE_TOO_LARGE' | 'SUBSCRIPTION_LIMIT';

/** What the feed sends. */
export type ServerMessage =
  | { type: 'subscribed'; subscription: SubscriptionRef }
  | { type: 'unsubscribed'; subscription: SubscriptionRef }
  | { type: 'session'; document: SessionDocument }
  | { type: 'sessionRemoved'; sessionId: string }
  | { type: 'error'; error: { code: FeedErrorCode; message: string } };
