import {
  decodeSessionEvent,
  SESSION_STREAM_PREFIX,
  type AllSubscription,
  type EventStore,
  type Logger,
  type RecordedEvent,
  type RecordedSessionEvent,
} from '@rpa/shared';
import type { CheckpointStore } from './checkpoints.js';

/** Capped exponential backoff between attempts of a failing handler, flush or subscription. */
export interface RetryPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
}

/** What a subscription reports as it goes, for metrics. */
export interface SubscriptionHooks {
  /** An event was handled (or skipped as unknown); its effects may still be buffered. */
  handled?(type: string, position: number): void;
  /** The handler, its flush or the store failed; the same work is retried after a backoff. */
  failed?(stage: 'handle' | 'flush' | 'subscribe'): void;
  /** An event could not be decoded and was skipped (it never will decode: retrying cannot help). */
  poisoned?(event: RecordedEvent): void;
  /** A checkpoint was saved. */
  checkpointed?(position: number): void;
}

export interface CheckpointedSubscriptionOptions {
  store: EventStore;
  checkpoints: CheckpointStore;
  /** Names the checkpoint; two subscriptions with the same name share one position. */
  name: string;
  streamPrefix?: string;
  /** Applies one event. Delivery is at least once (after a restart, events since the checkpoint come again): be idempotent. */
  handle(event: RecordedSessionEvent): Promise<void>;
  /**
   * Makes the effects of every handled event durable, for handlers that buffer (a read model writing once per
   * batch). The checkpoint never moves past an event whose effects were not flushed.
   */
  flush?(): Promise<void>;
  logger: Logger;
  /** Save the position after this many events... */
  checkpointEveryEvents?: number;
  /** ...or this long after the last save, whichever comes first; and always on close. */
  checkpointEveryMs?: number;
  /** Most events handled between two flushes while catching up. */
  flushEveryEvents?: number;
  /** Flush once no further event has arrived for this long (the live tail should land quickly). */
  idleFlushMs?: number;
  retry?: Partial<RetryPolicy>;
  hooks?: SubscriptionHooks;
}

/** A running checkpointed subscription. */
export interface CheckpointedSubscription {
  readonly name: string;
  /** Global position of the last event handled. */
  readonly position: number;
  /** Global position last saved as the checkpoint. */
  readonly checkpoint: number;
  /** True while the handler, its flush or the store keeps failing. */
  readonly failing: boolean;
  /** Settles when the subscription has stopped and saved its last checkpoint. */
  readonly done: Promise<void>;
  /** Stops after the event in hand, flushes, saves the checkpoint. Safe to call twice. */
  close(): Promise<void>;
}

const IDLE = Symbol('idle');
const DEFAULT_RETRY: RetryPolicy = { initialDelayMs: 100, maxDelayMs: 10_000 };

class SubscriptionRunner implements CheckpointedSubscription {
  readonly name: string;
  position: number;
  checkpoint: number;
  failing = false;
  done: Promise<void> = Promise.resolve();

  /** Everything up to here has been handled and flushed: the checkpoint may move this far. */
  private durable: number;
  private dirty = false;
  private sinceFlush = 0;
  private sinceSave = 0;
  private lastSaveAt = Date.now();
  private stopping = false;
  private subscription: AllSubscription | null = null;
  private wakeSleeper: (() => void) | null = null;

  private readonly logger: Logger;
  private readonly retry: RetryPolicy;
  private readonly checkpointEveryEvents: number;
  private readonly checkpointEveryMs: number;
  private readonly flushEveryEvents: number;
  private readonly idleFlushMs: number;
  private readonly prefix: string;
  private readonly hooks: SubscriptionHooks;

