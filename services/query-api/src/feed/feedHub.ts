import type { WebSocket, WebsocketPluginOptions } from '@fastify/websocket';
import { FEED_SUBPROTOCOL, type Actor, type Logger } from '@rpa/shared';
import type { SessionChange, SessionIndex } from '../index/sessionIndex.js';
import {
  ClientMessage,
  ControlMessage,
  type ControlResult,
  type FeedErrorCode,
  type ServerMessage,
} from './feedMessages.js';
import type { SessionControls } from './sessionControls.js';

/** What the hub needs from the index. */
export type FeedSource = Pick<SessionIndex, 'get' | 'changedSince' | 'subscribe'>;

export interface FeedOptions {
  /** Subscriptions one connection may hold ("all" counts as one). */
  maxSubscriptions: number;
  /** Largest client message answered with anything but a close. */
  maxMessageBytes: number;
  /** Bytes that may wait in a socket's send buffer; beyond this the client is too slow and is dropped. */
  maxBufferedBytes: number;
  /** Interval of protocol pings; a client that has not answered the previous one is dropped. 0 turns them off. */
  heartbeatIntervalMs: number;
  /** Control messages one connection may have in flight; more are refused until one is answered. */
  maxControlsInFlight: number;
}

export const DEFAULT_FEED_OPTIONS: FeedOptions = {
  maxSubscriptions: 100,
  maxMessageBytes: 64 * 1024,
  maxBufferedBytes: 1024 * 1024,
  heartbeatIntervalMs: 30_000,
  maxControlsInFlight: 16,
};

/** Close codes the feed uses (RFC 6455 and the IANA registry). */
export const CloseCode = {
  GoingAway: 1001,
  MessageTooBig: 1009,
  TryAgainLater: 1013,
} as const;

const OPEN = 1;

class FeedConnection {
  readonly sessions = new Set<string>();
  all = false;
  alive = true;
  dropped = false;
  controlsInFlight = 0;

  constructor(
    readonly socket: WebSocket,
    readonly tenantId: string,
    readonly actor: Actor,
  ) {}

  get subscriptionCount(): number {
    return this.sessions.size + (this.all ? 1 : 0);
  }

  wants(sessionId: string): boolean {
    return this.all || this.sessions.has(sessionId);
  }
}

/**
 * Pushes session documents to WebSocket subscribers as the index changes, within the subscriber's tenant only.
 * Each connection holds a bounded set of subscriptions; one whose send buffer outgrows its bound is dropped with
 * 1013 rather than buffered without limit. A client may also steer its tenant's sessions (pause, resume, cancel,
 * retry a step): each control is issued as the command API would issue it and answered with a control-result.
 */
export class FeedHub {
  readonly options: FeedOptions;
  private readonly byTenant = new Map<string, Set<FeedConnection>>();
  private readonly unsubscribeIndex: () => void;
  private readonly heartbeat: NodeJS.Timeout | null;
  private closing = false;
  private slowDropped = 0;

  constructor(
    private readonly source: FeedSource,
    private readonly logger: Logger,
    options: Partial<FeedOptions> = {},
    private readonly controls: SessionControls | null = null,
  ) {
    this.options = { ...DEFAULT_FEED_OPTIONS, ...options };
    this.unsubscribeIndex = source.subscribe((change) => this.onChange(change));
    this.heartbeat =
      this.options.heartbeatIntervalMs > 0
        ? setInterval(() => this.beat(), this.options.heartbeatIntervalMs).unref()
        : null;
  }

  /**
   * The ws-level message limit: twice the answered limit, so that a message somewhat over it still gets an error
   * frame saying so, while a larger one is refused by ws (close 1009) as its header arrives, before it is buffered.
   */
  get wsMaxPayload(): number {
    return this.options.maxMessageBytes * 2;
  }

  /**
   * Options for @fastify/websocket: the message limit, and an error handler for what ws refuses on its own (a
   * frame over the limit, invalid UTF-8, a protocol violation). ws has already sent the close frame naming the
   * fault (1009, 1007, 1002); it is left to complete the closing handshake rather than cut off, and the fault is
   * the client's, so it is logged without alarm.
   */
  get pluginOptions(): WebsocketPluginOptions {
    return {
      options: {
        maxPayload: this.wsMaxPayload,
        // Never the credential-carrying subprotocol: the feed's own, when offered (browsers require one answered).
        handleProtocols: (protocols) => (protocols.has(FEED_SUBPROTOCOL) ? FEED_SUBPROTOCOL : false),
      },
      errorHandler: (error, socket) => {
        const code = (error as { code?: unknown }).code;
        if (typeof code === 'string' && code.startsWith('WS_ERR_')) {
          this.logger.info({ wsError: code }, 'feed client sent a frame the protocol refuses');
          return;
        }
        this.logger.info({ err: error }, 'feed connection failed');
        socket.terminate();
      },
    };
  }

