import { randomUUID } from 'node:crypto';
import {
  CommandRejectedError,
  ConcurrencyExhaustedError,
  RpaError,
  type Actor,
  type Logger,
  type SessionCommandHandler,
} from '@rpa/shared';
import type { ControlMessage } from './feedMessages.js';

/** What a control answers: the session's status right after the command, or why it was refused. */
export type ControlOutcome =
  { ok: true; status: string } | { ok: false; error: { code: string; message: string } };

export interface SessionControlsOptions {
  /** The same command handler the command API uses, on this service's event store. */
  handler: Pick<SessionCommandHandler, 'handle'>;
  logger: Logger;
  clock?: () => Date;
  commandId?: () => string;
}

/**
 * Turns a feed client's control message into the session command the command API would issue for the same call
 * (pause, resume, cancel, retry a step), for the connection's tenant and actor, and says how it ended. A refusal
 * carries the decider's code and message; a failure of ours is logged and answered without its text.
 */
export class SessionControls {
  private readonly clock: () => Date;
  private readonly commandId: () => string;

  constructor(private readonly options: SessionControlsOptions) {
    this.clock = options.clock ?? (() => new Date());
    this.commandId = options.commandId ?? randomUUID;
  }

  async issue(message: ControlMessage, tenantId: string, actor: Actor): Promise<ControlOutcome> {
    const base = {
      commandId: this.commandId(),
      sessionId: message.sessionId,
      tenantId,
      actor,
      at: this.clock().toISOString(),
    };
    try {
      const result = await this.options.handler.handle(
        message.type === 'pause'
          ? { ...base, type: 'PauseSession' }
          : message.type === 'resume'
            ? { ...base, type: 'ResumeSession' }
            : message.type === 'cancel'
              ? { ...base, type: 'CancelSession', reason: message.reason ?? null }
              : { ...base, type: 'RetryStep', stepId: message.stepId },
      );
      this.options.logger.info(
        { control: message.type, sessionId: message.sessionId, tenantId, appended: result.events.length },
        'feed control issued',
      );
      return { ok: true, status: result.state.status };
    } catch (error) {
      return { ok: false, error: this.describe(error, message) };
    }
  }

  private describe(error: unknown, message: ControlMessage): { code: string; message: string } {
    if (error instanceof CommandRejectedError)
      return { code: error.rejection.code, message: error.rejection.message };
    if (error instanceof ConcurrencyExhaustedError)
      return { code: error.code, message: 'the session kept changing; retry' };
    this.options.logger.error(
      { err: error, control: message.type, sessionId: message.sessionId },
      'feed control failed',
    );
    if (error instanceof RpaError && error.code === 'EVENT_STORE_UNAVAILABLE')
      return { code: 'UNAVAILABLE', message: 'a dependency is unavailable; retry' };
    return { code: 'INTERNAL', message: 'internal error' };
  }
}
