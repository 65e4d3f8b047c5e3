import { decodeMessage, ControlNotice, type Logger, type NatsConnection, type Topology } from '@rpa/shared';

type Subscription = ReturnType<NatsConnection['subscribe']>;

/**
 * The control notices of one session (core NATS, best effort), for its owner while it runs the session: a paused
 * step waits for the next one, a running step is cut short by a cancellation. Notices are only nudges: whoever
 * wakes up re-reads the stream, and polls in case a notice was lost.
 */
export class ControlNotices {
  private subscription: Subscription | null = null;
  private waiters = new Set<() => void>();

  constructor(
    private readonly options: {
      nc: NatsConnection | undefined;
      topology: Topology;
      sessionId: string;
      tenantId: string;
      logger: Logger;
      /** Told of every valid notice of the session. */
      onNotice: (notice: ControlNotice) => void;
    },
  ) {}

  /** Subscribes; without a connection nothing is heard and waiters only poll. */
  start(): void {
    const { nc, topology, sessionId, tenantId, logger, onNotice } = this.options;
    if (!nc || this.subscription) return;
    this.subscription = nc.subscribe(topology.controlSubject(sessionId), {
      callback: (error, msg) => {
        if (error) return;
        let notice: ControlNotice;
        try {
          notice = decodeMessage(ControlNotice, msg.data);
        } catch (err) {
          logger.warn({ err }, 'undecodable control notice ignored');
          return;
        }
        if (notice.sessionId !== sessionId || notice.tenantId !== tenantId) return;
        logger.debug({ event: notice.event }, 'control notice');
        this.wake();
        onNotice(notice);
      },
    });
  }

  /** Resolves at the next notice, after `timeoutMs`, or when the signal aborts, whichever comes first. */
  next(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  stop(): void {
    this.subscription?.unsubscribe();
    this.subscription = null;
    this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