  constructor(
    private readonly options: CheckpointedSubscriptionOptions,
    start: number,
  ) {
    this.name = options.name;
    this.position = this.durable = this.checkpoint = start;
    this.logger = options.logger.child({ subscription: options.name });
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.checkpointEveryEvents = options.checkpointEveryEvents ?? 500;
    this.checkpointEveryMs = options.checkpointEveryMs ?? 1_000;
    this.flushEveryEvents = options.flushEveryEvents ?? 200;
    this.idleFlushMs = options.idleFlushMs ?? 5;
    this.prefix = options.streamPrefix ?? SESSION_STREAM_PREFIX;
    this.hooks = options.hooks ?? {};
  }

  start(): void {
    this.done = this.run();
  }

  async close(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.wakeSleeper?.();
      await this.subscription?.close().catch((error: unknown) => {
        this.logger.warn({ err: error }, 'closing the store subscription failed');
      });
    }
    await this.done;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      try {
        await this.consume();
        if (this.stopping) break;
        this.logger.warn({ position: this.position }, 'store subscription ended: subscribing again');
        failures++;
      } catch (error) {
        if (this.stopping) break;
        failures++;
        this.failing = true;
        this.hooks.failed?.('subscribe');
        this.logger.error(
          { err: error, position: this.position, attempt: failures },
          'store subscription failed: subscribing again after a pause',
        );
      }
      await this.sleep(this.delay(failures));
    }
    await this.finalCommit();
  }

  private async consume(): Promise<void> {
    const from = this.position > 0 ? { position: this.position } : ('start' as const);
    const subscription = this.options.store.subscribeToAll({ from, streamPrefix: this.prefix });
    this.subscription = subscription;
    let iterator: AsyncIterator<RecordedEvent> | undefined;
    try {
      if (this.stopping) return;
      iterator = subscription[Symbol.asyncIterator]();
      let next = this.pull(iterator);
      for (;;) {
        const result = await this.nextOrIdle(next);
        if (result === IDLE) {
          await this.onIdle();
          if (this.stopping) return;
          continue;
        }
        if (result.done) return;
        const handled = await this.process(result.value);
        if (!handled || this.stopping) return;
        await this.afterEvent();
        if (this.stopping) return;
        next = this.pull(iterator);
      }
    } finally {
      this.subscription = null;
      await subscription.close().catch(() => {});
      // Let the store's iterator run its own cleanup; closing the subscription has already ended any pending pull.
      iterator?.return?.().catch(() => {});
    }
  }

  private pull(iterator: AsyncIterator<RecordedEvent>): Promise<IteratorResult<RecordedEvent>> {
    const next = iterator.next();
    // A pull still pending when we stop is abandoned; its failure must not surface as an unhandled rejection.
    next.catch(() => {});
    return next;
  }

  private async nextOrIdle(
    next: Promise<IteratorResult<RecordedEvent>>,
  ): Promise<IteratorResult<RecordedEvent> | typeof IDLE> {
    let waitMs: number;
    if (this.dirty) waitMs = this.idleFlushMs;
    else if (this.durable > this.checkpoint)
      waitMs = Math.max(0, this.lastSaveAt + this.checkpointEveryMs - Date.now());
    else return next;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        next,
        new Promise<typeof IDLE>((resolve) => {
          timer = setTimeout(() => resolve(IDLE), waitMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Handles one event, retrying until it succeeds; false when stopped before it did. */
  private async process(recorded: RecordedEvent): Promise<boolean> {
    if (recorded.position <= this.position) return true; // already handled before a resubscribe
    let decoded: RecordedSessionEvent | null = null;
    if (recorded.streamId.startsWith(this.prefix)) {
      try {
        decoded = decodeSessionEvent(recorded);
      } catch (error) {
        this.hooks.poisoned?.(recorded);
        this.logger.error(
          {
            err: error,
            position: recorded.position,
            eventId: recorded.eventId,
            streamId: recorded.streamId,
            type: recorded.type,
          },
          'event does not decode: skipped',
        );
      }
    }
    if (decoded) {
      const ok = await this.withRetry('handle', () => this.options.handle(decoded), {
        position: decoded.position,
        eventId: decoded.eventId,
        type: decoded.event.type,
      });
      if (!ok) return false;
      if (this.options.flush) {
        this.dirty = true;
        this.sinceFlush++;
      }
    }
    this.position = recorded.position;
    if (!this.dirty) this.durable = this.position;
    this.sinceSave++;
    this.hooks.handled?.(recorded.type, recorded.position);
    return true;
  }

  private async afterEvent(): Promise<void> {
    if (this.sinceFlush >= this.flushEveryEvents) await this.flush();
    if (
      this.sinceSave >= this.checkpointEveryEvents ||
      Date.now() - this.lastSaveAt >= this.checkpointEveryMs
    ) {
      if (await this.flush()) await this.save();
    }
  }

  private async onIdle(): Promise<void> {
    if (this.dirty) {
      await this.flush();
      return;
    }
    await this.save();
  }

  /** Flushes the handler's buffered effects, retrying; false when stopped before it succeeded. */
  private async flush(): Promise<boolean> {
    if (!this.dirty || !this.options.flush) return true;
    const flush = this.options.flush;
    const upTo = this.position;
    const ok = await this.withRetry('flush', () => flush(), { position: upTo });
    if (!ok) return false;
    this.dirty = false;
    this.sinceFlush = 0;
    this.durable = upTo;
    return true;
  }

  private async save(): Promise<void> {
    if (this.durable <= this.checkpoint) return;
    const position = this.durable;
    try {
      await this.options.checkpoints.save(this.name, position);
      this.checkpoint = position;
      this.sinceSave = 0;
      this.lastSaveAt = Date.now();
      this.hooks.checkpointed?.(position);
    } catch (error) {
      // The next save carries a later position anyway; a late checkpoint only means more redelivery on restart.
      this.lastSaveAt = Date.now();
      this.logger.warn({ err: error, position }, 'saving the checkpoint failed');
    }
  }

  private async finalCommit(): Promise<void> {
    if (this.dirty && this.options.flush) {
      try {
        await this.options.flush();
        this.dirty = false;
        this.durable = this.position;
      } catch (error) {
        this.logger.error(
          { err: error, position: this.position, checkpoint: this.durable },
          'final flush failed: the unflushed events will be handled again on the next start',
        );
      }
    }
    await this.save();
  }

  private async withRetry(
    stage: 'handle' | 'flush',
    operation: () => Promise<void>,
    context: Record<string, unknown>,
  ): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        await operation();
        this.failing = false;
        return true;
      } catch (error) {
        this.failing = true;
        this.hooks.failed?.(stage);
        if (this.stopping) {
          this.logger.warn({ err: error, ...context, attempt }, `${stage} failed while stopping`);
          return false;
        }
        const delayMs = this.delay(attempt);
        // The event is not skipped: the checkpoint stays behind it until it is handled.
        this.logger.error(
          { err: error, ...context, attempt, retryInMs: delayMs },
          `${stage} failed: retrying`,
        );
        await this.sleep(delayMs);
        if (this.stopping) return false;
      }
    }
  }

  private delay(attempt: number): number {
    const exp = this.retry.initialDelayMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30);
    return Math.min(this.retry.maxDelayMs, exp);
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSleeper = () => {
        this.wakeSleeper = null;
        done();
      };
    });
  }
}

/**
 * Runs a catch-up subscription over all session events from the subscription's stored checkpoint: every event
 * after it is decoded and handed to `handle` in global order, then live events as they land. The position is
 * saved in batches (every N events or T ms, and on close), only once the handler has flushed the effects of
 * every event up to it. Delivery is at least once. A failing handler is retried with capped backoff, never
 * skipped; an event that cannot be decoded is logged and skipped.
 */
export async function runCheckpointedSubscription(
  options: CheckpointedSubscriptionOptions,
): Promise<CheckpointedSubscription> {
  const stored = await options.checkpoints.load(options.name);
  const runner = new SubscriptionRunner(options, stored ?? 0);
  options.logger.info({ subscription: options.name, from: stored ?? 'start' }, 'subscription starting');
  runner.start();
  return runner;
}
