import { createServer, request, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@rpa/shared';
import { parseAllowList } from './allowList.js';
import { EgressProxy, type EgressChannel } from './proxy.js';

/** Sends one request through the proxy as a browser would (absolute URL) and answers status, header and body. */
function viaProxy(
  proxyPort: number,
  url: string,
): Promise<{ status: number; denied?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = URL.canParse(url)
      ? { host: new URL(url).host, 'proxy-connection': 'keep-alive' }
      : undefined;
    const options = { host: '127.0.0.1', port: proxyPort, path: url, method: 'GET', agent: false, headers };
    const req = request(options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, denied: res.headers['x-egress-denied'] as string, body }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends `CONNECT authority` and answers the proxy's status line, then (if open) a request through the tunnel. */
function tunnel(proxyPort: number, authority: string, then?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(proxyPort, '127.0.0.1', () => {
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    });
    let seen = '';
    let sent = false;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      seen += chunk;
      if (then && !sent && seen.includes('\r\n\r\n') && seen.startsWith('HTTP/1.1 200')) {
        sent = true;
        socket.write(then);
      }
    });
    socket.on('end', () => resolve(seen));
    socket.on('close', () => resolve(seen));
    socket.on('error', reject);
  });
}

describe('the egress proxy on its own (plain sockets, no browser)', () => {
  let target: Server;
  let targetPort: number;
  let other: Server;
  let otherPort: number;
  const hits: string[] = [];
  const otherHits: string[] = [];
  const lookups: string[] = [];
  let proxy: EgressProxy;
  let channel: EgressChannel;
  let proxyPort: number;

  beforeAll(async () => {
    target = createServer((req, res) => {
      hits.push(
        `${req.method} ${req.url} host=${req.headers.host} pc=${req.headers['proxy-connection'] ?? '-'}`,
      );
      res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' }).end('target');
    });
    other = createServer((req, res) => {
      otherHits.push(req.url ?? '');
      res.end('other');
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    targetPort = (target.address() as AddressInfo).port;
    otherPort = (other.address() as AddressInfo).port;
    proxy = new EgressProxy({
      allow: parseAllowList(`127.0.0.1:${targetPort}`),
      // Names only this resolver knows: a connection that works proves the proxy used the address it checked.
      resolve: async (name) => {
        lookups.push(name);
        if (name === 'pinned.test') return ['127.0.0.1'];
        throw Object.assign(new Error(`ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
      },
      logger: silentLogger,
    });
    channel = await proxy.open({ tenantId: 't', sessionId: 's' });
    proxyPort = Number(new URL(channel.url).port);
  });

  afterAll(async () => {
    await proxy?.close();
    await new Promise<void>((r) => target?.close(() => r()));
    await new Promise<void>((r) => other?.close(() => r()));
  });

  it('forwards plain http to the address it checked, resolving the name once, without hop-by-hop headers', async () => {
    lookups.length = 0;
    const answer = await viaProxy(proxyPort, `http://pinned.test:${targetPort}/page?q=1`);
    expect(answer).toMatchObject({ status: 200, body: 'target' });
    expect(lookups).toEqual(['pinned.test']);
    expect(hits.at(-1)).toBe(`GET /page?q=1 host=pinned.test:${targetPort} pc=-`);
  });

  it('refuses plain http to a closed address with 403 naming the rule, and never connects', async () => {
    const answer = await viaProxy(proxyPort, `http://0x7f.1:${otherPort}/secret`);
    expect(answer).toMatchObject({ status: 403, denied: 'loopback 127.0.0.1 refused' });
    expect(answer.body).toBe('egress denied: loopback 127.0.0.1 refused\n');
    expect(otherHits).toEqual([]);
    expect(channel.denialSince(0, (d) => d.target === `127.0.0.1:${otherPort}`)).toMatchObject({
      rule: 'loopback',
    });
  });

  it('answers an unresolvable name with 502, not a refusal', async () => {
    const mark = channel.mark();
    expect(await viaProxy(proxyPort, 'http://nowhere.test/')).toMatchObject({ status: 502 });
    expect(channel.mark()).toBe(mark);
  });

  it('tunnels CONNECT to an allowed target and refuses it to a closed one', async () => {
    const open = await tunnel(
      proxyPort,
      `pinned.test:${targetPort}`,
      `GET /tunnelled HTTP/1.1\r\nHost: pinned.test\r\nConnection: close\r\n\r\n`,
    );
    expect(open).toMatch(/^HTTP\/1\.1 200 Connection Established\r\n\r\nHTTP\/1\.1 200 OK/);
    expect(hits.at(-1)).toMatch(/^GET \/tunnelled host=pinned.test/);
    const refused = await tunnel(proxyPort, `[::ffff:127.0.0.1]:${otherPort}`);
    expect(refused).toMatch(
      /^HTTP\/1\.1 403 Forbidden\r\nx-egress-denied: loopback ::ffff:127\.0\.0\.1 refused\r\n/,
    );
    expect(otherHits).toEqual([]);
  });

  it('refuses what is not a proxy request', async () => {
    expect(await tunnel(proxyPort, 'user@127.0.0.1:443')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await viaProxy(proxyPort, '/relative')).toMatchObject({ status: 400 });
    expect(await viaProxy(proxyPort, 'file:///etc/passwd')).toMatchObject({ status: 400 });
  });

  it('closes its channels with the proxy, and opens none after', async () => {
    const extra = await proxy.open(null);
    await extra.close();
    await extra.close();
    const spare = new EgressProxy({ logger: silentLogger });
    await spare.close();
    await expect(spare.open(null)).rejects.toThrow(/closed/);
  });
});
