import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request an origin received: its path and when it arrived (Date.now()). */
export interface OriginRequest {
  path: string;
  at: number;
}

/** A local HTTP origin whose behaviour a test switches, and which records every request it gets. */
export interface TestOrigin {
  url: string;
  requests: OriginRequest[];
  /** Requests to one path so far. */
  count(path: string): number;
  close(): Promise<void>;
}

/** A small HTML page. */
export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;
}

/** Starts an origin on 127.0.0.1 answering each request with `respond` (after recording it). */
export async function startOrigin(
  respond: (path: string, res: ServerResponse, req: IncomingMessage) => void,
): Promise<TestOrigin> {
  const requests: OriginRequest[] = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://origin').pathname;
    // Chromium asks for a favicon on its own: not a request any step made.
    if (path === '/favicon.ico') {
      res.writeHead(404).end();
      return;
    }
    requests.push({ path, at: Date.now() });
    respond(path, res, req);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    count: (path) => requests.filter((r) => r.path === path).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Answers with an HTML page and the given status. */
export function html(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', connection: 'close' }).end(body);
}
