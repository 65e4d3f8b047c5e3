import type { Consumer, JsMsg } from '@nats-io/jetstream';

/**
 * Pulls one message like `consumer.next()`, but a stop does not wait for the pull to expire: aborting `signal`
 * ends the pull at once (null). A message that arrived as the pull was stopped is still returned, so that the
 * caller hands it back (nak) instead of leaving it to its ack wait.
 */
export async function pullOne(
  consumer: Consumer,
  expiresMs: number,
  signal: AbortSignal,
): Promise<JsMsg | null> {
  if (signal.aborted) return null;
  const messages = await consumer.fetch({ max_messages: 1, expires: expiresMs });
  const stop = () => void messages.stop();
  signal.addEventListener('abort', stop, { once: true });
  try {
    for await (const msg of messages) return msg;
    return null;
  } finally {
    signal.removeEventListener('abort', stop);
  }
}
