import type { AddressInfo } from 'node:net';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  ApiKeyVerifier,
  connectNats,
  createMetricsRegistry,
  credentialAuthenticator,
  openEventStore,
  SessionCommandHandler,
  silentLogger,
  Topology,
  type EventStore,
  type HttpLimits,
  type NatsConnection,
} from '@rpa/shared';
import { startNatsServer, testApiKey, uniquePrefix, type NatsServerHandle } from '@rpa/shared/testing';
import { buildApp as buildCommandApp } from '../../command-api/src/app.js';
import { buildApp as buildQueryApp } from './app.js';
import { DEFAULT_FEED_OPTIONS } from './feed/feedHub.js';
import { RobotIndex } from './index/robotIndex.js';
import { SessionIndex } from './index/sessionIndex.js';
import {
  closingWsInput,
  commandInput,
  queryInput,
  Rng,
  wsInput,
  type FuzzContext,
  type HttpInput,
  type WsInput,
} from './testing/fuzzInputs.js';

/**
 * Both APIs, in process, over a real nats-server, take 10,000 malformed, oversized and just-past-the-limit
 * inputs: requests to every route (bodies, parameters, query strings, headers, credentials, methods) and
 * messages on a real WebSocket feed connection (invalid JSON, wrong types, binary, oversized, not UTF-8). Every
 * one must be refused (4xx, an error frame, or a close naming the fault), none may be a 5xx, both servers must
 * still answer afterwards, and the process may not grow by 64 MB or more.
 */

const SEED = 0x5eed_0005;
const HTTP_INPUTS = 8_000;
const WS_INPUTS = 2_000;
/** One WebSocket message in this many is one that ends the connection (and is followed by a reconnect). */
const CLOSING_EVERY = 50;
const WARM_UP = 3_000;
const MAX_RSS_GROWTH_MB = 64;
const FRAME_DEADLINE_MS = 5_000;

const TENANT = 'acme';
const ALL = ['sessions:write', 'sessions:read', 'admin'] as const;
const { key: API_KEY, entry: KEY_ENTRY } = testApiKey('fuzz-key', TENANT, [...ALL]);
const { key: OTHER_KEY, entry: OTHER_ENTRY } = testApiKey('other-key', TENANT, [...ALL]);
/** Limits high enough that the fuzz is answered by validation, not by the rate limiter (tested on its own). */
const FUZZ_HTTP: Partial<HttpLimits> = { rateLimitMax: 1_000_000 };

interface WsFrame {
  type?: string;
  error?: { code?: string };
}
type WsEvent = { frame: WsFrame } | { close: { code: number; reason: string } };

