import { RpaError } from '@rpa/shared';

/** Another robot holds the session now (the stream refused our epoch): stop at once and ack nothing more. */
export class SessionLostError extends RpaError {
  constructor(
    readonly sessionId: string,
    message: string,
  ) {
    super('SESSION_LOST', message);
  }
}

/** The event store kept failing past the retry budget; the session is handed back for another attempt later. */
export class ReportFailedError extends RpaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('REPORT_FAILED', message, options);
  }
}

/** Work was interrupted because the robot is stopping. */
export class RobotStoppingError extends RpaError {
  constructor() {
    super('ROBOT_STOPPING', 'the robot is stopping');
  }
}
