import type { JetStreamManager, MsgRequest } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import {
  AssignmentMessage,
  decodeMessage,
  decodeSessionEvent,
  encodeMessage,
  PRIORITIES,
  SessionDocument,
  sessionStreamId,
  type EventStore,
  type Logger,
  type RecordedSessionEvent,
  type Topology,
} from '@rpa/shared';
import { dispatchFor, type Dispatch, type StepDispatcher } from './dispatcher.js';
import type { TenantGate } from './tenantGate.js';

export interface ReconcilerSettings {
  /** Time between two scans. */
  intervalMs: number;
  /**
   * How long work must be seen missing before it is sent again; also the length of a reconcile round (message
   * ids repeat within a round, so a second projector's copy is dropped).
   */
  afterMs: number;
}

export type ReconciledKind = 'step' | 'assignment' | 'close';

export interface ReconcilerDeps {
  sessions: KV;
  jsm: JetStreamManager;
  store: EventStore;
  topology: Topology;
  dispatcher: StepDispatcher;
  gate?: TenantGate;
  /** Global position the dispatcher has handled: a session whose document is ahead of it is not judged yet. */
  dispatcherPosition(): number;
  logger: Logger;
  /** Called for each message sent again that JetStream stored. */
  onReconciled?(kind: ReconciledKind): void;
  now?: () => number;
}

const RUNNABLE = new Set(['queued', 'open', 'closing']);
const OVER = new Set(['closed', 'cancelled', 'expired', 'failed']);
const UNFINISHED = new Set(['queued', 'running', 'retrying']);

type Missing = 'steps' | 'assignment';

/**
 * Re-dispatches what the event store says is runnable but has no live message (a publish that was lost, a broker
 * that lost its tail): the unfinished steps of a session whose steps subject is empty, and the assignment of a
 * session nobody claimed that has none. Work must be seen missing for `afterMs` before it is sent again, with
 * message ids derived from the original event id and the reconcile round.
 */
export class Reconciler {
  private readonly suspects = new Map<string, number>();
  /**
   * Keys of the documents of sessions that are not over, kept up to date by `observe`, so that a scan reads only
   * those; the first scan reads every document once to learn them.
   */
  private readonly live = new Set<string>();
  private seeded = false;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly now: () => number;

  constructor(
    private readonly deps: ReconcilerDeps,
    private readonly settings: ReconcilerSettings,
  ) {
    this.now = deps.now ?? (() => Date.now());
  }

