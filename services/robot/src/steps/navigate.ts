import type { Request } from 'playwright-core';
import { silentLogger, type NavigateStep, type StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import { egressOf } from '../egress/contextEgress.js';
import { targetOf } from '../egress/host.js';
import type { EgressChannel } from '../egress/proxy.js';
import type { StepContext } from './context.js';
import { StepFailure, toStepFailure } from './errors.js';
import { resolveSecret } from './fill.js';
import { addOriginHeaders } from './originHeaders.js';
import { noSecrets } from '../secrets/provider.js';

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
  await applyCredentials(step, ctx);
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

/**
 * Sets the step's cookies for the URL's origin (httpOnly, secure over https, SameSite=Lax), each value read from the
 * secret provider now, and adds its headers to every later request to that origin. Every secret is resolved once
 * here, so that a missing one fails the step (SECRET_NOT_FOUND) before anything loads and each name is recorded as
 * used by this attempt; a header's secret is then read again at each request. Cookies are host-wide (any port) and
 * the session runner keeps those from secrets out of restore points. Recovery calls this on its own for the navigate
 * steps a restore point holds, since that restore point keeps neither the cookies nor the headers.
 */
export async function applyCredentials(step: z.infer<typeof NavigateStep>, ctx: StepContext): Promise<void> {
  const url = new URL(step.url);
  const context = ctx.page.context();
  if (step.cookies && step.cookies.length > 0) {
    const cookies = [];
    for (const cookie of step.cookies)
      cookies.push({
        name: cookie.name,
        value: await resolveSecret(cookie.secret, ctx),
        url: `${url.origin}/`,
        httpOnly: true,
        secure: url.protocol === 'https:',
        sameSite: 'Lax' as const,
      });
    try {
      await context.addCookies(cookies);
    } catch (error) {
      // Playwright may quote a cookie in its error: the failure is rebuilt from the redacted message alone.
      const values = cookies.flatMap((c) => [c.value, JSON.stringify(c.value).slice(1, -1)]);
      const failure = toStepFailure(error, 'act', values);
      throw new StepFailure(failure.code, failure.message);
    }
  }
  if (step.headers && Object.keys(step.headers).length > 0) {
    for (const spec of Object.values(step.headers))
      if ('secret' in spec) await resolveSecret(spec.secret, ctx);
    // resolveSecret fails without secrets, so a header naming a secret only gets here with a provider.
    const secrets = ctx.secrets;
    await addOriginHeaders(
      context,
      url.origin,
      step.headers,
      secrets?.provider ?? noSecrets,
      secrets?.logger ?? silentLogger,
    );
  }
}
