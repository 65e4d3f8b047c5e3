import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Element ids of the recovery site's pages, for the steps that drive them. Every value a page shows lives in
 * exactly one of three places, so that a recovered browser can be checked place by place: the server session
 * (cookie), localStorage, or a JavaScript variable that every page load resets.
 */
export const SITE = {
  login: { user: '#user', password: '#password', submit: '#submit' },
  app: {
    /** The signed-in user, rendered by the server from the session cookie. */
    userName: '#user-name',
    /** `location.pathname`, written by the page's script. */
    path: '#path',
    /** Appends one item to a list in localStorage. */
    save: '#save',
    itemsCount: '#items-count',
    /** Adds one to a counter held only in a JavaScript variable. */
    increment: '#inc',
    counter: '#counter',
    /** Blocks the page in a synchronous request for the site's slow delay, then shows "done". */
    slow: '#slow',
    slowResult: '#slow-result',
    /** POSTs to /pay: an effect outside the browser. */
    pay: '#pay',
    paid: '#paid',
  },
  pad: { field: '#field', tap: '#tap', taps: '#taps', slow: '#slow', slowResult: '#slow-result' },
  /** Pages that answer only requests carrying the portal's header token and session cookie. */
  portal: {
    /** A link from /portal to /portal/next: a new document. */
    next: '#next',
    /** The account holder, on both pages. */
    user: '#portal-user',
    /** On /portal/next: the answer of the page's own fetch of /portal/api, which needs the header too. */
    api: '#portal-api',
    slow: '#slow',
    slowResult: '#slow-result',
  },
} as const;

/** The credentials the portal pages require: a header value and a cookie value. */
export interface PortalCredentials {
  header: string;
  token: string;
  cookie: string;
  session: string;
}

export interface RecoverySiteOptions {
  /** How long the slow request is held before it is answered. Default 4 s. */
  slowMs?: number;
  /** What the portal pages require; without it they refuse every request. */
  portal?: PortalCredentials;
}

/** A running recovery site on 127.0.0.1. */
export interface RecoverySite {
  url: string;
  /** POST /pay hits by the signed-in user. */
  payHits(user: string): number;
  /** GET /slow requests received so far. */
  slowHits(): number;
  /** Changes the slow delay for requests that arrive from now on. */
  setSlowMs(ms: number): void;
  /** Requests to the portal so far: path, and whether they carried both credentials. */
  portalRequests(): ReadonlyArray<{ path: string; authorised: boolean }>;
  close(): Promise<void>;
}

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function page(title: string, body: string, script = ''): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>${body}${script ? `<script>${script}</script>` : ''}</body></html>`;
}

const loginPage = page(
  'Sign in',
  `<h1>Sign in</h1>
<form id="login" method="post" action="/login">
  <label>User <input id="user" name="user" autocomplete="off"></label>
  <label>Password <input id="password" name="password" type="password"></label>
  <button id="submit" type="submit">Sign in</button>
</form>`,
);

// Static scripts: they read nothing but the DOM, localStorage and their own variables.
const appScript = `
const byId = (id) => document.getElementById(id);
const KEY = 'saved-items';
const readItems = () => {
  try {
    const items = JSON.parse(localStorage.getItem(KEY) || '[]');
    return Array.isArray(items) ? items : [];
  } catch {
    return [];
  }
};
const renderItems = () => { byId('items-count').textContent = String(readItems().length); };
let counter = 0;
byId('path').textContent = location.pathname;
byId('counter').textContent = String(counter);
renderItems();
byId('save').addEventListener('click', () => {
  const items = readItems();
  items.push(items.length + 1);
  localStorage.setItem(KEY, JSON.stringify(items));
  renderItems();
});
byId('inc').addEventListener('click', () => {
  counter += 1;
  byId('counter').textContent = String(counter);
});
byId('slow').addEventListener('click', () => {
  // Synchronous on purpose: the click does not return to its caller until the work is done.
  const request = new XMLHttpRequest();
  request.open('GET', '/slow', false);
  request.send();
  byId('slow-result').textContent = request.status === 200 ? 'done' : 'failed';
});
byId('pay').addEventListener('click', () => {
  fetch('/pay', { method: 'POST' }).then(
    (res) => { byId('paid').textContent = res.ok ? 'paid' : 'refused'; },
    () => { byId('paid').textContent = 'failed'; },
  );
});
`;

function appPage(user: string): string {
  return page(
    'App',
    `<h1>Signed in as <span id="user-name">${escapeHtml(user)}</span></h1>
