import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstreamManager,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type PubAck,
  type StreamConfig,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { RpaError, SchemaError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { ensureStream, type Topology } from '../nats/topology.js';
import { EventStoreUnavailableError, InvalidAppendError, WrongExpectedVersionError } from './errors.js';
import {
  commitHeaders,
  decodeCommit,
  encodeCommitBody,
  lastRevisionOf,
  positionOf,
  readCommitHeader,
  REVISION_HEADER,
  seqOfPosition,
  type CommitHeader,
} from './jetstreamCommit.js';
import type {
  AllSubscription,
  AppendResult,
  EventStore,
  EventToAppend,
  ExpectedVersion,
  ReadStreamOptions,
  RecordedEvent,
  StreamPlace,
  SubscribeOptions,
} from './port.js';
import { validateAppend } from './validation.js';

export interface JetStreamEventStoreOptions {
  logger?: Logger;
  /** Deadline of one JetStream request, and the longest a read may wait for its next message. */
  requestTimeoutMs?: number;
  /** Streams whose last commit and revision hints this process remembers. */
  cacheSize?: number;
}

/** What this process knows about one stream: its last commit as last seen, and where some revisions start. */
interface StreamCursor {
  lastRevision: number;
  lastSeq: number;
  /** [firstRevision, seq] of known commits, sorted; the first and the most recent are kept. */
  hints: Array<[number, number]>;
}

interface SubscriptionState {
  stopped: boolean;
  running: Set<ConsumerMessages>;
}

const HINTS_PER_STREAM = 64;
/** Messages one pull may bring: large pulls matter on 2.9, where each pull walks the stream to filter a subject. */
const MAX_READ_BATCH = 1_000;
const SUBSCRIPTION_BATCH = 512;
/** Re-reads of the stream's end after the server refused a stale expectation, before giving up. */
const MAX_APPEND_ATTEMPTS = 20;
/** Headroom for the headers and subject that travel with a commit body. */
const HEADER_RESERVE_BYTES = 512;
const DEFAULT_MAX_PAYLOAD = 1_048_576;

/**
 * The event store on JetStream: one stream holds every event-store stream, one subject per stream, one message per
 * append. Optimistic concurrency rests on the server's expected-last-subject-sequence check; the first event id is
 * the message id, so a retried append is recognised; positions derive from stream sequences.
 */
export class JetStreamEventStore implements EventStore {
  private readonly cursors = new Map<string, StreamCursor>();
  private readonly active = new Set<ConsumerMessages>();
  private readonly subscriptions = new Set<AllSubscription>();
  private readonly js: JetStreamClient;
  private readonly subjectPrefix: string;
  private readonly timeoutMs: number;
  private readonly cacheSize: number;
  private closed = false;

  private constructor(
    readonly nc: NatsConnection,
    readonly topology: Topology,
    private readonly jsm: JetStreamManager,
    private readonly logger: Logger | undefined,
    options: JetStreamEventStoreOptions,
  ) {
    this.js = jsm.jetstream();
    this.subjectPrefix = topology.eventSubject('');
    this.timeoutMs = options.requestTimeoutMs ?? 5_000;
    this.cacheSize = options.cacheSize ?? 10_000;
  }

  /** Ensures the events stream exists and returns a store on it. */
  static async create(
    nc: NatsConnection,
    topology: Topology,
    options: JetStreamEventStoreOptions = {},
  ): Promise<JetStreamEventStore> {
    const timeout = options.requestTimeoutMs ?? 5_000;
    try {
      const jsm = await jetstreamManager(nc, { timeout });
      await ensureStream(jsm, topology.eventsStreamConfig() as StreamConfig);
      return new JetStreamEventStore(nc, topology, jsm, options.logger, options);
    } catch (error) {
      throw unavailable('opening the events stream', error);
    }
  }

  async append(
    streamId: string,
    events: readonly EventToAppend[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    validateAppend(streamId, events);
    this.assertOpen();
    const { expectedVersion } = options;
    const body = encodeCommitBody(events);
    const maxPayload = this.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
    if (body.byteLength + HEADER_RESERVE_BYTES > maxPayload)
      throw new InvalidAppendError(
        `an append may encode to at most ${maxPayload - HEADER_RESERVE_BYTES} bytes, got ${body.byteLength}`,
      );
    const subject = this.topology.eventSubject(streamId);
    const msgId = events[0]!.eventId;

    // The cached end of the stream is only a guess: the server checks it, and a refusal sends us to the truth.
    const cached = this.cursors.get(streamId);
    let end: { lastRevision: number; lastSeq: number } | undefined = cached && { ...cached };
    let last: CommitHeader | null = null;
    let fresh = false;
    for (let attempt = 1; ; attempt++) {
      if (!end) {
        last = await this.readLast(streamId);
        end = last
          ? { lastRevision: lastRevisionOf(last), lastSeq: last.seq }
          : { lastRevision: -1, lastSeq: 0 };
        fresh = true;
      }
      if (!satisfies(expectedVersion, end.lastRevision)) {
        if (!fresh) {
          end = undefined;
          continue;
        }
        const landed = await this.findLandedRetry(streamId, msgId, expectedVersion, last);
        if (landed) {
          this.logger?.debug({ streamId, seq: landed.seq }, 'a retried append had already landed');
          return resultOf(landed);
        }
        throw new WrongExpectedVersionError(
          streamId,
          expectedVersion,
          end.lastRevision < 0 ? 'no_stream' : end.lastRevision,
        );
      }
      const firstRevision = end.lastRevision + 1;
      let ack: PubAck;
      try {
        ack = await this.js.publish(subject, body, {
          msgID: msgId,
          expect: { lastSubjectSequence: end.lastSeq },
          headers: commitHeaders(firstRevision, events.length),
          timeout: this.timeoutMs,
        });
      } catch (error) {
        if (apiCode(error) === JetStreamApiCodes.StreamWrongLastSequence) {
          if (attempt < MAX_APPEND_ATTEMPTS) {
            end = undefined;
            continue;
          }
          throw new WrongExpectedVersionError(streamId, expectedVersion, 'unknown');
        }
        if (/max_payload|maximum payload/i.test(String((error as Error)?.message)))
          throw new InvalidAppendError(`the append exceeds the server's message size limit`);
        throw unavailable(`appending to ${streamId}`, error);
      }
      if (ack.duplicate) return resultOf(await this.commitAt(streamId, ack.seq, msgId));
      const commit = { seq: ack.seq, firstRevision, count: events.length, msgId };
      this.learn(streamId, commit);
      return resultOf(commit);
    }
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    const fromRevision = Math.max(0, options.fromRevision ?? 0);
    const maxCount = options.maxCount ?? Number.POSITIVE_INFINITY;
    if (maxCount <= 0) return [];
    const last = await this.getLastMessage(streamId);
    if (!last) return [];
    const lastCommit = readCommitHeader(last.seq, last.header);
    this.learn(streamId, lastCommit);
    if (fromRevision > lastRevisionOf(lastCommit)) return [];
    // The common read (a cached fold catching up) needs only the stream's last commit.
    if (fromRevision >= lastCommit.firstRevision) {
      const events = decodeCommit(streamId, lastCommit, last.data, last.time);
      return events.slice(fromRevision - lastCommit.firstRevision).slice(0, maxCount);
    }
    const learned = this.startFor(streamId, fromRevision);
    const hinted = hintedStart(options.hint, fromRevision, lastCommit.seq, learned.seq);
    if (hinted) {
      const events = await this.readFrom(streamId, hinted, fromRevision, maxCount, lastCommit);
      if (events) return events;
      this.logger?.debug(
        { streamId, fromRevision, hint: options.hint },
        'a read hint pointed past the revision asked for; reading without it',
      );
    }
    const events = await this.readFrom(
      streamId,
      this.startFor(streamId, fromRevision),
      fromRevision,
      maxCount,
      lastCommit,
    );
    if (!events)
      throw new SchemaError(`stream ${streamId}: no commit holds revision ${fromRevision}`, [
        { path: REVISION_HEADER, message: 'revisions are not contiguous' },
      ]);
    return events;
  }

  /**
   * Reads the stream's events from `fromRevision` with a scan that starts at `start`; null when the first commit
   * found there already starts after `fromRevision` (the start was past it: a wrong hint).
   */
  private async readFrom(
    streamId: string,
    start: { seq: number; revision: number },
    fromRevision: number,
    maxCount: number,
    lastCommit: CommitHeader,
  ): Promise<RecordedEvent[] | null> {
    const subject = this.topology.eventSubject(streamId);
    const out: RecordedEvent[] = [];
    let expected = -1;
    let startedPast = false;
    // Every commit holds at least one event: this bounds how many messages the read can need.
    const batch = Math.min(
      lastRevisionOf(lastCommit) - start.revision + 1,
      fromRevision - start.revision + maxCount,
      MAX_READ_BATCH,
    );
    await this.scan(subject, start.seq, lastCommit.seq, { headersOnly: false, batch }, (m) => {
      const commit = readCommitHeader(m.seq, m.headers);
      this.learn(streamId, commit);
      if (lastRevisionOf(commit) < fromRevision) return true;
      if (expected < 0 && commit.firstRevision > fromRevision) {
        startedPast = true;
        return false;
      }
      if (expected >= 0 && commit.firstRevision !== expected)
        throw new SchemaError(
          `stream ${streamId}: commit at sequence ${commit.seq} starts at revision ${commit.firstRevision}, expected ${expected}`,
          [{ path: REVISION_HEADER, message: 'revisions are not contiguous' }],
        );
      expected = lastRevisionOf(commit) + 1;
      for (const e of decodeCommit(streamId, commit, m.data, m.time)) {
        if (e.revision >= fromRevision && out.length < maxCount) out.push(e);
      }
      return out.length < maxCount;
    });
    return startedPast ? null : out;
  }

  subscribeToAll(options: SubscribeOptions): AllSubscription {
    const state: SubscriptionState = { stopped: false, running: new Set() };
    const subscription: AllSubscription = {
      close: async () => {
        state.stopped = true;
        this.subscriptions.delete(subscription);
        await Promise.allSettled([...state.running].map((m) => m.close()));
      },
      [Symbol.asyncIterator]: () => this.iterateAll(options, state),
    };
    this.subscriptions.add(subscription);
    return subscription;
  }

  /** One pass over the events stream: an ordered consumer from the commit holding the start position onwards. */
  private async *iterateAll(
    options: SubscribeOptions,
    state: SubscriptionState,
  ): AsyncGenerator<RecordedEvent> {
    const after = options.from === 'start' ? 0 : options.from.position;
    const startSeq = options.from === 'start' ? 1 : Math.max(1, seqOfPosition(options.from.position));
    // Subjects cannot match a prefix of a token, so the category filter runs here.
    const prefix = options.streamPrefix ?? '';
    if (state.stopped || this.closed) return;
    let messages: ConsumerMessages;
    try {
      const consumer = await this.js.consumers.get(this.topology.eventsStream, {
        filter_subjects: this.topology.eventsWildcard,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: startSeq,
      });
      messages = await consumer.consume({ max_messages: SUBSCRIPTION_BATCH });
    } catch (error) {
      throw unavailable('subscribing to all events', error);
    }
    state.running.add(messages);
    this.active.add(messages);
    try {
      if (state.stopped || this.closed) return;
      for await (const m of guarded(messages)) {
        const streamId = m.subject.slice(this.subjectPrefix.length);
        if (!streamId.startsWith(prefix)) continue;
        const commit = readCommitHeader(m.seq, m.headers);
        if (positionOf(commit.seq, commit.count - 1) <= after) continue;
        for (const e of decodeCommit(streamId, commit, m.data, m.time)) {
          if (e.position <= after) continue;
          if (state.stopped) return;
          yield e;
        }
        if (state.stopped) return;
      }
      if (!state.stopped && !this.closed)
        throw new EventStoreUnavailableError('the subscription to all events ended unexpectedly');
    } finally {
      state.running.delete(messages);
      this.active.delete(messages);
      await messages.close();
    }
  }

  async ping(): Promise<void> {
    this.assertOpen();
    try {
      await this.jsm.streams.info(this.topology.eventsStream);
    } catch (error) {
      throw unavailable('pinging the events stream', error);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.subscriptions].map((s) => s.close()));
    await Promise.allSettled([...this.active].map((m) => m.close()));
  }

  private assertOpen(): void {
    if (this.closed) throw new EventStoreUnavailableError('the event store is closed');
  }

  private async getLastMessage(streamId: string) {
    try {
      return await this.jsm.direct.getMessage(this.topology.eventsStream, {
        last_by_subj: this.topology.eventSubject(streamId),
      });
    } catch (error) {
      throw unavailable(`reading the end of ${streamId}`, error);
    }
  }

  /** The stream's last commit as the server has it now, or null for an absent stream. */
  private async readLast(streamId: string): Promise<CommitHeader | null> {
    const last = await this.getLastMessage(streamId);
    if (!last) return null;
    const commit = readCommitHeader(last.seq, last.header);
    this.learn(streamId, commit);
    return commit;
  }

  /** The commit stored at `seq`, which must belong to `streamId` (a duplicate's original). */
  private async commitAt(streamId: string, seq: number, msgId: string): Promise<CommitHeader> {
    let stored;
    try {
      stored = await this.jsm.direct.getMessage(this.topology.eventsStream, { seq });
    } catch (error) {
      throw unavailable(`reading the original of a retried append to ${streamId}`, error);
    }
    if (!stored)
      throw new EventStoreUnavailableError(`the original of a retried append (seq ${seq}) is gone`);
    if (stored.subject !== this.topology.eventSubject(streamId))
      throw new InvalidAppendError(`event id ${msgId} was already used by an append to another stream`);
    const commit = readCommitHeader(stored.seq, stored.header);
    this.learn(streamId, commit);
    return commit;
  }

  /**
   * After a conflict: the stream may already hold this very append (a retry whose first attempt landed and whose
   * message id left the dedup window). Only commits after the expected version can be it.
   */
  private async findLandedRetry(
    streamId: string,
    msgId: string,
    expected: ExpectedVersion,
    last: CommitHeader | null,
  ): Promise<CommitHeader | null> {
    if (!last) return null;
    if (last.msgId === msgId) return last;
    const after = typeof expected === 'number' ? expected + 1 : expected === 'no_stream' ? 0 : null;
    // 'stream_exists' conflicts only on an absent stream and 'any' never does.
    if (after === null || last.firstRevision <= after) return null;
    let found: CommitHeader | null = null;
    await this.scan(
      this.topology.eventSubject(streamId),
      this.startFor(streamId, after).seq,
      last.seq,
      { headersOnly: true, batch: MAX_READ_BATCH },
      (m) => {
        const commit = readCommitHeader(m.seq, m.headers);
        this.learn(streamId, commit);
        if (commit.firstRevision >= after && commit.msgId === msgId) found = commit;
        return found === null;
      },
    );
    return found;
  }

  /**
   * Delivers one subject's messages from `startSeq` through `endSeq` in order to `visit` until it returns false.
   * An ordered consumer, deleted afterwards; on 2.9 the server walks the stream to filter the subject.
   */
  private async scan(
    subject: string,
    startSeq: number,
    endSeq: number,
    pull: { headersOnly: boolean; batch: number },
    visit: (m: JsMsg) => boolean,
  ): Promise<void> {
    let messages: ConsumerMessages;
    let consumer: Consumer;
    try {
      consumer = await this.js.consumers.get(this.topology.eventsStream, {
        filter_subjects: subject,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: startSeq,
        headers_only: pull.headersOnly,
        inactive_threshold: 60_000,
      });
      messages = await consumer.consume({ max_messages: Math.max(1, pull.batch) });
    } catch (error) {
      throw unavailable(`reading ${subject}`, error);
    }
    this.active.add(messages);
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        void messages.close();
      }, this.timeoutMs);
    };
    let reachedEnd = false;
    try {
      arm();
      for await (const m of messages) {
        arm();
        if (!visit(m) || m.seq >= endSeq) {
          reachedEnd = true;
          break;
        }
      }
    } finally {
      clearTimeout(timer);
      this.active.delete(messages);
      await messages.close();
      consumer.delete().catch((error: unknown) => {
        this.logger?.debug(
          { err: error, subject },
          'could not delete a read consumer; it expires on its own',
        );
      });
    }
    if (reachedEnd) return;
    if (timedOut) throw new EventStoreUnavailableError(`reading ${subject} timed out`);
    throw new EventStoreUnavailableError(`reading ${subject} was interrupted`);
  }

  /**
   * A known commit at or before the one holding `revision` (its sequence and first revision): reading starts
   * there instead of at the stream's first message.
   */
  private startFor(streamId: string, revision: number): { seq: number; revision: number } {
    const hints = this.cursors.get(streamId)?.hints ?? [];
    let start = { seq: 1, revision: 0 };
    for (const [firstRevision, seq] of hints) {
      if (firstRevision > revision) break;
      start = { seq, revision: firstRevision };
    }
    return start;
  }

  /** Records a commit seen on the server: the end of its stream (if newer) and a revision hint. */
  private learn(streamId: string, commit: CommitHeader): void {
    let cursor = this.cursors.get(streamId);
    if (cursor) this.cursors.delete(streamId);
    else cursor = { lastRevision: -1, lastSeq: 0, hints: [] };
    this.cursors.set(streamId, cursor);
    if (this.cursors.size > this.cacheSize) {
      const oldest = this.cursors.keys().next().value;
      if (oldest !== undefined) this.cursors.delete(oldest);
    }
    if (commit.seq > cursor.lastSeq) {
      cursor.lastSeq = commit.seq;
      cursor.lastRevision = lastRevisionOf(commit);
    }
    const { hints } = cursor;
    let i = hints.length;
    while (i > 0 && hints[i - 1]![0] > commit.firstRevision) i--;
    if (i > 0 && hints[i - 1]![0] === commit.firstRevision) return;
    hints.splice(i, 0, [commit.firstRevision, commit.seq]);
    if (hints.length > HINTS_PER_STREAM) hints.splice(1, 1);
  }
}

