import type { FastifyInstance } from 'fastify';
import { guardedRoutes } from '../http/auth.js';

export interface RouterRoute {
  method: string;
  /** As a client writes it: `/v1/sessions/:id/steps`, `/v1/sessions:batch`. */
  url: string;
}

/**
 * Every method and path the app's router answers, read from fastify's own route tree (`printRoutes`), so that a
 * route is found however and wherever it was registered.
 */
export function routerRoutes(app: FastifyInstance): RouterRoute[] {
  const prefixes: string[] = [];
  const routes: RouterRoute[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^((?:│ {3}| {4})*)[├└]── (\S+)(?: \(([^)]*)\))?$/.exec(line);
    if (!match) continue;
    const depth = match[1]!.length / 4;
    const path = (depth === 0 ? '' : prefixes[depth - 1]!) + match[2]!;
    prefixes[depth] = path;
    prefixes.length = depth + 1;
    for (const method of (match[3] ?? '').split(',').map((m) => m.trim())) {
      if (method && method !== '-') routes.push({ method, url: path });
    }
  }
  return routes;
}

/** Fastify writes a literal colon as `::` in a route's url; clients (and printRoutes) write one. */
const clientUrl = (url: string) => url.replaceAll('::', ':');

/**
 * Holds the router's routes against what registerAuth saw: every route must either have been given scopes by the
 * auth policy or be one of `allowedOps` (the only routes served without credentials, by path). Returns the
 * routes that need credentials (what a test must call) and every discrepancy found.
 */
export function auditRoutes(
  app: FastifyInstance,
  allowedOps: readonly string[],
): { guarded: RouterRoute[]; ops: RouterRoute[]; problems: string[] } {
  const inventory = guardedRoutes(app);
  const byKey = new Map(inventory.map((r) => [`${r.method} ${clientUrl(r.url)}`, r]));
  const problems: string[] = [];
  const guarded: RouterRoute[] = [];
  const ops: RouterRoute[] = [];
  const router = routerRoutes(app);
  for (const route of router) {
    const seen = byKey.get(`${route.method} ${route.url}`);
    const exempt = allowedOps.includes(route.url);
    if (seen?.scopes) {
      if (seen.scopes.length === 0) problems.push(`${route.method} ${route.url}: no scope can call it`);
      guarded.push(route);
    } else if (seen && !exempt) {
      problems.push(
        `${route.method} ${route.url}: served without credentials but not an allowed operational route`,
      );
    } else if (!seen && !exempt) {
      problems.push(`${route.method} ${route.url}: registered where the auth policy did not see it`);
    } else {
      ops.push(route);
    }
  }
  for (const entry of inventory) {
    if (!router.some((r) => r.method === entry.method && r.url === clientUrl(entry.url)))
      problems.push(`${entry.method} ${entry.url}: in the auth inventory but not in the router`);
  }
  return { guarded, ops, problems };
}

/** Fills a route's `:params` from `values`; a parameter without a value throws, naming it. */
export function fillParams(url: string, values: Record<string, string>): string {
  return url.replace(/\/:([A-Za-z_]+)/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`no test value for the route parameter :${name} of ${url}`);
    return `/${encodeURIComponent(value)}`;
  });
}
