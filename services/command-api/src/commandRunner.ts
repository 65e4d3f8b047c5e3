import {
  CommandRejectedError,
  ConcurrencyExhaustedError,
  HttpError,
  type CommandResult,
  type Logger,
  type SessionCommand,
} from '@rpa/shared';
import type { CommandMetrics } from './commandMetrics.js';
import { SessionLanes } from './sessionLanes.js';

export interface CommandRunnerOptions {
  handler: { handle(command: SessionCommand): Promise<CommandResult> };
  metrics: CommandMetrics;
  logger: Logger;
  /**
   * Extra rounds after the handler ran out of conflict retries. The handler retries at once; these wait a random
   * moment first, which breaks the lockstep of replicas that keep colliding on one hot session.
   */
  exhaustedRetries?: number;
  /** Waits before such a round; the default sleeps a jittered few milliseconds. */
  backoff?: (round: number) => Promise<void>;
  now?: () => number;
}

const jitter = (round: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, Math.round(Math.random() * 25 * round)));

/** Hands commands to the session command handler one at a time per session, and measures each one. */
export class CommandRunner {
  private readonly lanes = new SessionLanes();
  private readonly exhaustedRetries: number;
  private readonly backoff: (round: number) => Promise<void>;
  private readonly now: () => number;

  constructor(private readonly options: CommandRunnerOptions) {
    this.exhaustedRetries = options.exhaustedRetries ?? 2;
    this.backoff = options.backoff ?? jitter;
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * Handles the command; a decider rejection is rethrown as is (the error handler maps it), conflicts that
   * outlast every retry become a 503 the client may retry.
   */
  async run(command: SessionCommand): Promise<CommandResult> {
    const started = this.now();
    const done = (outcome: Parameters<CommandMetrics['observe']>[1]) =>
      this.options.metrics.observe(command.type, outcome, (this.now() - started) / 1_000);
    try {
      const result = await this.lanes.run(command.sessionId, () => this.handle(command));
      done(result.events.length > 0 ? 'accepted' : 'duplicate');
      return result;
    } catch (error) {
      done(error instanceof CommandRejectedError ? 'rejected' : 'failed');
      throw error;
    }
  }

  private async handle(command: SessionCommand): Promise<CommandResult> {
    for (let round = 0; ; round++) {
      try {
        return await this.options.handler.handle(command);
      } catch (error) {
        if (!(error instanceof ConcurrencyExhaustedError)) throw error;
        if (round >= this.exhaustedRetries) {
          this.options.logger.warn(
            { sessionId: command.sessionId, commandType: command.type, rounds: round + 1 },
            'session kept changing: giving up on the command',
          );
          throw new HttpError(
            503,
            'CONCURRENCY_EXHAUSTED',
            'the session changed too often to apply this command; retry it',
          );
        }
        await this.backoff(round + 1);
      }
    }
  }
}
