import type { Request } from 'playwright-core';
import type { NavigateStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import { egressOf } from '../egress/contextEgress.js';
import { targetOf } from '../egress/host.js';
import type { EgressChannel } from '../egress/proxy.js';
import type { StepContext } from './context.js';
import { StepFailure, toStepFailure } from './errors.js';

/**
 * Main-document statuses that say the target (or the gateway in front of it) is unavailable right now: the step
 * fails as NAVIGATION_FAILED, which is retried and counts against the origin's breaker. Any other status (a 404, a
 * 500 from the application itself) is the page's answer and the step succeeds with it.
 */
const UNAVAILABLE_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

/**
 * Loads the URL and waits for the load event; answers with the final URL, HTTP status and title. A gateway or
 * availability error (502, 503, 504) fails the step as NAVIGATION_FAILED. A document the egress policy refused (the
 * URL itself or any redirect on the way) fails it as EGRESS_DENIED, naming the rule: that is not the target's
 * health, so it is neither retried nor counted against the breaker. Subresources the policy refuses (an iframe, a
 * fetch) only fail inside the page.
 */
export async function navigate(step: z.infer<typeof NavigateStep>, ctx: StepContext): Promise<StepOutput> {
  const egress = egressOf(ctx.page.context());
  const mark = egress?.mark() ?? 0;
  // Where this navigation's documents were fetched from (the URL and every redirect), as the proxy records targets.
  const documentTargets = new Set<string>();
  const onRequest = (request: Request) => {
    if (isMainDocument(request, ctx)) addTarget(documentTargets, request.url());
  };
  addTarget(documentTargets, step.url);
  const refused = await egress?.vet(step.url);
  if (refused) throw new StepFailure('EGRESS_DENIED', `egress denied: ${refused.message}`);
  ctx.page.on('request', onRequest);
  try {
    const response = await ctx.page.goto(step.url, { timeout: ctx.remainingMs(), waitUntil: 'load' });
    const status = response?.status();
    if (status === 403) assertNotRefused(egress, mark, documentTargets);
    if (status !== undefined && UNAVAILABLE_STATUSES.has(status))
      throw new StepFailure('NAVIGATION_FAILED', `the target answered HTTP ${status}`);
    return {
      kind: 'navigation',
      url: ctx.page.url(),
      // A same-document navigation (only the fragment changed) has no response.
      status: response?.status() ?? null,
      title: await ctx.page.title(),
    };
  } catch (error) {
    if (!(error instanceof StepFailure)) assertNotRefused(egress, mark, documentTargets);
    throw toStepFailure(error, 'navigate');
  } finally {
    ctx.page.off('request', onRequest);
  }
}

/** Throws EGRESS_DENIED when the egress proxy refused one of this navigation's documents since `mark`. */
function assertNotRefused(
  egress: EgressChannel | undefined,
  mark: number,
  targets: ReadonlySet<string>,
): void {
  const denial = egress?.denialSince(mark, (d) => targets.has(d.target));
  if (denial) throw new StepFailure('EGRESS_DENIED', `egress denied: ${denial.message}`);
}

function isMainDocument(request: Request, ctx: StepContext): boolean {
  try {
    return request.isNavigationRequest() && request.frame() === ctx.page.mainFrame();
  } catch {
    // A service worker's request has no frame: not a document of this page.
    return false;
  }
}

/** Adds the target of a URL (none for about:blank and the like: nothing the proxy could have refused). */
function addTarget(targets: Set<string>, url: string): void {
  const target = targetOf(url);
  if (target) targets.add(target);
}
