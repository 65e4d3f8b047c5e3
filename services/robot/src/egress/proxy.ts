import { lookup } from 'node:dns/promises';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { RpaError, type Logger } from '@rpa/shared';
import { addressesOf, decideEgress, type EgressDecision, type EgressRule } from './addressPolicy.js';
import type { AllowEntry } from './allowList.js';
import { canonicalHost, parseAuthority, type CanonicalHost, type IpAddress } from './host.js';

/** Resolves a name to every address it has (the proxy checks them all and connects to one of them). */
export type Resolver = (name: string) => Promise<string[]>;

/** The system resolver, as Chromium would have used it: every address, in the order the system gives them. */
export const systemResolver: Resolver = async (name) =>
  (await lookup(name, { all: true, verbatim: true })).map((a) => a.address);

/** Whose traffic a channel carries: the session's tenant picks the allow-list. Null: the browser's own. */
export interface EgressIdentity {
  tenantId: string;
  sessionId: string;
}

/** One refused connection, as remembered for the step that caused it and logged. */
export interface EgressDenial {
  seq: number;
  /** Canonical host as requested: an IP literal (`[::1]` bracketed) or a lower-case name without trailing dot. */
  host: string;
  port: number;
  /** `host:port` (see targetOf). */
  target: string;
  rule: EgressRule;
  message: string;
}

export interface EgressProxyOptions {
  /** Exceptions for every tenant; read at each decision. */
  allow?: readonly AllowEntry[];
  /** Extra exceptions per tenant id. */
  tenantAllow?: ReadonlyMap<string, readonly AllowEntry[]>;
  resolve?: Resolver;
  logger: Logger;
  /** How long to wait for the target to accept a connection. Default 30 s. */
  connectTimeoutMs?: number;
  /** Called with each refusal's rule (a metric); never with the host, which is unbounded. */
  onDenied?: (rule: EgressRule) => void;
}

/** Denials a channel remembers for its steps; older ones are of no use to a step running now. */
const DENIALS_KEPT = 64;
/** The header a refusal carries, for people reading the browser's network log. */
export const EGRESS_DENIED_HEADER = 'x-egress-denied';

/** Hop-by-hop headers: they describe one connection (the browser's to this proxy) and are not forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'upgrade',
]);

/**
 * The robot's egress proxy: every connection a browser context makes goes through it. It resolves names itself,
 * checks every address under the policy (see decideEgress) and connects to the address it checked, so that the
 * browser can neither reach a closed address by some spelling of it nor be rebound between check and connect.
 * Plain http is forwarded; https and WebSockets are tunnelled with CONNECT (the proxy never sees inside them, and
 * does not need to: the destination address is what matters). Each browser context gets its own channel (listener
 * on 127.0.0.1 with a random port), so the proxy knows whose traffic it carries without credentials in the browser.
 */
export class EgressProxy {
  private readonly channels = new Set<EgressChannel>();
  private readonly resolve: Resolver;
  private closed = false;

  constructor(private readonly options: EgressProxyOptions) {
    this.resolve = options.resolve ?? systemResolver;
  }

  /** Opens a channel for one browser context (or, with null, for the browser itself: the global allow-list only). */
  async open(identity: EgressIdentity | null): Promise<EgressChannel> {
    if (this.closed) throw new EgressClosedError();
    const channel = new EgressChannel(
      identity,
      {
        decide: (host, port) => this.decide(this.allowListOf(identity), host, port),
        logger: this.options.logger,
        connectTimeoutMs: this.options.connectTimeoutMs ?? 30_000,
        onDenied: this.options.onDenied ?? (() => {}),
      },
      () => this.channels.delete(channel),
    );
    await channel.listen();
    this.channels.add(channel);
    return channel;
  }

  /** Closes every channel; safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.channels].map((c) => c.close()));
  }

  /** Read at each decision (not copied at open), so that a list changed in place applies to open contexts too. */
  private allowListOf(identity: EgressIdentity | null): readonly AllowEntry[] {
    const tenant = identity ? this.options.tenantAllow?.get(identity.tenantId) : undefined;
    const global = this.options.allow ?? [];
    return tenant ? [...global, ...tenant] : global;
  }

  private async decide(
    allow: readonly AllowEntry[],
    host: CanonicalHost,
    port: number,
  ): Promise<EgressDecision> {
    const addresses = await addressesOf(host, this.resolve);
    return decideEgress(allow, host, port, addresses);
  }
}

