import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import {
  applyToDocument,
  RpaError,
  SessionDocument,
  type Logger,
  type RecordedSessionEvent,
  type Topology,
} from '@rpa/shared';

/** A document failed its own schema: a projection bug, never written. */
export class InvalidSessionDocumentError extends RpaError {
  constructor(
    readonly key: string,
    readonly issues: ReadonlyArray<{ path: string; message: string }>,
  ) {
    super(
      'READ_MODEL_INVALID',
      `session document ${key} fails its schema: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
    );
  }
}

/** Hooks for metrics. */
export interface SessionReadModelHooks {
  written?(): void;
  conflicted?(): void;
  /** A document that cannot be stored (invalid key, too large); the event is logged and left out. */
  rejected?(reason: 'key' | 'size'): void;
}

export interface SessionReadModelOptions {
  kv: KV;
  topology: Topology;
  logger: Logger;
  /** Documents kept in memory with their KV revision, so that most events need no read. */
  cacheSize?: number;
  /** Sessions buffered before the projection writes on its own, whatever the subscription's batching. */
  maxPendingSessions?: number;
  /** Writes in flight at once during a flush (different sessions only). */
  writeConcurrency?: number;
  /** Re-read-and-reapply rounds on revision conflicts before the flush fails (and is retried by the subscription). */
  maxConflictRounds?: number;
  /** Largest encoded document: the server's max_payload. A larger one is not written (and logged). */
  maxDocumentBytes?: number;
  hooks?: SessionReadModelHooks;
  /** Called with each document once it is stored. */
  onStored?(doc: SessionDocument): void;
}

interface Stored {
  doc: SessionDocument | null;
  /** KV revision of the key (0 when absent): the expected revision of the next write. */
  revision: number;
}

interface Pending {
  base: Stored;
  /** Events applied on top of `base`, to re-apply onto a fresher document after a conflict. */
  events: RecordedSessionEvent[];
  doc: SessionDocument;
}

// KV keys: NATS subject tokens of these characters, no empty token.
const KV_KEY = /^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$/;
const encoder = new TextEncoder();

function isRevisionConflict(error: unknown): boolean {
  if (error instanceof JetStreamApiError) {
    return (
      error.code === JetStreamApiCodes.StreamWrongLastSequence ||
      error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown
    );
  }
  return /wrong last sequence/i.test(String((error as Error)?.message));
}

/**
 * The session read model: one SessionDocument per session in the sessions KV bucket, folded by applyToDocument.
 * Events are applied in memory and written on flush, once per session per batch, with update-by-revision; on a
 * conflict (another writer) the document is re-read and the batch's events re-applied onto it, which is safe
 * because applying an event at or below a document's position changes nothing.
 */
export class SessionReadModel {
  private readonly cache = new Map<string, Stored>();
  private readonly pending = new Map<string, Pending>();
  private readonly kv: KV;
  private readonly topology: Topology;
  private readonly logger: Logger;
  private readonly cacheSize: number;
  private readonly maxPendingSessions: number;
  private readonly writeConcurrency: number;
  private readonly maxConflictRounds: number;
  private readonly maxDocumentBytes: number;
  private readonly hooks: SessionReadModelHooks;
  private readonly onStored: SessionReadModelOptions['onStored'];

  constructor(options: SessionReadModelOptions) {
    this.kv = options.kv;
    this.topology = options.topology;
    this.logger = options.logger;
    this.cacheSize = options.cacheSize ?? 1_000;
    this.maxPendingSessions = options.maxPendingSessions ?? 500;
    this.writeConcurrency = options.writeConcurrency ?? 16;
    this.maxConflictRounds = options.maxConflictRounds ?? 10;
    this.maxDocumentBytes = options.maxDocumentBytes ?? 1024 * 1024;
    this.hooks = options.hooks ?? {};
    this.onStored = options.onStored;
  }

  /** Applies one event to its session's document in memory; idempotent. Writes only when the buffer is full. */
  async handle(recorded: RecordedSessionEvent): Promise<void> {
    const key = this.keyOf(recorded);
    if (key === null) return;
    const pending = this.pending.get(key);
    const base = pending ? null : await this.read(key);
    const current = pending?.doc ?? base?.doc ?? null;
    const next = applyToDocument(current, recorded);
    if (next === current) return;
    if (next === null) {
      this.logger.warn(
        { key, position: recorded.position, type: recorded.event.type },
        'event for a session with no document and no SessionOpened: ignored',
      );
      return;
    }
    if (pending) {
      pending.events.push(recorded);
      pending.doc = next;
    } else {
      this.pending.set(key, { base: base!, events: [recorded], doc: next });
    }
    if (this.pending.size >= this.maxPendingSessions) await this.flush();
  }

  /** Writes every buffered document; a failed write stays buffered for the next flush. */
  async flush(): Promise<void> {
    const keys = [...this.pending.keys()];
    let firstError: unknown;
    for (let i = 0; i < keys.length; i += this.writeConcurrency) {
      const slice = keys.slice(i, i + this.writeConcurrency);
      const results = await Promise.allSettled(slice.map((key) => this.write(key)));
      for (const r of results) if (r.status === 'rejected') firstError ??= r.reason;
    }
    if (firstError !== undefined) throw firstError;
  }

  /** The document as this projection last knew it (cache or buffer), for tests and diagnostics. */
  peek(tenantId: string, sessionId: string): SessionDocument | null {
    const key = this.topology.sessionKey(tenantId, sessionId);
    return this.pending.get(key)?.doc ?? this.cache.get(key)?.doc ?? null;
  }

  private keyOf(recorded: RecordedSessionEvent): string | null {
    const key = this.topology.sessionKey(recorded.metadata.tenantId, recorded.metadata.sessionId);
    if (KV_KEY.test(key)) return key;
    this.hooks.rejected?.('key');
    this.logger.error(
      { position: recorded.position, eventId: recorded.eventId, streamId: recorded.streamId },
      'tenant or session id cannot form a read-model key: event left out of the read model',
    );
    return null;
  }

  private async read(key: string): Promise<Stored> {
    const cached = this.cache.get(key);
    if (cached) return cached;
    const entry = await this.kv.get(key);
    if (!entry) return { doc: null, revision: 0 };
    if (entry.operation !== 'PUT') return { doc: null, revision: entry.revision };
    const parsed = SessionDocument.safeParse(entry.json());
    if (!parsed.success) {
      // A document this version cannot read is rebuilt from the events, on top of its revision.
      this.logger.warn(
        { key, revision: entry.revision },
        'stored session document is unreadable: rebuilding it',
      );
      return { doc: null, revision: entry.revision };
    }
    return { doc: parsed.data, revision: entry.revision };
  }

  private async write(key: string): Promise<void> {
    const pending = this.pending.get(key)!;
    let base = pending.base;
    let doc: SessionDocument | null = pending.doc;
    for (let round = 1; ; round++) {
      if (doc === null || doc === base.doc) {
        // Another writer already stored everything this batch holds.
        this.remember(key, base);
        this.pending.delete(key);
        return;
      }
      const bytes = this.encode(key, doc);
      if (bytes === null) {
        // Keep folding onto the complete document in memory, so that later events are not applied to a stale one.
        this.remember(key, { doc, revision: base.revision });
        this.pending.delete(key);
        return;
      }
      try {
        const revision =
          base.revision > 0
            ? await this.kv.update(key, bytes, base.revision)
            : await this.kv.create(key, bytes);
        this.remember(key, { doc, revision });
        this.pending.delete(key);
        this.hooks.written?.();
        this.onStored?.(doc);
        return;
      } catch (error) {
        if (!isRevisionConflict(error) || round >= this.maxConflictRounds) {
          // Forget what we thought was stored, so that the retry starts from the truth.
          this.cache.delete(key);
          throw error;
        }
        this.hooks.conflicted?.();
        this.cache.delete(key);
        base = await this.read(key);
        doc = pending.events.reduce<SessionDocument | null>((d, e) => applyToDocument(d, e) ?? d, base.doc);
        pending.base = base;
        if (doc !== null) pending.doc = doc;
        this.logger.debug({ key, round }, 'session document changed underneath: re-applied the batch');
      }
    }
  }

  private encode(key: string, doc: SessionDocument): Uint8Array | null {
    const checked = SessionDocument.safeParse(doc);
    if (!checked.success) {
      throw new InvalidSessionDocumentError(
        key,
        checked.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      );
    }
    const bytes = encoder.encode(JSON.stringify(checked.data));
    if (bytes.length <= this.maxDocumentBytes) return bytes;
    this.hooks.rejected?.('size');
    this.logger.error(
      { key, bytes: bytes.length, limit: this.maxDocumentBytes, position: doc.position },
      'session document exceeds the largest value the bucket takes: not written',
    );
    return null;
  }

  private remember(key: string, stored: Stored): void {
    this.cache.delete(key);
    this.cache.set(key, stored);
    if (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
  }
}
