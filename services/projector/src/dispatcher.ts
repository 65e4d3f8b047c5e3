import type { JetStreamClient } from '@nats-io/jetstream';
import {
  AssignmentMessage,
  encodeMessage,
  SessionWorkMessage,
  type Logger,
  type RecordedSessionEvent,
  type Topology,
} from '@rpa/shared';

function assertNever(x: never): never {
  return x;
}

export type DispatchKind = 'assignment' | 'step' | 'close';

export interface StepDispatcherOptions {
  js: JetStreamClient;
  topology: Topology;
  logger: Logger;
  /** How long to wait for JetStream's ack of one publish. */
  publishTimeoutMs?: number;
  /** Called after each acknowledged publish; `duplicate` when JetStream already held that message id. */
  onPublished?(kind: DispatchKind, duplicate: boolean): void;
}

/** One message the dispatcher publishes for an event, or null when the event carries no work. */
export interface Dispatch {
  kind: DispatchKind;
  subject: string;
  data: Uint8Array;
  msgID: string;
}

/**
 * Turns session events into work: SessionOpened (and SessionResumed) into an assignment on the assign subject,
 * each StepSubmitted into a step message and SessionCloseRequested into a close message on the session's own
 * subject (so a close is ordered after the steps submitted before it). SessionCancelled gives both: a close for
 * the robot holding the session, and an assignment so that some robot cleans up one that nobody holds. Message
 * ids derive from the event id, so a replay after a restart is dropped by JetStream's duplicate window instead of
 * running anything twice.
 */
export function dispatchFor(recorded: RecordedSessionEvent, topology: Topology): Dispatch[] {
  const { event, metadata, eventId } = recorded;
  const { sessionId, tenantId } = metadata;
  const assignment = (reason: AssignmentMessage['reason'], msgID: string): Dispatch => ({
    kind: 'assignment',
    subject: topology.assignSubject,
    msgID,
    data: encodeMessage(AssignmentMessage, {
      v: 1,
      sessionId,
      tenantId,
      reason,
      ...(event.type === 'SessionOpened'
        ? { labels: event.data.labels, browser: event.data.browser, openedAt: metadata.occurredAt }
        : {}),
    }),
  });
  const close = (): Dispatch => ({
    kind: 'close',
    subject: topology.stepsSubject(sessionId),
    msgID: eventId,
    data: encodeMessage(SessionWorkMessage, { v: 1, kind: 'close', sessionId, tenantId }),
  });
  switch (event.type) {
    case 'SessionOpened':
      return [assignment('opened', eventId)];
    case 'SessionResumed':
      return [assignment('resumed', eventId)];
    case 'SessionCancelled':
      return [close(), assignment('cancelled', `${eventId}.assign`)];
    case 'StepSubmitted':
      return [
        {
          kind: 'step',
          subject: topology.stepsSubject(sessionId),
          msgID: eventId,
          data: encodeMessage(SessionWorkMessage, {
            v: 1,
            kind: 'step',
            sessionId,
            tenantId,
            stepId: event.data.stepId,
            seq: event.data.seq,
            step: event.data.step,
          }),
        },
      ];
    case 'SessionCloseRequested':
      return [close()];
    case 'SessionClaimed':
    case 'StepStarted':
    case 'StepSucceeded':
    case 'StepFailed':
    case 'SessionCheckpointed':
    case 'SessionRecovered':
    case 'SessionNeedsAttention':
    case 'SessionExpired':
    case 'SessionClosed':
      return [];
    default:
      return assertNever(event);
  }
}

/**
 * The step dispatcher: publishes the work each event carries, one publish at a time so that a session's
 * messages are stored in event order even when a publish has to be retried.
 */
export class StepDispatcher {
  private readonly js: JetStreamClient;
  private readonly topology: Topology;
  private readonly logger: Logger;
  private readonly publishTimeoutMs: number;
  private readonly onPublished: StepDispatcherOptions['onPublished'];

  constructor(options: StepDispatcherOptions) {
    this.js = options.js;
    this.topology = options.topology;
    this.logger = options.logger;
    this.publishTimeoutMs = options.publishTimeoutMs ?? 5_000;
    this.onPublished = options.onPublished;
  }

  /** Publishes the event's work, if any; throws when JetStream does not acknowledge it (retry: it is deduplicated). */
  async handle(recorded: RecordedSessionEvent): Promise<void> {
    for (const dispatch of dispatchFor(recorded, this.topology)) await this.publish(recorded, dispatch);
  }

  private async publish(recorded: RecordedSessionEvent, dispatch: Dispatch): Promise<void> {
    const ack = await this.js.publish(dispatch.subject, dispatch.data, {
      msgID: dispatch.msgID,
      timeout: this.publishTimeoutMs,
    });
    this.onPublished?.(dispatch.kind, ack.duplicate);
    // Never log the message body: a step may carry typed values.
    this.logger.debug(
      {
        kind: dispatch.kind,
        sessionId: recorded.metadata.sessionId,
        eventId: recorded.eventId,
        position: recorded.position,
        seq: ack.seq,
        duplicate: ack.duplicate,
      },
      'work published',
    );
  }
}
