import type { BrowserContext } from 'playwright-core';
import type { EgressChannel } from './proxy.js';

/**
 * The egress channel each browser context was given, so that a step holding only its page can tell a refused
 * connection from a target that is down. Weak: a context closed and dropped takes its entry with it.
 */
const channels = new WeakMap<BrowserContext, EgressChannel>();

/** Records the channel a context's traffic goes through. */
export function attachEgress(context: BrowserContext, channel: EgressChannel): void {
  channels.set(context, channel);
}

/** The channel a context's traffic goes through, if it was created with one. */
export function egressOf(context: BrowserContext): EgressChannel | undefined {
  return channels.get(context);
}
