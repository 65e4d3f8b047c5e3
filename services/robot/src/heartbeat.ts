import type { JsMsg } from '@nats-io/jetstream';

/** Stops a heartbeat. */
export type StopHeartbeat = () => void;

/**
 * Tells JetStream every `intervalMs` that the message is still being worked on, so it is not redelivered while
 * this process holds it. The interval should be a third of the ack wait: two beats may be lost before it expires.
 */
export function startHeartbeat(msg: JsMsg, intervalMs: number): StopHeartbeat {
  const timer = setInterval(() => {
    try {
      msg.working();
    } catch {
      // A closed connection: the message comes back to someone after its ack wait, which is what should happen.
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
