import { parseAllowEntry, type AllowEntry } from '../src/egress/allowList.js';

/**
 * The allow-list entry for a local test origin (`http://127.0.0.1:PORT` -> `127.0.0.1:PORT`): that origin and port
 * only, so a test keeps the egress policy on for every other loopback address.
 */
export function allowOrigin(url: string): AllowEntry {
  return parseAllowEntry(new URL(url).host);
}

/** An allow-list for the given origins; the proxy reads it at each decision, so origins started later may be pushed. */
export function allowOrigins(...urls: string[]): AllowEntry[] {
  return urls.map(allowOrigin);
}
