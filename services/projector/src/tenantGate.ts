import type { KV } from '@nats-io/kv';
import { AssignmentMessage, SessionPriority, type Logger, type RecordedSessionEvent } from '@rpa/shared';
import { z } from 'zod';

/** Caps on the sessions a tenant may have dispatched at once; 0 means no cap. */
export interface TenantLimits {
  /** The cap of every tenant without its own entry. */
  defaultMax: number;
  /** Caps per tenant id. */
  perTenant: Readonly<Record<string, number>>;
}

export const NO_TENANT_LIMITS: TenantLimits = { defaultMax: 0, perTenant: {} };

/** A session held back by its tenant's cap, with the assignment to publish once a slot frees. */
const WaitingSession = z.object({
  sessionId: z.string(),
  priority: SessionPriority,
  /** Global position of its SessionOpened: arrival order within a priority. */
  position: z.number().int().nonnegative(),
  msgID: z.string(),
  subject: z.string(),
  assignment: AssignmentMessage,
});
export type WaitingSession = z.infer<typeof WaitingSession>;

/**
 * One tenant's gate as stored in the tenant-slots bucket. `position` is the last event applied: an event at or
 * before it (handled again after a crash, from an older checkpoint) changes nothing.
 */
const TenantSlots = z.object({
  v: z.literal(1),
  position: z.number().int().nonnegative(),
  active: z.array(z.string()),
  waiting: z.array(WaitingSession),
});
type TenantSlots = z.infer<typeof TenantSlots>;

/** What the gate lets through for one event, and how to make its decision durable. */
export interface GatePlan {
  /** The SessionOpened assignment goes out now (true), or waits for a slot (false). */
  admitOpened: boolean;
  /** Waiting sessions that got a slot: publish their assignments. */
  promoted: WaitingSession[];
  /** Stores the new gate state; call after the publishes so that a crash in between re-plans the same. */
  commit(): Promise<void>;
}

const RANK: Record<SessionPriority, number> = { high: 0, normal: 1, low: 2 };
const ENDS_SESSION = new Set(['SessionClosed', 'SessionCancelled', 'SessionExpired', 'SessionFailed']);

/** The KV key of a tenant's gate: the id itself when it is a valid key, else its hex form. */
export function tenantSlotsKey(tenantId: string): string {
  return /^[A-Za-z0-9_=-]{1,200}$/.test(tenantId)
    ? `t.${tenantId}`
    : `x.${Buffer.from(tenantId, 'utf8').toString('hex')}`;
}

/** Orders a tenant's waiting sessions: higher priority first, then by arrival. */
export function byPriorityThenArrival(a: WaitingSession, b: WaitingSession): number {
  return RANK[a.priority] - RANK[b.priority] || a.position - b.position;
}

/**
 * Per-tenant concurrency caps for the dispatcher: a tenant's session is assigned only while fewer than its cap of
 * its sessions are active (assigned and not yet closed, cancelled, expired or failed); the others wait, by
 * priority then arrival, until an active one ends. The state lives in a KV bucket so that a restarted projector,
 * which resumes from its checkpoint, keeps it; each tenant's entry records the last event applied, which makes
 * handling an event twice a no-op. Tenants without a cap are not tracked at all.
 */
export class TenantGate {
  private readonly cache = new Map<string, { slots: TenantSlots; revision: number }>();

  constructor(
    private readonly kv: KV,
    private readonly limits: TenantLimits,
    private readonly logger: Logger,
  ) {}

  /** The tenant's cap; 0 when it has none. */
  limitFor(tenantId: string): number {
    return this.limits.perTenant[tenantId] ?? this.limits.defaultMax;
  }

  /** True when the event can change a capped tenant's gate. */
  concerns(recorded: RecordedSessionEvent): boolean {
    const type = recorded.event.type;
    if (type !== 'SessionOpened' && !ENDS_SESSION.has(type)) return false;
    return this.limitFor(recorded.metadata.tenantId) > 0;
  }

  /** Whether the session has been let through (always, for a tenant without a cap). */
  async admitted(tenantId: string, sessionId: string): Promise<boolean> {
    if (this.limitFor(tenantId) === 0) return true;
    const { slots } = await this.load(tenantId);
    return slots.active.includes(sessionId);
  }

