import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Headers and rows of the table on /table, as a table extraction must return them. */
export const TABLE_HEADERS = ['Order', 'Item', 'Qty'];
export const TABLE_ROWS = [
  ['A-1', 'Paper clips', '3'],
  ['A-2', 'Stapler (blue)', '1'],
];

function html(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;
}

const escape = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** The session cookie /app sets: it must reach restore points, and never an event or a log line. */
export const APP_COOKIE = { name: 'sid', value: 'sid-7c1d2e9f-never-log-me' };

/**
 * A page with state in both places a browser keeps it: "Add" appends an item to localStorage (storage: a restore
 * point holds it), "Count" increments a counter in JavaScript memory (lost with the document). "Push" changes the
 * URL through the history API (same document); "Next" loads the next page (a new document).
 */
function appPage(page: number): string {
  return html(
    `App ${page}`,
    `<p>items <span id="items"></span></p><p>count <span id="count">0</span></p>
<button id="add" type="button">Add</button><button id="inc" type="button">Count</button>
<button id="push" type="button">Push</button><a id="next" href="/app?page=${page + 1}">Next</a>
<script>
const read = () => JSON.parse(localStorage.getItem('items') || '[]');
const render = () => { document.getElementById('items').textContent = String(read().length); };
let count = 0;
document.getElementById('add').onclick = () => {
  const items = read(); items.push(items.length + 1); localStorage.setItem('items', JSON.stringify(items)); render();
};
document.getElementById('inc').onclick = () => { count += 1; document.getElementById('count').textContent = String(count); };
document.getElementById('push').onclick = () => { history.pushState({}, '', '/app?page=${page}&pushed=1'); };
render();
</script>`,
  );
}

const PAGES: Record<string, string> = {
  '/': html('Home', '<h1 id="heading">Welcome</h1>'),
  '/form': html(
    'Search',
    `<form action="/result" method="get"><input id="q" name="q"></form>
<button id="go" type="button" onclick="document.getElementById('out').textContent = 'clicked'">Go</button>
<p id="out"></p>`,
  ),
  '/late': html(
    'Late',
    `<script>setTimeout(() => { const d = document.createElement('div'); d.id = 'late'; d.textContent = 'arrived';
document.body.appendChild(d); }, 300);</script>`,
  ),
  '/table': html(
    'Orders',
    `<table id="orders"><thead><tr>${TABLE_HEADERS.map((h) => `<th>${h}</th>`).join('')}</tr></thead>
<tbody>${TABLE_ROWS.map((r) => `<tr>${r.map((c) => `<td> ${escape(c)} </td>`).join('')}</tr>`).join('')}</tbody></table>
<table id="plain"><tr><th>K</th><th>V</th></tr><tr><td>a</td><td><table><tr><td>nested</td></tr></table></td></tr></table>`,
  ),
};

export interface TestSite {
  url: string;
  close(): Promise<void>;
}

/** A few pages to automate, served on 127.0.0.1 on a free port. */
export async function startTestSite(): Promise<TestSite> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/app') {
      const page = Math.max(1, Math.min(1_000, Number(url.searchParams.get('page')) || 1));
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'set-cookie': `${APP_COOKIE.name}=${APP_COOKIE.value}; Path=/; HttpOnly; SameSite=Lax`,
      });
      res.end(appPage(page));
      return;
    }
    if (url.pathname === '/result') {
      const q = url.searchParams.get('q') ?? '';
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html('Result', `<p id="result">You searched: ${escape(q)}</p>`));
      return;
    }
    const page = PAGES[url.pathname];
    res.writeHead(page ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page ?? html('Not found', '<h1>Not found</h1>'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