/** A feed connection that queues what it receives and waits for the next thing with a deadline. */
class FuzzSocket {
  private readonly events: WsEvent[] = [];
  private waiter: (() => void) | null = null;

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => {
      let frame: WsFrame;
      try {
        frame = JSON.parse(String(data)) as WsFrame;
      } catch {
        frame = { type: 'unparseable' };
      }
      this.push({ frame });
    });
    ws.on('close', (code, reason) => this.push({ close: { code, reason: reason.toString() } }));
    // A write racing the server's close (an oversized frame still being sent) may fail; the close says why.
    ws.on('error', () => {});
  }

  static async connect(url: string, headers: Record<string, string>): Promise<FuzzSocket> {
    const ws = new WebSocket(url, { headers, maxPayload: 16 * 1024 * 1024 });
    const socket = new FuzzSocket(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`upgrade refused with ${res.statusCode}`)),
      );
      ws.once('error', reject);
    });
    return socket;
  }

  send(input: WsInput): void {
    this.ws.send(input.data, { binary: input.binary });
  }

  async next(): Promise<WsEvent> {
    const deadline = Date.now() + FRAME_DEADLINE_MS;
    while (this.events.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`nothing received within ${FRAME_DEADLINE_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = null;
          resolve();
        };
      });
    }
    return this.events.shift()!;
  }

  close(): void {
    this.ws.close();
  }

  private push(event: WsEvent): void {
    this.events.push(event);
    this.waiter?.();
  }
}

/** The process's memory in MB, after a full collection when the runtime exposes one (node --expose-gc). */
function memoryMb(): { rss: number; heap: number; external: number } {
  (globalThis as { gc?: () => void }).gc?.();
  const usage = process.memoryUsage();
  const mb = (bytes: number) => bytes / (1024 * 1024);
  return { rss: mb(usage.rss), heap: mb(usage.heapUsed), external: mb(usage.external) };
}

describe('fuzz: both APIs refuse malformed, oversized and boundary inputs', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: EventStore;
  let index: SessionIndex;
  let robots: RobotIndex;
  let commandApp: FastifyInstance;
  let queryApp: FastifyInstance;
  let feedUrl: string;
  const extraApps: FastifyInstance[] = [];
  const authenticator = credentialAuthenticator({
    keys: new ApiKeyVerifier([KEY_ENTRY, OTHER_ENTRY]),
    jwt: null,
  });
  const auth = { authorization: `Bearer ${API_KEY}` };

  async function commandApi(http: Partial<HttpLimits>): Promise<FastifyInstance> {
    return buildCommandApp({
      handler: new SessionCommandHandler({ store }),
      authenticator,
      logger: silentLogger,
      registry: createMetricsRegistry('fuzz-command'),
      readiness: [],
      http,
    });
  }

  async function queryApi(http: Partial<HttpLimits>, topology: Topology): Promise<FastifyInstance> {
    return buildQueryApp({
      index,
      robots,
      eventStore: store,
      artifacts: await new Objm(nc).create(topology.artifactsBucket),
      authenticator,
      logger: silentLogger,
      registry: createMetricsRegistry('fuzz-query'),
      readiness: [],
      commands: new SessionCommandHandler({ store }),
      feed: { heartbeatIntervalMs: 0 },
      http,
    });
  }

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'api-fuzz');
    const topology = new Topology(uniquePrefix());
    store = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    const kvm = new Kvm(nc);
    index = new SessionIndex({ kv: await kvm.create(topology.sessionsBucket), logger: silentLogger });
    index.start();
    await index.ready;
    robots = new RobotIndex({
      kv: await kvm.create(topology.robotsBucket, topology.robotsBucketOptions()),
      logger: silentLogger,
    });
    commandApp = await commandApi(FUZZ_HTTP);
    queryApp = await queryApi(FUZZ_HTTP, topology);
    await queryApp.listen({ port: 0, host: '127.0.0.1' });
    feedUrl = `ws://127.0.0.1:${(queryApp.server.address() as AddressInfo).port}/v1/feed`;
  });

  afterAll(async () => {
    for (const app of extraApps) await app.close();
    await commandApp?.close();
    await queryApp?.close();
    index?.stop();
    await store?.close();
    await nc?.close();
    await server?.stop();
  });

  it('answers 10,000 faulty inputs with refusals only, stays up, and grows by less than 64 MB', async () => {
    // A session of the caller's own, so that faulty requests also reach routes on a session that exists.
    const opened = await commandApp.inject({
      method: 'POST',
      url: '/v1/sessions',
      headers: auth,
      payload: {},
    });
    expect(opened.statusCode).toBe(201);
    const ctx: FuzzContext = { sessionId: opened.json<{ sessionId: string }>().sessionId, apiKey: API_KEY };

    const rng = new Rng(SEED);
    const statuses = new Map<number, number>();
    const unexpected: string[] = [];
    const serverErrors: string[] = [];
    let batchRefusedInPlace = 0;

    const describeInput = (input: HttpInput) =>
      `${input.api} ${input.kind}: ${input.method} ${input.url.slice(0, 120)} ${String(input.payload ?? '').slice(0, 160)}`;

    async function runHttp(input: HttpInput, count: boolean): Promise<void> {
      const app = input.api === 'command' ? commandApp : queryApp;
      const res = await app.inject({
        method: input.method,
        url: input.url,
        headers: input.headers,
        ...(input.payload === undefined ? {} : { payload: input.payload }),
      });
      if (!count) return;
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      if (res.statusCode >= 500) {
        serverErrors.push(`${res.statusCode} ${describeInput(input)} -> ${res.body.slice(0, 200)}`);
      } else if (res.statusCode >= 400) {
        // A batch of invalid items is refused whole, with every item's own refusal in the details.
        if (input.batchOfInvalidItems) {
          const details = res.json<{ error: { details?: { items?: Array<{ opened: boolean }> } } }>().error
            .details;
          if (details?.items?.every((item) => !item.opened)) batchRefusedInPlace++;
        }
        return;
      } else {
        unexpected.push(`${res.statusCode} ${describeInput(input)} -> ${res.body.slice(0, 200)}`);
      }
    }

    const nextHttp = (i: number) => (i % 8 < 5 ? commandInput(rng, ctx) : queryInput(rng, ctx));

    // Warm up (JIT, pools, caches) before the memory baseline; these inputs are not counted.
    for (let i = 0; i < WARM_UP; i++) await runHttp(nextHttp(i), false);
    const before = memoryMb();
    const started = Date.now();

    for (let i = 0; i < HTTP_INPUTS; i++) await runHttp(nextHttp(i), true);

    // WebSocket messages on a real connection; one that ends the connection is followed by a reconnect.
    let errorFrames = 0;
    let errorCloses = 0;
    let reconnects = 0;
    const frameCodes = new Map<string, number>();
    let feed = await FuzzSocket.connect(feedUrl, auth);
    for (let i = 0; i < WS_INPUTS; i++) {
      const closing = i % CLOSING_EVERY === CLOSING_EVERY - 1;
      const input: WsInput & { closeCodes?: number[] } = closing
        ? closingWsInput(rng, DEFAULT_FEED_OPTIONS.maxMessageBytes)
        : wsInput(rng);
      feed.send(input);
      const event = await feed.next();
      const what = `ws ${input.kind}: ${String(input.data).slice(0, 160)}`;
      if ('frame' in event) {
        if (event.frame.type !== 'error') {
          unexpected.push(`${what} -> ${JSON.stringify(event.frame).slice(0, 200)}`);
          continue;
        }
        errorFrames++;
        const code = event.frame.error?.code ?? '?';
        frameCodes.set(code, (frameCodes.get(code) ?? 0) + 1);
        if (!closing) continue;
        // An oversized message is answered, then the connection is closed with 1009.
        const after = await feed.next();
        if (!('close' in after) || after.close.code !== 1009)
          unexpected.push(`${what} -> then ${JSON.stringify(after)}`);
      } else {
        const expected = input.closeCodes ?? [];
        if (expected.includes(event.close.code)) errorCloses++;
        else unexpected.push(`${what} -> close ${event.close.code} ${event.close.reason}`);
      }
      if (closing || 'close' in event) {
        feed.close();
        feed = await FuzzSocket.connect(feedUrl, auth);
        reconnects++;
      }
    }

    const elapsedMs = Date.now() - started;
    const after = memoryMb();
    const growthMb = after.rss - before.rss;
    const http4xx = [...statuses].filter(([s]) => s >= 400 && s < 500).reduce((n, [, c]) => n + c, 0);
    const http5xx = [...statuses].filter(([s]) => s >= 500).reduce((n, [, c]) => n + c, 0);

    // Both servers still answer: health, a read, a command and a feed subscription.
    expect((await commandApp.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await queryApp.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await queryApp.inject({ method: 'GET', url: '/v1/sessions', headers: auth })).statusCode).toBe(
      200,
    );
    expect(
      (await commandApp.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: {} }))
        .statusCode,
    ).toBe(201);
    feed.send({ kind: 'valid', data: JSON.stringify({ subscribe: { all: true } }), binary: false });
    expect(await feed.next()).toEqual({ frame: { type: 'subscribed', subscription: { all: true } } });
    feed.close();

    console.log(
      `api fuzz (seed ${SEED}): ${HTTP_INPUTS + WS_INPUTS} inputs = ${HTTP_INPUTS} HTTP + ${WS_INPUTS} WebSocket; ` +
        `HTTP ${http4xx} 4xx (${batchRefusedInPlace} of them batches of invalid items) ` +
        `[${[...statuses]
          .sort(([a], [b]) => a - b)
          .map(([s, c]) => `${s}:${c}`)
          .join(' ')}], ${http5xx} 5xx; ` +
        `WebSocket ${errorFrames} error frames + ${errorCloses} protocol closes (${reconnects} reconnects) ` +
        `[${[...frameCodes].map(([c, n]) => `${c}:${n}`).join(' ')}]; unexpected ${unexpected.length}; ` +
        `RSS ${before.rss.toFixed(1)} -> ${after.rss.toFixed(1)} MB (growth ${growthMb.toFixed(1)} MB; heap ` +
        `${before.heap.toFixed(1)} -> ${after.heap.toFixed(1)} MB, external ${before.external.toFixed(1)} -> ` +
        `${after.external.toFixed(1)} MB; ` +
        `gc ${typeof (globalThis as { gc?: unknown }).gc === 'function' ? 'forced' : 'not exposed'}); ${elapsedMs} ms`,
    );

    expect(serverErrors.slice(0, 20)).toEqual([]);
    expect(unexpected.slice(0, 20)).toEqual([]);
    expect(http4xx).toBe(HTTP_INPUTS);
    expect(errorFrames + errorCloses).toBe(WS_INPUTS);
    expect(growthMb).toBeLessThan(MAX_RSS_GROWTH_MB);
  }, 120_000);

  it('sends security headers from both APIs and rate-limits each key with 429 and Retry-After', async () => {
    const topology = new Topology(uniquePrefix());
    const limited = { rateLimitMax: 2, rateLimitWindowMs: 60_000 };
    const command = await commandApi(limited);
    const query = await queryApi(limited, topology);
    extraApps.push(command, query);

    for (const [app, call] of [
      [command, { method: 'POST', url: '/v1/sessions', payload: {} }],
      [query, { method: 'GET', url: '/v1/sessions' }],
    ] as const) {
      const answers = [];
      for (let i = 0; i < 3; i++) answers.push(await app.inject({ ...call, headers: auth }));
      const ok = call.method === 'POST' ? 201 : 200;
      expect(answers.map((r) => r.statusCode)).toEqual([ok, ok, 429]);
      for (const res of answers) {
        expect(res.headers['content-security-policy']).toContain("default-src 'none'");
        expect(res.headers['x-content-type-options']).toBe('nosniff');
        expect(res.headers['cache-control']).toBe('no-store');
      }
      expect(Number(answers[2]!.headers['retry-after'])).toBeGreaterThan(0);
      expect(answers[2]!.json()).toMatchObject({ error: { code: 'RATE_LIMITED' } });
      // Health is never limited, and another key of the same tenant, from the same address, has its own allowance.
      for (let i = 0; i < 5; i++)
        expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      const other = await app.inject({ ...call, headers: { authorization: `Bearer ${OTHER_KEY}` } });
      expect(other.statusCode).toBe(ok);
    }

    // A feed upgrade counts too: refused with 429 before the 101 once the key's allowance is spent.
    await query.listen({ port: 0, host: '127.0.0.1' });
    const url = `ws://127.0.0.1:${(query.server.address() as AddressInfo).port}/v1/feed`;
    await expect(FuzzSocket.connect(url, auth)).rejects.toThrow('upgrade refused with 429');
    const other = await FuzzSocket.connect(url, { authorization: `Bearer ${OTHER_KEY}` });
    other.close();
  });

  it('holds a feed connection to 100 subscriptions by default, refusing the next with an error frame', async () => {
    expect(DEFAULT_FEED_OPTIONS.maxSubscriptions).toBe(100);
    const feed = await FuzzSocket.connect(feedUrl, auth);
    for (let i = 0; i < 100; i++) {
      feed.send({
        kind: 'subscribe',
        data: JSON.stringify({ subscribe: { session: `s-${i}` } }),
        binary: false,
      });
      expect(await feed.next()).toEqual({
        frame: { type: 'subscribed', subscription: { session: `s-${i}` } },
      });
    }
    feed.send({ kind: 'subscribe', data: JSON.stringify({ subscribe: { all: true } }), binary: false });
    expect(await feed.next()).toMatchObject({
      frame: { type: 'error', error: { code: 'SUBSCRIPTION_LIMIT' } },
    });
    // Still open: an unsubscribe frees a place.
    feed.send({
      kind: 'unsubscribe',
      data: JSON.stringify({ unsubscribe: { session: 's-0' } }),
      binary: false,
    });
    expect(await feed.next()).toMatchObject({ frame: { type: 'unsubscribed' } });
    feed.send({ kind: 'subscribe', data: JSON.stringify({ subscribe: { all: true } }), binary: false });
    expect(await feed.next()).toEqual({ frame: { type: 'subscribed', subscription: { all: true } } });
    feed.close();
  });

  it('refuses a feed frame over twice the message limit at the protocol level (1009), before buffering it', async () => {
    const feed = await FuzzSocket.connect(feedUrl, auth);
    feed.send({ kind: 'huge', data: Buffer.alloc(4 * 1024 * 1024, 0x61), binary: false });
    expect(await feed.next()).toMatchObject({ close: { code: 1009 } });
    // The server is unharmed.
    const again = await FuzzSocket.connect(feedUrl, auth);
    again.send({ kind: 'valid', data: JSON.stringify({ subscribe: { all: true } }), binary: false });
    expect(await again.next()).toEqual({ frame: { type: 'subscribed', subscription: { all: true } } });
    again.close();
  });
});
