import { Writable } from 'node:stream';
import { createLogger, type Logger } from '@rpa/shared';

/**
 * A robot logger that writes every line (with the production redaction) into `lines`, so that a test can show what
 * the robot logged, or that something never reached a log line.
 */
export function capturingLogger(lines: string[], level = 'info', name = 'robot'): Logger {
  return createLogger({
    name,
    level,
    destination: new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString('utf8'));
        callback();
      },
    }),
  });
}
