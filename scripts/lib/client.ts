import WebSocket from 'ws';
import type { SessionDocument } from '@rpa/shared';

/** An HTTP call that did not answer with the expected status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`HTTP ${status}: ${JSON.stringify(body)}`);
    this.name = 'ApiError';
  }
}

async function call<T>(
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<T> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const parsed: unknown = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, parsed);
  return parsed as T;
}

/** A thin client of the command and query APIs, sending one credential (an API key or a JWT) with every call. */
export class RpaClient {
  constructor(
    readonly commandApiUrl: string,
    readonly queryApiUrl: string,
    /** Sent as `Authorization: Bearer`; without it, calls go out unauthenticated (AUTH_MODE=none). */
    private readonly credential?: string,
  ) {}

  /** The authorization header of this client, for callers that use fetch directly. */
  get authHeaders(): Record<string, string> {
    return this.credential ? { authorization: `Bearer ${this.credential}` } : {};
  }

  private call<T>(method: string, url: string, body?: unknown, headers: Record<string, string> = {}) {
    return call<T>(method, url, body, { ...this.authHeaders, ...headers });
  }

  openSession(body: Record<string, unknown> = {}, headers?: Record<string, string>) {
    return this.call<{ sessionId: string; version: number }>(
      'POST',
      `${this.commandApiUrl}/v1/sessions`,
      body,
      headers,
    );
  }
  submitSteps(sessionId: string, steps: readonly unknown[], headers?: Record<string, string>) {
    return this.call<{ steps: Array<{ stepId: string; seq: number }> }>(
      'POST',
      `${this.commandApiUrl}/v1/sessions/${sessionId}/steps`,
      { steps },
      headers,
    );
  }
  closeSession(sessionId: string) {
    return this.call<unknown>('POST', `${this.commandApiUrl}/v1/sessions/${sessionId}/close`, {});
  }
  getSession(sessionId: string) {
    return this.call<SessionDocument>('GET', `${this.queryApiUrl}/v1/sessions/${sessionId}`);
  }
  /** Lets a session that needs attention go on, without replaying the steps it was stopped for. */
  resumeSession(sessionId: string) {
    return this.call<{ sessionId: string; status: string }>(
      'POST',
      `${this.commandApiUrl}/v1/sessions/${sessionId}/resume`,
      {},
    );
  }
  /** Holds a session: the step in hand finishes, no further step starts until it is resumed. */
  pauseSession(sessionId: string) {
    return this.call<{ sessionId: string; status: string }>(
      'POST',
      `${this.commandApiUrl}/v1/sessions/${sessionId}/pause`,
      {},
    );
  }
  /** Sends a step that failed for good back to run again. */
  retryStep(sessionId: string, stepId: string) {
    return this.call<{ sessionId: string; stepId: string; status: string }>(
      'POST',
      `${this.commandApiUrl}/v1/sessions/${sessionId}/steps/${stepId}/retry`,
      {},
    );
  }
  /** Ends a session for good. */
  cancelSession(sessionId: string, reason?: string) {
    return this.call<{ sessionId: string; status: string }>(
      'POST',
      `${this.commandApiUrl}/v1/sessions/${sessionId}/cancel`,
      reason === undefined ? {} : { reason },
    );
  }
  /** The session's events from the event store, oldest first. */
  async events(sessionId: string): Promise<SessionEventView[]> {
    const body = await this.call<{ events: SessionEventView[] }>(
      'GET',
      `${this.queryApiUrl}/v1/sessions/${sessionId}/events`,
    );
    return body.events;
  }
  /** The fleet as the robots' heartbeats describe it. */
  async robots(): Promise<RobotView[]> {
    const body = await this.call<{ items: RobotView[] }>('GET', `${this.queryApiUrl}/v1/robots`);
    return body.items;
  }
  feed(): Promise<FeedClient> {
    return FeedClient.connect(`${this.queryApiUrl.replace(/^http/, 'ws')}/v1/feed`, this.authHeaders);
  }
}

/** One event of a session's history, as GET /v1/sessions/:id/events shows it. */
export interface SessionEventView {
  eventId: string;
  type: string;
  revision: number;
  position: number;
  occurredAt: string;
  recordedAt: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

/** A robot of the fleet as GET /v1/robots lists it; only the fields this client relies on are named. */
export interface RobotView {
  robotId: string;
  /** online, offline (no beat within its ttl), stopping, stopped (said goodbye). */
  status: string;
  sessions: Array<{ sessionId: string; tenantId: string; epoch: number }>;
  [field: string]: unknown;
}

/** Whether the fleet listing shows the robot as beating and running. */
export function robotOnline(robot: RobotView | undefined): boolean {
  return robot?.status === 'online';
}

type Waiter = { match: (doc: SessionDocument) => boolean; resolve: (doc: SessionDocument) => void };

/** A WebSocket feed subscriber that remembers the latest document per session and lets callers await a state. */
export class FeedClient {
  readonly latest = new Map<string, SessionDocument>();
  readonly frames: unknown[] = [];
  private readonly waiters = new Set<Waiter>();
  private readonly listeners = new Set<(doc: SessionDocument) => void>();

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { type: string; document?: SessionDocument };
      this.frames.push(frame);
      if (frame.type !== 'session' || !frame.document) return;
      const doc = frame.document;
      const prior = this.latest.get(doc.sessionId);
      if (prior && prior.position > doc.position) return;
      this.latest.set(doc.sessionId, doc);
      for (const listener of this.listeners) listener(doc);
      for (const waiter of [...this.waiters]) {
        if (waiter.match(doc)) {
          this.waiters.delete(waiter);
          waiter.resolve(doc);
        }
      }
    });
  }

  /** Opens the feed; `headers` carry the credential, checked before the upgrade is answered. */
  static async connect(url: string, headers: Record<string, string> = {}): Promise<FeedClient> {
    const socket = new WebSocket(url, { headers });
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return new FeedClient(socket);
  }

  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  subscribeSession(sessionId: string): void {
    this.send({ subscribe: { session: sessionId } });
  }

  subscribeAll(): void {
    this.send({ subscribe: { all: true } });
  }

  /** Calls `listener` with every document that arrives. */
  onDocument(listener: (doc: SessionDocument) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the first document (already seen or arriving) that matches, or rejects at the deadline. */
  waitFor(
    sessionId: string,
    match: (doc: SessionDocument) => boolean,
    timeoutMs = 30_000,
    what = 'a matching document',
  ): Promise<SessionDocument> {
    const current = this.latest.get(sessionId);
    if (current && match(current)) return Promise.resolve(current);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        match: (doc) => doc.sessionId === sessionId && match(doc),
        resolve: (doc) => {
          clearTimeout(timer);
          resolve(doc);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new Error(
            `feed: timed out after ${timeoutMs} ms waiting for ${what} of session ${sessionId}; last: ${JSON.stringify(this.latest.get(sessionId)?.steps.map((s) => [s.seq, s.status]))}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.readyState === WebSocket.CLOSED) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.close(1000);
    });
  }
}
