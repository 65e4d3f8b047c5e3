import CircuitBreaker from 'opossum';
import {
  CommandRejectedError,
  ConcurrencyExhaustedError,
  InvalidAppendError,
  RpaError,
  SchemaError,
} from '@rpa/shared';
import { StepFailure } from './steps/errors.js';

export type BreakerState = 'closed' | 'half_open' | 'open';

/** A breaker refused the call: the dependency behind it failed too often lately. Nothing was attempted. */
export class BreakerOpenError extends RpaError {
  constructor(readonly breaker: string) {
    super('BREAKER_OPEN', `circuit ${breaker} is open: calls are paused`);
  }
}

/** A call ran past its breaker's timeout; it may still complete in the background. */
export class BreakerTimeoutError extends RpaError {
  constructor(
    readonly breaker: string,
    timeoutMs: number,
  ) {
    super('BREAKER_TIMEOUT', `circuit ${breaker}: call did not finish within ${timeoutMs} ms`);
  }
}

export interface BreakerOptions {
  /** Longest a call may take before it counts as failed; false when each call carries its own deadline. */
  timeoutMs: number | false;
  /** How long an open breaker waits before letting one trial call through. */
  resetTimeoutMs: number;
  errorThresholdPercentage: number;
  /** Calls within the rolling window before the error rate may open the breaker. */
  volumeThreshold: number;
  /** True for errors that say nothing about the dependency's health (a rejected command, a missing selector). */
  isBusinessFailure: (error: unknown) => boolean;
}

type Thunk = () => Promise<unknown>;

/** One opossum circuit breaker around calls to one dependency, speaking in this project's errors. */
export class Breaker {
  private readonly circuit: CircuitBreaker<[Thunk], unknown>;
  private readonly timeoutMs: number | false;

  constructor(
    readonly name: string,
    options: BreakerOptions,
    onStateChange: (breaker: Breaker) => void = () => {},
  ) {
    this.timeoutMs = options.timeoutMs;
    this.circuit = new CircuitBreaker((work: Thunk) => work(), {
      name,
      timeout: options.timeoutMs,
      resetTimeout: options.resetTimeoutMs,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      errorFilter: options.isBusinessFailure,
    });
    const changed = () => onStateChange(this);
    this.circuit.on('open', changed);
    this.circuit.on('halfOpen', changed);
    this.circuit.on('close', changed);
  }

