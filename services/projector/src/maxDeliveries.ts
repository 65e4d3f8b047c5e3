import type { JetStreamManager } from '@nats-io/jetstream';
import {
  CommandRejectedError,
  decodeMessage,
  SessionWorkMessage,
  type Logger,
  type NatsConnection,
  type SessionCommandHandler,
  type Topology,
} from '@rpa/shared';
import { z } from 'zod';

/** The part of JetStream's max-deliveries advisory this uses. */
const MaxDeliveriesAdvisory = z.object({
  stream: z.string(),
  consumer: z.string(),
  stream_seq: z.number().int().positive(),
  deliveries: z.number().int().nonnegative(),
});

export interface MaxDeliveriesDeps {
  nc: NatsConnection;
  jsm: JetStreamManager;
  topology: Topology;
  handler: SessionCommandHandler;
  logger: Logger;
  now?: () => Date;
  /** Called once per advisory handled: dead_lettered, already_final (a result was in the stream) or ignored. */
  onOutcome?(outcome: 'dead_lettered' | 'already_final' | 'ignored' | 'failed'): void;
}

/**
 * Ends the steps whose message ran out of deliveries without a result: JetStream stops delivering such a message
 * and says so in an advisory; this turns the advisory into the DeadLetterStep command (the step fails for good with
 * DELIVERY_EXHAUSTED, reason max_deliveries; a step whose result is in the stream is left alone) and then removes
 * the stuck message from the work stream. Advisories are core NATS: one missed while the projector is down leaves
 * the message in place, where the step is still visible as running.
 */
export class MaxDeliveriesReconciler {
  private subscription: ReturnType<NatsConnection['subscribe']> | null = null;
  private loop: Promise<void> = Promise.resolve();
  private readonly now: () => Date;

  constructor(private readonly deps: MaxDeliveriesDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  start(): void {
    if (this.subscription) return;
    const sub = this.deps.nc.subscribe(this.deps.topology.stepMaxDeliveriesAdvisory);
    this.subscription = sub;
    this.loop = (async () => {
      for await (const msg of sub) {
        try {
          const advisory = MaxDeliveriesAdvisory.parse(msg.json());
          await this.handle(advisory.stream_seq, advisory.deliveries);
        } catch (error) {
          this.deps.onOutcome?.('failed');
          this.deps.logger.error({ err: error }, 'handling a max-deliveries advisory failed');
        }
      }
    })();
  }

  /** Stops listening; waits for the advisory in hand. Safe to call twice. */
  async close(): Promise<void> {
    const sub = this.subscription;
    if (sub && !sub.isClosed()) sub.unsubscribe();
    await this.loop;
  }

  /** Dead-letters the step of the work-stream message at `seq`, then deletes the message. */
  async handle(seq: number, deliveries: number): Promise<void> {
    const { jsm, topology, handler, logger } = this.deps;
    const stored = await jsm.streams.getMessage(topology.workStream, { seq });
    if (!stored) {
      this.deps.onOutcome?.('ignored');
      return;
    }
    const work = decodeMessage(SessionWorkMessage, stored.data);
    if (work.kind === 'close') {
      // A close nobody could take: the session's owner is gone; its assignment brings the next one.
      this.deps.onOutcome?.('ignored');
      return;
    }
    const { sessionId, tenantId, stepId } = work;
    try {
      const result = await handler.handle({
        type: 'DeadLetterStep',
        commandId: `dead-letter:${sessionId}:${stepId}:${seq}`,
        sessionId,
        tenantId,
        at: this.now().toISOString(),
        actor: { kind: 'system', id: 'projector' },
        stepId,
        deliveries,
      });
      const outcome = result.events.length > 0 ? 'dead_lettered' : 'already_final';
      this.deps.onOutcome?.(outcome);
      logger.warn({ sessionId, tenantId, stepId, deliveries, outcome }, 'step message ran out of deliveries');
    } catch (error) {
      if (!(error instanceof CommandRejectedError)) throw error;
      this.deps.onOutcome?.('ignored');
      logger.warn({ sessionId, stepId, code: error.code }, 'max-deliveries advisory for an unknown step');
    }
    await jsm.streams.deleteMessage(topology.workStream, seq).catch(() => false);
  }
}
