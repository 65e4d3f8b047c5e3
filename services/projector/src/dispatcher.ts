import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  AssignmentMessage,
  ControlNotice,
  decodeMessage,
  encodeMessage,
  SessionWorkMessage,
  type Logger,
  type RecordedSessionEvent,
  type Topology,
} from '@rpa/shared';
import type { TenantGate } from './tenantGate.js';

function assertNever(x: never): never {
  return x;
}

export type DispatchKind = 'assignment' | 'step' | 'close' | 'notice';

export interface StepDispatcherOptions {
  js: JetStreamClient;
  /** For control notices (core NATS, best effort); without it none are sent. */
  nc?: NatsConnection;
  topology: Topology;
  logger: Logger;
  /** How long to wait for JetStream's ack of one publish. */
  publishTimeoutMs?: number;
  /** Called after each acknowledged publish; `duplicate` when JetStream already held that message id. */
  onPublished?(kind: DispatchKind, duplicate: boolean): void;
  /** Per-tenant caps on active sessions; without it every opened session is assigned at once. */
  gate?: TenantGate;
}

/**
 * One message the dispatcher publishes for an event. Work goes to JetStream with `msgID`; a notice is a core-NATS
 * publish that nobody has to receive.
 */
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
  // A resumed session ran before and an operator waits on it; a cancelled one only needs cleaning up: both go ahead
  // of new work.
  const assignment = (reason: AssignmentMessage['reason'], msgID: string): Dispatch => ({
    kind: 'assignment',
    subject: topology.assignSubjectFor(event.type === 'SessionOpened' ? event.data.priority : 'high'),
    msgID,
    data: encodeMessage(AssignmentMessage, {
      v: 1,
      sessionId,
      tenantId,
      reason,
      ...(event.type === 'SessionOpened'
        ? {
            labels: event.data.labels,
            browser: event.data.browser,
            openedAt: metadata.occurredAt,
            requires: event.data.requires,
          }
        : {}),
    }),
  });
  const notice = (type: ControlNotice['event']): Dispatch => ({
    kind: 'notice',
    subject: topology.controlSubject(sessionId),
    msgID: `${eventId}.notice`,
    data: encodeMessage(ControlNotice, { v: 1, sessionId, tenantId, event: type }),
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
      return [notice('SessionResumed'), assignment('resumed', eventId)];
    case 'SessionCancelled':
      return [notice('SessionCancelled'), close(), assignment('cancelled', `${eventId}.assign`)];
    case 'SessionPaused':
      return [notice('SessionPaused')];
    case 'StepRetried':
      return [
        notice('StepRetried'),
        {
          kind: 'step',
          subject: topology.stepsSubject(sessionId),
          msgID: eventId,
          data: encodeMessage(SessionWorkMessage, {
            v: 1,
            kind: 'retry',
            sessionId,
            tenantId,
            stepId: event.data.stepId,
            seq: event.data.seq,
          }),
        },
      ];
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
    case 'StepDeadLettered':
    case 'SecretUsed':
    case 'SessionFailed':
    case 'SessionWaiting':
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
  private readonly nc: NatsConnection | undefined;
  private readonly topology: Topology;
  private readonly logger: Logger;
  private readonly publishTimeoutMs: number;
  private readonly onPublished: StepDispatcherOptions['onPublished'];
  private readonly gate: TenantGate | undefined;

  constructor(options: StepDispatcherOptions) {
    this.js = options.js;
    this.nc = options.nc;
    this.topology = options.topology;
    this.logger = options.logger;
    this.publishTimeoutMs = options.publishTimeoutMs ?? 5_000;
    this.onPublished = options.onPublished;
    this.gate = options.gate;
  }

  /**
   * Publishes the event's work, if any; throws when JetStream does not acknowledge it (retry: it is deduplicated).
   * A capped tenant's SessionOpened may be held back, and a session's end may let waiting ones through.
   */
  async handle(recorded: RecordedSessionEvent): Promise<void> {
    const dispatches = dispatchFor(recorded, this.topology);
    if (!this.gate?.concerns(recorded)) {
      for (const dispatch of dispatches) await this.publish(recorded, dispatch);
      return;
    }
    const opened =
      recorded.event.type === 'SessionOpened' ? dispatches.find((d) => d.kind === 'assignment') : undefined;
    const plan = await this.gate.plan(
      recorded,
      opened && {
        subject: opened.subject,
        msgID: opened.msgID,
        assignment: decodeMessage(AssignmentMessage, opened.data),
      },
    );
    for (const dispatch of dispatches) {
      if (dispatch === opened && !plan.admitOpened) continue;
      await this.publish(recorded, dispatch);
    }
    for (const waiting of plan.promoted) {
      await this.publish(recorded, {
        kind: 'assignment',
        subject: waiting.subject,
        msgID: waiting.msgID,
        data: encodeMessage(AssignmentMessage, waiting.assignment),
      });
    }
    await plan.commit();
    if (opened && !plan.admitOpened)
      this.logger.info(
        { sessionId: recorded.metadata.sessionId, tenantId: recorded.metadata.tenantId },
        'tenant at its session cap: session waits for a slot',
      );
  }

  /** Publishes one message built by the reconciler (a re-sent step or assignment). */
  async republish(recorded: RecordedSessionEvent, dispatch: Dispatch): Promise<boolean> {
    return this.publish(recorded, dispatch);
  }

  /** Publishes one dispatch; true when JetStream stored it (false: a duplicate, or a notice). */
  private async publish(recorded: RecordedSessionEvent, dispatch: Dispatch): Promise<boolean> {
    if (dispatch.kind === 'notice') {
      // Only a live owner cares; one replayed long after the fact reaches nobody, or an owner who re-reads anyway.
      this.nc?.publish(dispatch.subject, dispatch.data);
      return false;
    }
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
    return !ack.duplicate;
  }
}