<p>Path: <span id="path"></span></p>
<p><button id="save" type="button">save</button> saved items: <span id="items-count"></span></p>
<p><button id="inc" type="button">+1</button> counter: <span id="counter"></span></p>
<p><button id="slow" type="button">slow</button> <span id="slow-result"></span></p>
<p><button id="pay" type="button">pay</button> <span id="paid"></span></p>`,
    appScript,
  );
}

const padScript = `
const byId = (id) => document.getElementById(id);
let taps = 0;
byId('taps').textContent = '0';
byId('tap').addEventListener('click', () => {
  taps += 1;
  byId('taps').textContent = String(taps);
});
byId('slow').addEventListener('click', () => {
  const request = new XMLHttpRequest();
  request.open('GET', '/slow', false);
  request.send();
  byId('slow-result').textContent = request.status === 200 ? 'done' : 'failed';
});
`;

const portalScript = `
const byId = (id) => document.getElementById(id);
if (byId('portal-api')) {
  fetch('/portal/api').then((res) => res.text()).then(
    (text) => { byId('portal-api').textContent = text; },
    () => { byId('portal-api').textContent = 'failed'; },
  );
}
const slow = byId('slow');
if (slow) {
  slow.addEventListener('click', () => {
    const request = new XMLHttpRequest();
    request.open('GET', '/slow', false);
    request.send();
    byId('slow-result').textContent = request.status === 200 ? 'done' : 'failed';
  });
}
`;

const portalPage = (next: boolean) =>
  page(
    next ? 'Portal: next' : 'Portal',
    `<h1>Portal of <span id="portal-user">alice</span></h1>
${
  next
    ? `<p>API: <span id="portal-api"></span></p>
<p><button id="slow" type="button">slow</button> <span id="slow-result"></span></p>`
    : '<p><a id="next" href="/portal/next">next</a></p>'
}`,
    portalScript,
  );

const padPage = page(
  'Pad',
  `<h1>Pad</h1>
<p><input id="field" autocomplete="off"></p>
<p><button id="tap" type="button">tap</button> taps: <span id="taps"></span></p>
<p><button id="slow" type="button">slow</button> <span id="slow-result"></span></p>`,
  padScript,
);

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > 10_000) break;
  }
  return new URLSearchParams(body);
}

function cookie(req: IncomingMessage, name: string): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=');
  }
  return null;
}

/**
 * A small site whose state is spread over a server session, localStorage and page memory, with a slow action to
 * interrupt and a payment that must not run twice. Listens on 127.0.0.1 on a free port.
 */
export async function startRecoverySite(options: RecoverySiteOptions = {}): Promise<RecoverySite> {
  let slowMs = options.slowMs ?? 4_000;
  let slowHits = 0;
  const sessions = new Map<string, string>();
  const payHits = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const portalRequests: Array<{ path: string; authorised: boolean }> = [];
  const portalAuthorised = (req: IncomingMessage) => {
    const portal = options.portal;
    return (
      portal !== undefined &&
      req.headers[portal.header.toLowerCase()] === portal.token &&
      cookie(req, portal.cookie) === portal.session
    );
  };

  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      ...headers,
    });
    res.end(body);
  };
  const redirect = (res: ServerResponse, location: string, headers: Record<string, string> = {}) => {
    res.writeHead(303, { location, 'cache-control': 'no-store', ...headers });
    res.end();
  };
  const userOf = (req: IncomingMessage) => {
    const sid = cookie(req, 'sid');
    return sid ? (sessions.get(sid) ?? null) : null;
  };

  const server = createServer((req, res) => {
    const { pathname } = new URL(req.url ?? '/', 'http://localhost');
    const route = `${req.method ?? 'GET'} ${pathname}`;
    if (pathname === '/portal' || pathname.startsWith('/portal/')) {
      const authorised = portalAuthorised(req);
      portalRequests.push({ path: pathname, authorised });
      if (!authorised) return send(res, 401, page('Denied', '<h1 id="denied">credentials required</h1>'));
      if (route === 'GET /portal/api') return send(res, 200, 'api ok', { 'content-type': 'text/plain' });
      if (route === 'GET /portal' || route === 'GET /portal/next')
        return send(res, 200, portalPage(route === 'GET /portal/next'));
      return send(res, 404, page('Not found', '<h1>Not found</h1>'));
    }
    switch (route) {
      case 'GET /':
        return redirect(res, '/login');
      case 'GET /login':
        return send(res, 200, loginPage);
      case 'POST /login':
        readForm(req).then(
          (form) => {
            const user = form.get('user') ?? '';
            if (!user || !form.get('password')) return send(res, 400, page('Sign in', '<h1>Missing</h1>'));
            const sid = randomBytes(16).toString('hex');
            sessions.set(sid, user);
            redirect(res, '/app', { 'set-cookie': `sid=${sid}; Path=/; HttpOnly; SameSite=Lax` });
          },
          () => send(res, 400, page('Bad request', '<h1>Bad request</h1>')),
        );
        return;
      case 'GET /app': {
        const user = userOf(req);
        return user === null ? redirect(res, '/login') : send(res, 200, appPage(user));
      }
      case 'POST /pay': {
        const user = userOf(req);
        if (user === null) return send(res, 401, '{}', { 'content-type': 'application/json' });
        payHits.set(user, (payHits.get(user) ?? 0) + 1);
        return send(res, 200, JSON.stringify({ paid: true }), { 'content-type': 'application/json' });
      }
      case 'GET /slow': {
        slowHits += 1;
        const timer = setTimeout(() => {
          timers.delete(timer);
          send(res, 200, 'done', { 'content-type': 'text/plain' });
        }, slowMs);
        timers.add(timer);
        return;
      }
      case 'GET /pad':
        return send(res, 200, padPage);
      default:
        return send(res, 404, page('Not found', '<h1>Not found</h1>'));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    payHits: (user) => payHits.get(user) ?? 0,
    slowHits: () => slowHits,
    portalRequests: () => portalRequests,
    setSlowMs: (ms) => {
      slowMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