interface ChannelDeps {
  decide(host: CanonicalHost, port: number): Promise<EgressDecision>;
  logger: Logger;
  connectTimeoutMs: number;
  onDenied(rule: EgressRule): void;
}

/** The proxy was closed (the robot is stopping): no new browser context may get a channel. */
export class EgressClosedError extends RpaError {
  constructor() {
    super('BROWSER_UNAVAILABLE', 'the egress proxy is closed');
  }
}

/** Why the proxy could not serve a request that the policy allowed: answered 502, never a denial. */
class UpstreamError extends Error {}

/** One browser context's way out: a listener on 127.0.0.1, and the denials it made for that context's steps. */
export class EgressChannel {
  private readonly server: Server;
  private readonly sockets = new Set<Duplex>();
  private readonly denials: EgressDenial[] = [];
  private seq = 0;
  private port = 0;
  private closing: Promise<void> | null = null;

  constructor(
    readonly identity: EgressIdentity | null,
    private readonly deps: ChannelDeps,
    private readonly onClose: () => void,
  ) {
    this.server = createServer({ requestTimeout: 0 });
    // A request the proxy cannot handle (a header Node refuses to forward, say) costs that request, not the robot.
    this.server.on('request', (req, res) => this.forward(req, res).catch(() => res.destroy()));
    this.server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.tunnel(req, socket, head).catch(() => socket.destroy()),
    );
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.upgrade(req, socket, head).catch(() => socket.destroy()),
    );
    this.server.on('connection', (socket: Socket) => this.track(socket));
    this.server.on('clientError', (_error, socket) => socket.destroy());
  }

  /** The proxy URL for Playwright's `proxy.server`. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** A marker: denials made after it are the ones `denialSince` looks at. */
  mark(): number {
    return this.seq;
  }

  /** The latest denial made after `mark` that `matches` (e.g. one of a navigation's targets). */
  denialSince(mark: number, matches: (denial: EgressDenial) => boolean): EgressDenial | undefined {
    for (let i = this.denials.length - 1; i >= 0; i--) {
      const denial = this.denials[i]!;
      if (denial.seq <= mark) return undefined;
      if (matches(denial)) return denial;
    }
    return undefined;
  }

  /**
   * Applies the policy to a URL before the browser is sent there, so that a navigation the browser would refuse on
   * its own (or fail in some other way) is still reported as the policy's refusal. The refusal is recorded and logged
   * like one the proxy makes; the proxy still checks every request, redirects included.
   */
  async vet(url: string): Promise<EgressDenial | undefined> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return undefined;
    }
    const defaultPort = parsed.protocol === 'https:' || parsed.protocol === 'wss:' ? 443 : 80;
    const host = canonicalHost(parsed.hostname);
    if (!host) return undefined;
    const mark = this.seq;
    const checked = await this.check(host, parsed.port ? Number(parsed.port) : defaultPort);
    return checked.ok ? undefined : this.denialSince(mark, () => true);
  }

  /** Stops listening and cuts every connection (the context it served is gone). Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
      this.onClose();
    });
    return this.closing;
  }

  /** Plain http: `GET http://host/path` from the browser, re-issued to the checked address. */
  private async forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = absoluteTarget(req.url);
    if (!target) {
      res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' }).end('not a proxy request');
      return;
    }
    const checked = await this.check(target.host, target.port);
    if (!checked.ok && !checked.message) {
      res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' }).end('bad gateway');
      return;
    }
    if (!checked.ok) {
      res
        .writeHead(403, {
          'content-type': 'text/plain; charset=utf-8',
          [EGRESS_DENIED_HEADER]: checked.message,
          connection: 'close',
        })
        .end(`egress denied: ${checked.message}\n`);
      return;
    }
    const upstream = httpRequest({
      host: checked.address.toString(),
      family: checked.address.kind() === 'ipv6' ? 6 : 4,
      port: target.port,
      method: req.method,
      path: target.path,
      headers: endToEnd(req.headers),
      setHost: false,
      agent: false,
      timeout: this.deps.connectTimeoutMs,
    });
    // The timeout bounds connecting only: a slow answer (long polling) is the page's business.
    upstream.on('socket', (socket) => socket.once('connect', () => upstream.setTimeout(0)));
    upstream.on('timeout', () => upstream.destroy(new UpstreamError('connect timeout')));
    upstream.on('response', (answer) => {
      answer.on('error', () => res.destroy());
      try {
        res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEnd(answer.headers));
      } catch {
        upstream.destroy();
        res.destroy();
        return;
      }
      answer.pipe(res);
    });
    upstream.on('error', () => {
      if (res.headersSent) res.destroy();
      else res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' }).end('bad gateway');
    });
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  }

  /** https and WebSockets: `CONNECT host:port`, answered with a raw tunnel to the checked address. */
  private async tunnel(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const target = parseAuthority(req.url ?? '');
    if (!target) {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    const checked = await this.check(target.host, target.port);
    if (!checked.ok) {
      socket.end(refusalHead(checked.message));
      return;
    }
    this.pipeTo(socket, checked.address, target.port, 'HTTP/1.1 200 Connection Established\r\n\r\n', head);
  }

  /** A WebSocket upgrade sent as a forward request (`GET ws://…` style): relayed over a raw connection. */
  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const target = absoluteTarget(req.url);
    if (!target) {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    const checked = await this.check(target.host, target.port);
    if (!checked.ok) {
      socket.end(refusalHead(checked.message));
      return;
    }
    const lines = [`${req.method} ${target.path} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!;
      if (!name.toLowerCase().startsWith('proxy-')) lines.push(`${name}: ${req.rawHeaders[i + 1]}`);
    }
    const preamble = Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), head]);
    this.pipeTo(socket, checked.address, target.port, null, preamble);
  }

  /** Connects to the checked address (no lookup: it is an IP) and splices the two sockets together. */
  private pipeTo(
    client: Duplex,
    address: IpAddress,
    port: number,
    established: string | null,
    first: Buffer,
  ): void {
    const upstream = connect({ host: address.toString(), port, timeout: this.deps.connectTimeoutMs });
    this.track(upstream);
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      upstream.setTimeout(0);
      if (established) client.write(established);
      if (first.length > 0) upstream.write(first);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.once('timeout', () => upstream.destroy(new UpstreamError('connect timeout')));
    upstream.on('error', () => {
      if (connected) client.destroy();
      else client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => {
      if (connected) client.destroy();
    });
  }

  /** Applies the policy; a refusal is remembered for the step and logged before the browser hears of it. */
  private async check(
    host: CanonicalHost,
    port: number,
  ): Promise<{ ok: true; address: IpAddress } | { ok: false; message: string }> {
    let decision: EgressDecision;
    try {
      decision = await this.deps.decide(host, port);
    } catch {
      // Unresolvable: not a policy matter. The browser sees a gateway error, as it would have seen a DNS failure.
      return { ok: false, message: '' };
    }
    if (decision.allowed) {
      // One checked address is pinned; IPv4 first, as it is the one most hosts here can route.
      const address = decision.addresses.find((a) => a.kind() === 'ipv4') ?? decision.addresses[0];
      if (address) return { ok: true, address };
      return { ok: false, message: '' };
    }
    const { rule, message } = decision.refusal;
    this.seq += 1;
    this.denials.push({
      seq: this.seq,
      host: host.text,
      port,
      target: `${host.text}:${port}`,
      rule,
      message,
    });
    if (this.denials.length > DENIALS_KEPT) this.denials.shift();
    this.deps.onDenied(rule);
    this.deps.logger.warn(
      {
        egress: {
          host: host.text,
          port,
          rule,
          address: decision.refusal.address,
          tenantId: this.identity?.tenantId ?? null,
          sessionId: this.identity?.sessionId ?? null,
        },
      },
      `egress denied: ${message}`,
    );
    return { ok: false, message };
  }

  private track(socket: Duplex): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }
}

/** A forward-proxy request target: an absolute http URL (anything else is not for a proxy). */
function absoluteTarget(url: string | undefined): { host: CanonicalHost; port: number; path: string } | null {
  if (!url || !/^(?:http|ws):\/\//i.test(url)) return null;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  const host = canonicalHost(parsed.hostname);
  if (!host) return null;
  const port = parsed.port ? Number(parsed.port) : 80;
  return { host, port, path: `${parsed.pathname}${parsed.search}` };
}

/** The head of a refusal on a raw socket; an empty message means a gateway error rather than a policy refusal. */
function refusalHead(message: string): string {
  if (!message) return 'HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n';
  return `HTTP/1.1 403 Forbidden\r\n${EGRESS_DENIED_HEADER}: ${message}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;
}

/** Headers without the hop-by-hop ones, including any the Connection header names. */
function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
  );
  const kept: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name) && !named.has(name)) kept[name] = value;
  }
  return kept;
}
