import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The orders the demo site lists for whoever "signs in". */
export const DEMO_ORDERS = [
  ['A-1001', 'Paper clips', '3', '4.50'],
  ['A-1002', 'Stapler', '1', '12.00'],
  ['A-1003', 'Notebook', '5', '17.50'],
] as const;
export const DEMO_HEADERS = ['Order', 'Item', 'Qty', 'Total'] as const;

const escape = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font-family:sans-serif;margin:2rem}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3rem .6rem}</style>
</head><body>${body}</body></html>`;
}

const formPage = page(
  'Acme supplies: sign in',
  `<h1>Acme supplies</h1>
<form id="login" method="post" action="/orders">
  <label>Name <input id="name" name="name" required></label>
  <label>Email <input id="email" name="email" type="email" required></label>
  <button id="submit" type="submit">Show my orders</button>
</form>`,
);

function ordersPage(name: string): string {
  const rows = DEMO_ORDERS.map((r) => `<tr>${r.map((c) => `<td>${escape(c)}</td>`).join('')}</tr>`).join('');
  return page(
    'Acme supplies: orders',
    `<h1 id="greeting">Orders for ${escape(name)}</h1>
<table id="orders"><thead><tr>${DEMO_HEADERS.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows}</tbody></table>
<p id="count">${DEMO_ORDERS.length} orders</p>`,
  );
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10_000) break;
  }
  return new URLSearchParams(body);
}

export interface DemoSite {
  url: string;
  close(): Promise<void>;
}

/** A small website to automate: a sign-in form that leads to an orders table. Listens on 127.0.0.1. */
export async function startDemoSite(port = 0): Promise<DemoSite> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const send = (status: number, html: string) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
    };
    if (req.method === 'GET' && url.pathname === '/') return send(200, formPage);
    if (req.method === 'POST' && url.pathname === '/orders') {
      readForm(req).then(
        (form) => send(200, ordersPage(form.get('name') ?? 'guest')),
        () => send(400, page('Bad request', '<h1>Bad request</h1>')),
      );
      return;
    }
    if (req.method === 'GET' && url.pathname === '/orders')
      return send(200, ordersPage(url.searchParams.get('name') ?? 'guest'));
    return send(404, page('Not found', '<h1>Not found</h1>'));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const { port: actual } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${actual}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The demo session's steps against a running demo site. */
export function demoSteps(siteUrl: string) {
  return [
    { action: 'navigate', url: `${siteUrl}/` },
    { action: 'fill', selector: '#name', value: 'Ada Lovelace' },
    { action: 'fill', selector: '#email', value: 'ada@example.com' },
    { action: 'click', selector: '#submit' },
    { action: 'waitFor', selector: 'table#orders', state: 'visible' },
    { action: 'extractText', selector: '#greeting' },
    { action: 'extractTable', selector: 'table#orders' },
    { action: 'screenshot', fullPage: true },
  ] as const;
}