  /** Runs the work through the breaker: BreakerOpenError when open, BreakerTimeoutError past the timeout. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return (await this.circuit.fire(work)) as T;
    } catch (error) {
      const code = (error as { code?: unknown })?.code;
      if (error instanceof Error && CircuitBreaker.isOurError(error)) {
        if (code === 'ETIMEDOUT') throw new BreakerTimeoutError(this.name, this.timeoutMs || 0);
        throw new BreakerOpenError(this.name);
      }
      throw error;
    }
  }

  get state(): BreakerState {
    if (this.circuit.opened) return 'open';
    if (this.circuit.halfOpen) return 'half_open';
    return 'closed';
  }

  /** Resolves once a call may go through again (half-open or closed), or when the signal aborts. */
  whenCallable(signal?: AbortSignal): Promise<void> {
    if (!this.circuit.opened || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.circuit.off('halfOpen', done);
        this.circuit.off('close', done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.circuit.on('halfOpen', done);
      this.circuit.on('close', done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Stops the breaker's timers; later calls fail with BreakerOpenError. */
  shutdown(): void {
    this.circuit.shutdown();
  }
}

export interface BreakerSettings {
  eventStore: Omit<BreakerOptions, 'isBusinessFailure'>;
  launch: Omit<BreakerOptions, 'isBusinessFailure'>;
  origin: Omit<BreakerOptions, 'isBusinessFailure'>;
  /** Origins whose breakers are kept; the least recently used closed ones are forgotten beyond this. */
  maxOrigins: number;
  /** Also told of every breaker state change (diagnostics, tests that follow one breaker's transitions). */
  onStateChange?: (name: string, state: BreakerState) => void;
}

/**
 * Default breaker settings. Held messages keep signalling progress while a call runs, so a slow call does not get
 * its message redelivered: timeouts are about giving up on a hung dependency, not about the ack wait. A browser
 * launch on a busy machine can take several seconds; browser work carries the step's own timeout instead.
 */
export function defaultBreakerSettings(): BreakerSettings {
  return {
    eventStore: {
      timeoutMs: 10_000,
      resetTimeoutMs: 5_000,
      errorThresholdPercentage: 50,
      volumeThreshold: 5,
    },
    launch: {
      timeoutMs: 30_000,
      resetTimeoutMs: 15_000,
      errorThresholdPercentage: 50,
      volumeThreshold: 5,
    },
    origin: { timeoutMs: false, resetTimeoutMs: 30_000, errorThresholdPercentage: 50, volumeThreshold: 5 },
    maxOrigins: 500,
  };
}

/** Failures that are the caller's business, not the event store's health. */
export function isEventStoreBusinessFailure(error: unknown): boolean {
  return (
    error instanceof CommandRejectedError ||
    error instanceof ConcurrencyExhaustedError ||
    error instanceof InvalidAppendError ||
    error instanceof SchemaError
  );
}

/** Step failures that are about the page or the step, not about whether the target answers. */
export function isStepBusinessFailure(error: unknown): boolean {
  return error instanceof StepFailure && !error.countsAgainstTarget;
}

/** The robot's breakers: one for event-store calls, one for browser launch, one per target origin. */
export class Breakers {
  readonly eventStore: Breaker;
  readonly launch: Breaker;
  private readonly origins = new Map<string, Breaker>();

  constructor(
    private readonly settings: BreakerSettings,
    private readonly listener: {
      onStateChange?: (breaker: Breaker) => void;
      onForget?: (breaker: Breaker) => void;
    } = {},
  ) {
    const onChange = (b: Breaker) => {
      listener.onStateChange?.(b);
      settings.onStateChange?.(b.name, b.state);
    };
    this.eventStore = new Breaker(
      'event-store',
      { ...settings.eventStore, isBusinessFailure: isEventStoreBusinessFailure },
      onChange,
    );
    // Any launch failure is the browser's: nothing about it is the caller's business.
    this.launch = new Breaker(
      'browser-launch',
      { ...settings.launch, isBusinessFailure: () => false },
      onChange,
    );
  }

  /** The breaker of one target origin (scheme://host:port), created on first use. */
  forOrigin(origin: string): Breaker {
    const name = `origin:${origin}`;
    let breaker = this.origins.get(name);
    if (breaker) {
      // Re-insert: the map's order is the recency order used to forget idle origins.
      this.origins.delete(name);
    } else {
      breaker = new Breaker(
        name,
        { ...this.settings.origin, isBusinessFailure: isStepBusinessFailure },
        (b) => {
          this.listener.onStateChange?.(b);
          this.settings.onStateChange?.(b.name, b.state);
        },
      );
      this.listener.onStateChange?.(breaker);
      this.settings.onStateChange?.(breaker.name, breaker.state);
    }
    this.origins.set(name, breaker);
    this.forgetIdleOrigins();
    return breaker;
  }

  /** Every breaker with its current state. */
  all(): Breaker[] {
    return [this.eventStore, this.launch, ...this.origins.values()];
  }

  shutdown(): void {
    for (const breaker of this.all()) breaker.shutdown();
    this.origins.clear();
  }

  private forgetIdleOrigins(): void {
    if (this.origins.size <= this.settings.maxOrigins) return;
    for (const [name, breaker] of this.origins) {
      if (this.origins.size <= this.settings.maxOrigins) break;
      // An open breaker is remembered: forgetting it would let the failing origin be hammered again.
      if (breaker.state !== 'closed') continue;
      this.origins.delete(name);
      breaker.shutdown();
      this.listener.onForget?.(breaker);
    }
  }
}

/** The breaker key of a URL: its origin, or the scheme for pages without one (about:blank). */
export function originOf(url: string): string {
  try {
    const parsed = new URL(url);
    return parsed.origin === 'null' ? parsed.protocol : parsed.origin;
  } catch {
    return 'invalid-url';
  }
}
