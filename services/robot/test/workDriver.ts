import { randomUUID } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import {
  AssignmentMessage,
  decodeSessionEvent,
  encodeMessage,
  sessionStreamId,
  SessionWorkMessage,
  type Actor,
  type CommandResult,
  type EventStore,
  type RecordedSessionEvent,
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
