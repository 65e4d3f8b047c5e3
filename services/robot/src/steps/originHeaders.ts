import type { BrowserContext, Route } from 'playwright-core';
import type { HeaderValue, Logger } from '@rpa/shared';
import type { z } from 'zod';
import type { SecretProvider } from '../secrets/provider.js';

type HeaderSpec = z.infer<typeof HeaderValue>;
/** Per origin (scheme, host and port), the headers its requests carry: names lower-cased, values as specified. */
type OriginTable = Map<string, Map<string, HeaderSpec>>;

/** The header table of each browser context; the context's one route reads it. Gone with the context. */
const tables = new WeakMap<BrowserContext, OriginTable>();

/**
 * Adds headers to every request the context makes to `origin` (and to no other origin), from now on for the life of
 * the context: a session's context lives as long as the session on this robot, and recovery adds them again to the
 * context it rebuilds (for the navigate steps its restore point holds, then by replaying those after it). A later call for the same origin adds to (and for the
 * same name, replaces) what an earlier one set. Only the spec is kept: a secret is read from `provider` at the
 * moment of each request, so that no value outlives the request that carries it. A secret that cannot be read then
 * leaves its header out (logged by name).
 *
 * A request that carries them is sent by Playwright on the context's behalf (through the same proxy, with the same
 * cookies) without following redirects, and its answer handed to the page as is: the browser itself follows a
 * redirect, and the next request is routed only when it stays on the origin. (The browser would apply headers set
 * with `route.continue` or `route.fallback` to every redirect it follows, to any origin.)
 */
export async function addOriginHeaders(
  context: BrowserContext,
  origin: string,
  headers: Readonly<Record<string, HeaderSpec>>,
  provider: SecretProvider,
  logger: Logger,
): Promise<void> {
  let table = tables.get(context);
  if (!table) {
    const created: OriginTable = new Map();
    table = created;
    tables.set(context, created);
    await context.route(
      (url) => created.has(url.origin),
      (route) => withHeaders(route, created, provider, logger),
    );
  }
  const forOrigin = table.get(origin) ?? new Map<string, HeaderSpec>();
  for (const [name, spec] of Object.entries(headers)) forOrigin.set(name.toLowerCase(), spec);
  table.set(origin, forOrigin);
}

async function withHeaders(
  route: Route,
  table: OriginTable,
  provider: SecretProvider,
  logger: Logger,
): Promise<void> {
  try {
    const request = route.request();
    const specs = table.get(new URL(request.url()).origin);
    if (!specs) return await route.fallback();
    const headers = { ...request.headers() };
    for (const [name, spec] of specs) {
      const value = 'secret' in spec ? await readSecret(provider, spec.secret, logger) : spec.value;
      if (value !== undefined) headers[name] = value;
    }
    const response = await route.fetch({ headers, maxRedirects: 0 });
    await route.fulfill({ response });
  } catch (error) {
    // The target did not answer, or the page or context closed under the request. The error is not logged as is:
    // Playwright may quote the request's headers in it.
    logger.debug({ reason: error instanceof Error ? error.name : 'unknown' }, 'a routed request failed');
    await route.abort('failed').catch(() => undefined);
  }
}

async function readSecret(
  provider: SecretProvider,
  name: string,
  logger: Logger,
): Promise<string | undefined> {
  try {
    const value = await provider.get(name);
    if (value === undefined) logger.warn({ secretName: name }, 'header secret not found: header left out');
    return value;
  } catch {
    logger.warn({ secretName: name }, 'header secret unreadable: header left out');
    return undefined;
  }
}