  /** Serves one upgraded connection for one tenant (and the actor its controls are issued as) until it closes. */
  attach(socket: WebSocket, tenantId: string, actor: Actor): void {
    if (this.closing) {
      socket.close(CloseCode.GoingAway, 'server shutting down');
      return;
    }
    const conn = new FeedConnection(socket, tenantId, actor);
    let set = this.byTenant.get(tenantId);
    if (!set) {
      set = new Set();
      this.byTenant.set(tenantId, set);
    }
    set.add(conn);
    socket.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      // A fault in handling one message must not escape into ws's receiver, where it would end the process.
      try {
        this.onMessage(conn, data, isBinary);
      } catch (error) {
        this.logger.error({ err: error, tenantId: conn.tenantId }, 'feed message handling failed');
        this.sendError(conn, 'INTERNAL', 'the message could not be handled');
      }
    });
    socket.on('pong', () => {
      conn.alive = true;
    });
    socket.on('close', () => this.detach(conn));
  }

  /** Closes every connection (1001 by default) and stops following the index. Safe to call twice. */
  closeAll(code: number = CloseCode.GoingAway, reason = 'server shutting down'): void {
    this.closing = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.unsubscribeIndex();
    for (const set of this.byTenant.values()) for (const conn of set) conn.socket.close(code, reason);
  }

  /** Counters for metrics. */
  stats(): { connections: number; slowDropped: number } {
    let connections = 0;
    for (const set of this.byTenant.values()) connections += set.size;
    return { connections, slowDropped: this.slowDropped };
  }

  private detach(conn: FeedConnection): void {
    const set = this.byTenant.get(conn.tenantId);
    if (!set) return;
    set.delete(conn);
    if (set.size === 0) this.byTenant.delete(conn.tenantId);
  }

  private onChange(change: SessionChange): void {
    const tenantId = change.kind === 'upsert' ? change.document.tenantId : change.tenantId;
    const set = this.byTenant.get(tenantId);
    if (!set) return;
    const sessionId = change.kind === 'upsert' ? change.document.sessionId : change.sessionId;
    let text: string | undefined;
    for (const conn of set) {
      if (!conn.wants(sessionId)) continue;
      // Serialised once per change, however many subscribers it has.
      text ??= JSON.stringify(
        change.kind === 'upsert'
          ? ({ type: 'session', document: change.document } satisfies ServerMessage)
          : ({ type: 'sessionRemoved', sessionId } satisfies ServerMessage),
      );
      this.sendText(conn, text);
    }
  }

  private onMessage(conn: FeedConnection, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (bytes.length > this.options.maxMessageBytes) {
      this.sendError(
        conn,
        'MESSAGE_TOO_LARGE',
        `messages are limited to ${this.options.maxMessageBytes} bytes, got ${bytes.length}`,
      );
      conn.socket.close(CloseCode.MessageTooBig, 'message too large');
      return;
    }
    if (isBinary) {
      this.sendError(conn, 'INVALID_MESSAGE', 'send JSON in text frames, not binary ones');
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      this.sendError(conn, 'INVALID_JSON', 'the message is not valid JSON');
      return;
    }
    // Controls are told apart by their "type"; subscriptions have none.
    if (typeof json === 'object' && json !== null && 'type' in json) {
      this.onControl(conn, json);
      return;
    }
    const parsed = ClientMessage.safeParse(json);
    if (!parsed.success) {
      this.sendError(conn, 'INVALID_MESSAGE', issuesText(parsed.error.issues));
      return;
    }
    const { subscribe, unsubscribe } = parsed.data;
    if (subscribe) this.subscribe(conn, subscribe);
    else if (unsubscribe) this.unsubscribe(conn, unsubscribe);
  }

  private onControl(conn: FeedConnection, json: object): void {
    const parsed = ControlMessage.safeParse(json);
    if (!parsed.success) {
      const requestId = (json as { requestId?: unknown }).requestId;
      this.sendError(
        conn,
        'INVALID_MESSAGE',
        issuesText(parsed.error.issues),
        typeof requestId === 'string' ? requestId : undefined,
      );
      return;
    }
    const control = parsed.data;
    if (!this.controls) {
      this.sendError(conn, 'CONTROLS_UNAVAILABLE', 'this feed does not take controls', control.requestId);
      return;
    }
    if (conn.controlsInFlight >= this.options.maxControlsInFlight) {
      this.sendError(
        conn,
        'TOO_MANY_CONTROLS',
        `a connection may have at most ${this.options.maxControlsInFlight} controls in flight`,
        control.requestId,
      );
      return;
    }
    conn.controlsInFlight++;
    void this.controls
      .issue(control, conn.tenantId, conn.actor)
      .then((outcome) => {
        const result: ControlResult = {
          type: 'control-result',
          ...(control.requestId === undefined ? {} : { requestId: control.requestId }),
          control: control.type,
          sessionId: control.sessionId,
          ...(control.type === 'retry' ? { stepId: control.stepId } : {}),
          ...outcome,
        };
        this.send(conn, result);
      })
      .catch((error: unknown) => {
        this.logger.error({ err: error, control: control.type }, 'feed control answer failed');
      })
      .finally(() => {
        conn.controlsInFlight--;
      });
  }

  private subscribe(
    conn: FeedConnection,
    s: { session?: string | undefined; all?: true | undefined; fromPosition?: number | undefined },
  ): void {
    const already = s.session !== undefined ? conn.sessions.has(s.session) : conn.all;
    if (!already && conn.subscriptionCount >= this.options.maxSubscriptions) {
      this.sendError(
        conn,
        'SUBSCRIPTION_LIMIT',
        `a connection may hold at most ${this.options.maxSubscriptions} subscriptions`,
      );
      return;
    }
    // Subscribing, acknowledging and sending the current state happen in one synchronous turn, so no change can
    // slip between the snapshot and the live updates.
    if (s.session !== undefined) {
      conn.sessions.add(s.session);
      this.send(conn, { type: 'subscribed', subscription: { session: s.session } });
      const doc = this.source.get(conn.tenantId, s.session);
      if (doc && (s.fromPosition === undefined || doc.position > s.fromPosition))
        this.send(conn, { type: 'session', document: doc });
      return;
    }
    conn.all = true;
    this.send(conn, { type: 'subscribed', subscription: { all: true } });
    if (s.fromPosition !== undefined) {
      for (const doc of this.source.changedSince(conn.tenantId, s.fromPosition)) {
        if (conn.dropped) return;
        this.send(conn, { type: 'session', document: doc });
      }
    }
  }

  private unsubscribe(
    conn: FeedConnection,
    u: { session?: string | undefined; all?: true | undefined },
  ): void {
    if (u.session !== undefined) {
      conn.sessions.delete(u.session);
      this.send(conn, { type: 'unsubscribed', subscription: { session: u.session } });
    } else {
      conn.all = false;
      this.send(conn, { type: 'unsubscribed', subscription: { all: true } });
    }
  }

  private sendError(conn: FeedConnection, code: FeedErrorCode, message: string, requestId?: string): void {
    this.send(conn, {
      type: 'error',
      ...(requestId === undefined ? {} : { requestId }),
      error: { code, message },
    });
  }

  private send(conn: FeedConnection, message: ServerMessage): void {
    this.sendText(conn, JSON.stringify(message));
  }

  private sendText(conn: FeedConnection, text: string): void {
    if (conn.dropped || conn.socket.readyState !== OPEN) return;
    if (conn.socket.bufferedAmount > this.options.maxBufferedBytes) {
      conn.dropped = true;
      this.slowDropped++;
      this.logger.warn(
        { tenantId: conn.tenantId, bufferedBytes: conn.socket.bufferedAmount },
        'dropping a feed client that does not keep up',
      );
      this.detach(conn);
      conn.socket.close(CloseCode.TryAgainLater, 'slow consumer: send buffer full');
      return;
    }
    conn.socket.send(text);
  }

  private beat(): void {
    for (const set of this.byTenant.values()) {
      for (const conn of set) {
        if (!conn.alive) {
          conn.socket.terminate();
          continue;
        }
        conn.alive = false;
        conn.socket.ping();
      }
    }
  }
}

/** Zod issues as one line, each naming its field (or the message as a whole). */
function issuesText(issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>): string {
  return issues
    .map((i) => `${i.path.length ? i.path.map(String).join('.') : '(message)'}: ${i.message}`)
    .join('; ');
}
