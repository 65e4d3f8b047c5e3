import { randomUUID } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import {
  applyToDocument,
  AssignmentMessage,
  ControlNotice,
  decodeSessionEvent,
  encodeMessage,
  sessionStreamId,
  SessionWorkMessage,
  type Actor,
  type CommandResult,
  type EventStore,
  type NatsConnection,
  type RecordedSessionEvent,
  type SessionDocument,
  type SessionCommand,
  type SessionCommandHandler,
  type StepSpec,
  type Topology,
} from '@rpa/shared';

/**
 * The projector's part, done by hand for robot tests: commands through the shared command handler, and the work
 * messages the dispatcher would publish for them (also, where a test needs it, work the stream never saw).
 */
export class WorkDriver {
  constructor(
    private readonly deps: {
      js: JetStreamClient;
      topology: Topology;
      store: EventStore;
      handler: SessionCommandHandler;
      tenantId: string;
      actor: Actor;
    },
  ) {}

  /** The fields every command of the test tenant carries, with a fresh command id. */
  command<T extends SessionCommand['type']>(type: T, sessionId: string) {
    const { tenantId, actor } = this.deps;
    return { type, commandId: randomUUID(), sessionId, tenantId, at: new Date().toISOString(), actor };
  }

  async publishAssignment(
    sessionId: string,
    msgID: string,
    fields: Partial<Omit<AssignmentMessage, 'v' | 'sessionId' | 'tenantId'>> = {},
  ): Promise<void> {
    const { js, topology, tenantId } = this.deps;
    const body = encodeMessage(AssignmentMessage, { v: 1, sessionId, tenantId, reason: 'opened', ...fields });
    await js.publish(topology.assignSubject, body, { msgID });
  }

  async publishStep(
    sessionId: string,
    work: { stepId: string; seq: number; step: StepSpec },
    msgID: string,
  ): Promise<void> {
    const { js, topology, tenantId } = this.deps;
    const body = encodeMessage(SessionWorkMessage, { v: 1, kind: 'step', sessionId, tenantId, ...work });
    await js.publish(topology.stepsSubject(sessionId), body, { msgID });
  }

  /** A retry message, as the dispatcher publishes one for StepRetried (msgID: the event's id). */
  async publishRetry(sessionId: string, work: { stepId: string; seq: number }, msgID: string): Promise<void> {
    const { js, topology, tenantId } = this.deps;
    const body = encodeMessage(SessionWorkMessage, { v: 1, kind: 'retry', sessionId, tenantId, ...work });
    await js.publish(topology.stepsSubject(sessionId), body, { msgID });
  }

  /** The control notice the dispatcher publishes (core NATS) for an operator's change to the session. */
  async publishNotice(nc: NatsConnection, sessionId: string, event: ControlNotice['event']): Promise<void> {
    const { topology, tenantId } = this.deps;
    nc.publish(
      topology.controlSubject(sessionId),
      encodeMessage(ControlNotice, { v: 1, sessionId, tenantId, event }),
    );
    await nc.flush();
  }

  /** The session's read-model document, folded from its whole stream. */
  async document(sessionId: string): Promise<SessionDocument | null> {
    let doc: SessionDocument | null = null;
    for (const recorded of await this.events(sessionId)) doc = applyToDocument(doc, recorded);
    return doc;
  }

  async publishClose(sessionId: string, msgID: string): Promise<void> {
    const { js, topology, tenantId } = this.deps;
    const body = encodeMessage(SessionWorkMessage, { v: 1, kind: 'close', sessionId, tenantId });
    await js.publish(topology.stepsSubject(sessionId), body, { msgID });
  }

  /** Submits the steps and publishes a step message for each one the stream recorded. */
  async submit(sessionId: string, steps: Array<{ stepId: string; step: StepSpec }>): Promise<CommandResult> {
    const result = await this.deps.handler.handle({ ...this.command('SubmitSteps', sessionId), steps });
    for (const { event, eventId } of result.events) {
      if (event.type === 'StepSubmitted') await this.publishStep(sessionId, event.data, eventId);
    }
    return result;
  }

  /** The session's events as the store has them now, decoded. */
  async events(sessionId: string): Promise<RecordedSessionEvent[]> {
    const recorded = await this.deps.store.readStream(sessionStreamId(sessionId));
    return recorded.map((r) => decodeSessionEvent(r)).filter((r): r is RecordedSessionEvent => r !== null);
  }
}