  start(): void {
    if (this.timer || this.stopped) return;
    const tick = () => {
      this.running = this.runOnce()
        .then(() => undefined)
        .catch((error: unknown) => this.deps.logger.warn({ err: error }, 'reconciling failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.settings.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.settings.intervalMs);
  }

  /** Stops scanning; waits for a scan in progress. Safe to call twice. */
  async close(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One scan; returns the number of messages sent again. */
  async runOnce(): Promise<number> {
    const now = this.now();
    const seen = new Set<string>();
    let assigned: Set<string> | null = null;
    let sent = 0;
    for (const doc of await this.documents()) {
      if (this.stopped) break;
      if (!RUNNABLE.has(doc.status) || doc.position > this.deps.dispatcherPosition()) continue;
      const missing: Missing[] = [];
      if (doc.steps.some((s) => UNFINISHED.has(s.status)) && !(await this.hasStepMessage(doc.sessionId)))
        missing.push('steps');
      if (doc.status === 'queued' && (await this.admitted(doc))) {
        assigned ??= await this.assignedSessions();
        if (!assigned.has(doc.sessionId)) missing.push('assignment');
      }
      for (const what of missing) {
        const key = `${doc.sessionId}:${what}`;
        seen.add(key);
        const since = this.suspects.get(key);
        if (since === undefined) {
          this.suspects.set(key, now);
          continue;
        }
        if (now - since < this.settings.afterMs) continue;
        this.suspects.delete(key);
        sent += await this.resend(doc, what, Math.floor(now / this.settings.afterMs));
      }
    }
    for (const key of this.suspects.keys()) if (!seen.has(key)) this.suspects.delete(key);
    return sent;
  }

  private async admitted(doc: SessionDocument): Promise<boolean> {
    return this.deps.gate ? this.deps.gate.admitted(doc.tenantId, doc.sessionId) : true;
  }

  /** Tells the reconciler of a stored session document, so that it stops reading sessions that are over. */
  observe(doc: SessionDocument): void {
    const key = this.deps.topology.sessionKey(doc.tenantId, doc.sessionId);
    if (OVER.has(doc.status)) this.live.delete(key);
    else this.live.add(key);
  }

  private async documents(): Promise<SessionDocument[]> {
    const docs: SessionDocument[] = [];
    const keys: string[] = [];
    if (this.seeded) keys.push(...this.live);
    else for await (const key of await this.deps.sessions.keys()) keys.push(key);
    for (const key of keys) {
      const entry = await this.deps.sessions.get(key);
      if (!entry || entry.operation !== 'PUT') {
        this.live.delete(key);
        continue;
      }
      const parsed = SessionDocument.safeParse(entry.json());
      if (!parsed.success) continue;
      this.observe(parsed.data);
      docs.push(parsed.data);
    }
    this.seeded = true;
    return docs;
  }

  private async hasStepMessage(sessionId: string): Promise<boolean> {
    const { jsm, topology } = this.deps;
    const msg = await jsm.streams.getMessage(topology.workStream, {
      last_by_subj: topology.stepsSubject(sessionId),
    });
    return msg !== null;
  }

  /** Sessions with an assignment in the work stream (waiting, or held by a robot). */
  private async assignedSessions(): Promise<Set<string>> {
    const { jsm, topology } = this.deps;
    const sessions = new Set<string>();
    for (const priority of PRIORITIES) {
      const subject = topology.assignSubjectFor(priority);
      for (let seq = 1; ;) {
        // The server answers `next_by_subj` on the plain message-get API too; the client types it for direct gets only.
        const query = { seq, next_by_subj: subject } as unknown as MsgRequest;
        const msg = await jsm.streams.getMessage(topology.workStream, query);
        if (!msg) break;
        try {
          sessions.add(decodeMessage(AssignmentMessage, msg.data).sessionId);
        } catch {
          // Undecodable assignments are terminated by robots; they hold no session.
        }
        seq = msg.seq + 1;
      }
    }
    return sessions;
  }

  private async resend(doc: SessionDocument, what: Missing, round: number): Promise<number> {
    const { store, topology, dispatcher, logger } = this.deps;
    const recorded: RecordedSessionEvent[] = [];
    for (const r of await store.readStream(sessionStreamId(doc.sessionId))) {
      const decoded = decodeSessionEvent(r);
      if (decoded) recorded.push(decoded);
    }
    const unfinished = new Set(doc.steps.filter((s) => UNFINISHED.has(s.status)).map((s) => s.stepId));
    const plan: [RecordedSessionEvent, Dispatch, ReconciledKind][] = [];
    for (const r of recorded) {
      const again = (d: Dispatch): Dispatch => ({ ...d, msgID: `${r.eventId}.reconcile.${round}` });
      if (what === 'steps' && r.event.type === 'StepSubmitted' && unfinished.has(r.event.data.stepId)) {
        for (const d of dispatchFor(r, topology)) plan.push([r, again(d), 'step']);
      } else if (what === 'steps' && doc.status === 'closing' && r.event.type === 'SessionCloseRequested') {
        for (const d of dispatchFor(r, topology)) plan.push([r, again(d), 'close']);
      } else if (what === 'assignment' && r.event.type === 'SessionOpened') {
        for (const d of dispatchFor(r, topology)) {
          if (d.kind !== 'assignment') continue;
          const body = decodeMessage(AssignmentMessage, d.data);
          plan.push([
            r,
            {
              ...again(d),
              data: encodeMessage(AssignmentMessage, { ...body, reason: 'reconciled' }),
            },
            'assignment',
          ]);
        }
      }
    }
    // Close requests come after the steps submitted before them: keep the stream's order.
    plan.sort((a, b) => a[0].position - b[0].position);
    let sent = 0;
    for (const [r, dispatch, kind] of plan) {
      if (await dispatcher.republish(r, dispatch)) {
        sent++;
        this.deps.onReconciled?.(kind);
      }
    }
    logger.warn(
      { sessionId: doc.sessionId, tenantId: doc.tenantId, missing: what, round, sent },
      'runnable work had no message: sent again',
    );
    return sent;
  }
}
