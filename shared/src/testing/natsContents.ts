import { gunzipSync } from 'node:zlib';
import type { JetStreamManager } from '@nats-io/jetstream';

/** What NATS holds, as text: the number of messages read and their subjects, header names and values, and payloads. */
export interface NatsContents {
  messages: number;
  text: string;
}

const GZIP_MAGIC = [0x1f, 0x8b] as const;

/**
 * Every message of every stream the server holds (event and work streams, KV buckets, object stores), read one by
 * one: subject, headers and payload, with gzipped payloads (snapshots) inflated. For tests that look for a value
 * that must never be stored.
 */
export async function natsContents(jsm: JetStreamManager): Promise<NatsContents> {
  const parts: string[] = [];
  let messages = 0;
  for await (const info of jsm.streams.list()) {
    const name = info.config.name;
    const { first_seq: first, last_seq: last } = info.state;
    for (let seq = first; seq > 0 && seq <= last; seq++) {
      const msg = await jsm.streams.getMessage(name, { seq }).catch(() => null);
      if (!msg) continue;
      messages += 1;
      parts.push(msg.subject, payloadText(msg.data));
      for (const key of msg.header?.keys() ?? []) parts.push(key, ...msg.header.values(key));
    }
  }
  return { messages, text: parts.join('\n') };
}

function payloadText(data: Uint8Array): string {
  if (data[0] === GZIP_MAGIC[0] && data[1] === GZIP_MAGIC[1]) {
    try {
      return gunzipSync(data).toString('utf8');
    } catch {
      // Not gzip after all: read as it is.
    }
  }
  return Buffer.from(data).toString('utf8');
}