  /** The sessions of a tenant waiting for a slot, in the order they will get one. */
  async waiting(tenantId: string): Promise<WaitingSession[]> {
    return (await this.load(tenantId)).slots.waiting;
  }

  /**
   * Plans what the event does to its tenant's gate. `opened` is the SessionOpened assignment the dispatcher would
   * publish (only for that event).
   */
  async plan(
    recorded: RecordedSessionEvent,
    opened?: { subject: string; msgID: string; assignment: AssignmentMessage },
  ): Promise<GatePlan> {
    const { tenantId, sessionId } = recorded.metadata;
    const limit = this.limitFor(tenantId);
    const current = await this.load(tenantId);
    const slots = current.slots;
    if (recorded.position <= slots.position) {
      // Applied before a crash: publishing again is deduplicated, holding back again is what happened then.
      return {
        admitOpened: slots.active.includes(sessionId),
        promoted: [],
        commit: async () => {},
      };
    }
    const next: TenantSlots = {
      v: 1,
      position: recorded.position,
      active: [...slots.active],
      waiting: [...slots.waiting],
    };
    let admitOpened = false;
    if (recorded.event.type === 'SessionOpened' && opened) {
      if (!next.active.includes(sessionId) && !next.waiting.some((w) => w.sessionId === sessionId)) {
        if (next.active.length < limit) {
          next.active.push(sessionId);
          admitOpened = true;
        } else {
          next.waiting.push({
            sessionId,
            priority: recorded.event.data.priority,
            position: recorded.position,
            ...opened,
          });
          next.waiting.sort(byPriorityThenArrival);
        }
      }
    } else if (ENDS_SESSION.has(recorded.event.type)) {
      next.active = next.active.filter((id) => id !== sessionId);
      next.waiting = next.waiting.filter((w) => w.sessionId !== sessionId);
    }
    const promoted: WaitingSession[] = [];
    while (next.active.length < limit && next.waiting.length > 0) {
      const first = next.waiting.shift()!;
      next.active.push(first.sessionId);
      promoted.push(first);
    }
    return {
      admitOpened,
      promoted,
      commit: () => this.save(tenantId, next, current.revision),
    };
  }

  private async load(tenantId: string): Promise<{ slots: TenantSlots; revision: number }> {
    const cached = this.cache.get(tenantId);
    if (cached) return cached;
    const entry = await this.kv.get(tenantSlotsKey(tenantId));
    let loaded: { slots: TenantSlots; revision: number };
    if (!entry || entry.operation !== 'PUT') {
      loaded = { slots: { v: 1, position: 0, active: [], waiting: [] }, revision: 0 };
    } else {
      // A gate that does not parse would let a tenant past its cap or strand its sessions: refuse loudly.
      loaded = { slots: TenantSlots.parse(entry.json()), revision: entry.revision };
    }
    this.cache.set(tenantId, loaded);
    return loaded;
  }

  private async save(tenantId: string, slots: TenantSlots, revision: number): Promise<void> {
    const key = tenantSlotsKey(tenantId);
    const body = JSON.stringify(slots);
    try {
      const next =
        revision === 0 ? await this.kv.create(key, body) : await this.kv.update(key, body, revision);
      this.cache.set(tenantId, { slots, revision: next });
    } catch (error) {
      // Someone else wrote it (a second projector, or our own write whose answer was lost): re-read and re-plan.
      this.cache.delete(tenantId);
      this.logger.warn({ err: error, tenantId }, 'saving the tenant gate failed: it is re-read');
      throw error;
    }
  }
}

/** Parses `acme=2,beta=10` into caps per tenant; throws naming the bad entry. */
export function parseTenantLimits(value: string): Record<string, number> {
  const limits: Record<string, number> = {};
  for (const part of value.split(',').map((p) => p.trim())) {
    if (part === '') continue;
    const match = /^([^=\s]+)=(\d{1,6})$/.exec(part);
    if (!match) throw new RangeError(`"${part}" is not tenant=limit`);
    limits[match[1]!] = Number(match[2]);
  }
  return limits;
}