/**
 * Where a read may start from the caller's hint: the commit of the hinted event, when the hint speaks of a revision
 * at or before the one asked for, names a sequence the stream has, and gets further than what this process learned.
 * The scan then checks that it did not start past the revision (a wrong hint).
 */
function hintedStart(
  hint: StreamPlace | undefined,
  fromRevision: number,
  lastSeq: number,
  learnedSeq: number,
): { seq: number; revision: number } | null {
  if (!hint || !Number.isSafeInteger(hint.revision) || !Number.isSafeInteger(hint.position)) return null;
  if (hint.revision < 0 || hint.revision > fromRevision) return null;
  const seq = seqOfPosition(hint.position);
  if (seq < 1 || seq > lastSeq || seq <= learnedSeq) return null;
  return { seq, revision: hint.revision };
}

/** The consumer's messages, with whatever the client throws mid-iteration turned into the store's error. */
async function* guarded(messages: ConsumerMessages): AsyncGenerator<JsMsg> {
  try {
    yield* messages;
  } catch (error) {
    throw unavailable('receiving events', error);
  }
}

function satisfies(expected: ExpectedVersion, lastRevision: number): boolean {
  switch (expected) {
    case 'any':
      return true;
    case 'no_stream':
      return lastRevision < 0;
    case 'stream_exists':
      return lastRevision >= 0;
    default:
      return expected === lastRevision;
  }
}

function resultOf(commit: CommitHeader): AppendResult {
  return {
    nextExpectedVersion: lastRevisionOf(commit),
    position: positionOf(commit.seq, commit.count - 1),
  };
}

function apiCode(error: unknown): number | undefined {
  return error instanceof JetStreamApiError ? error.code : undefined;
}

/** Our own errors pass through; anything from the client becomes EventStoreUnavailableError. */
function unavailable(what: string, error: unknown): Error {
  if (error instanceof RpaError) return error;
  return new EventStoreUnavailableError(`${what}: ${(error as Error)?.message ?? String(error)}`, {
    cause: error,
  });
}
