import { z } from 'zod';

/** Longest selector, URL or typed value a step may carry. */
export const STEP_LIMITS = {
  selector: 2_000,
  url: 4_096,
  value: 10_000,
  key: 64,
  maxTimeoutMs: 300_000,
  /** Most attempts a retry policy may ask for (the step consumer's max_deliver is set above it). */
  maxAttempts: 10,
  maxRetryDelayMs: 600_000,
} as const;

const selector = z.string().min(1).max(STEP_LIMITS.selector);

/** Only http(s) targets: file:, data:, javascript: and browser-internal schemes are refused before anything is stored. */
export const httpUrl = z
  .string()
  .max(STEP_LIMITS.url)
  .refine(
    (value) => {
      try {
        const url = new URL(value);
        return url.protocol === 'http:' || url.protocol === 'https:';
      } catch {
        return false;
      }
    },
    { message: 'must be an absolute http:// or https:// URL' },
  );

/**
 * How often a step that fails for a reason worth retrying (the target did not answer, a timeout, a browser
 * crash) is attempted, and how long to wait between attempts: `initialMs`, doubled per attempt up to `maxMs` with
 * exponential backoff, each delay spread by ±10% jitter so that many sessions failing together do not retry together.
 */
export const RetryPolicy = z
  .strictObject({
    maxAttempts: z.number().int().min(1).max(STEP_LIMITS.maxAttempts),
    backoff: z.enum(['exponential', 'fixed']).default('exponential'),
    initialMs: z.number().int().min(100).max(STEP_LIMITS.maxRetryDelayMs).default(1_000),
    maxMs: z.number().int().min(100).max(STEP_LIMITS.maxRetryDelayMs).default(30_000),
  })
  .refine((p) => p.maxMs >= p.initialMs, { message: 'maxMs must be at least initialMs', path: ['maxMs'] });
export type RetryPolicy = z.infer<typeof RetryPolicy>;

/** The retry policy of a step that names none. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 3,
  backoff: 'exponential',
  initialMs: 1_000,
  maxMs: 30_000,
};

const common = {
  timeoutMs: z.number().int().min(1).max(STEP_LIMITS.maxTimeoutMs).optional(),
  retry: RetryPolicy.optional(),
  /** "never" marks a step with effects outside the browser (a payment, a submission) that recovery must not repeat. */
  replay: z.enum(['safe', 'never']).optional(),
};

export const ClickStep = z.strictObject({ action: z.literal('click'), selector, ...common });
/**
 * The name of a secret the robot resolves from its secret provider (an env var, a file of a mounted Kubernetes
 * Secret). Starts with a letter and holds no `/`, so that it can never name a path outside the secrets directory.
 */
export const SecretName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_.-]{0,127}$/, 'must be 1-128 of A-Z a-z 0-9 _ . - starting with a letter');
export type SecretName = z.infer<typeof SecretName>;

/** An RFC 7230 token: the characters a header or cookie name may hold. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Header names a step may not set: hop-by-hop headers and those the browser controls (the Fetch standard's forbidden
 * names). Setting them would break the connection or let a step forge what the browser vouches for.
 */
const FORBIDDEN_HEADERS: ReadonlySet<string> = new Set([
  'accept-charset',
  'accept-encoding',
  'access-control-request-headers',
  'access-control-request-method',
  'connection',
  'content-length',
  'cookie',
  'cookie2',
  'date',
  'dnt',
  'expect',
  'host',
  'keep-alive',
  'origin',
  'referer',
  'set-cookie',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'via',
]);

export const HeaderName = z
  .string()
  .min(1)
  .max(STEP_LIMITS.key)
  .regex(TOKEN, 'must be an RFC 7230 token')
  .refine(
    (name) => {
      const lower = name.toLowerCase();
      return !FORBIDDEN_HEADERS.has(lower) && !lower.startsWith('proxy-') && !lower.startsWith('sec-');
    },
    { message: 'is a hop-by-hop or browser-controlled header and cannot be set' },
  );

/** A header's value: a literal, or the name of a secret the robot reads at the moment of each request. */
export const HeaderValue = z.union([
  z.strictObject({ secret: SecretName }),
  z.strictObject({
    value: z
      .string()
      .max(STEP_LIMITS.value)
      .regex(/^[^\r\n\0]*$/, 'must not contain CR, LF or NUL'),
  }),
]);

/** Most headers, and most cookies, one navigate step may set. */
export const MAX_NAVIGATE_HEADERS = 20;

/** A cookie whose value is the secret named `secret`, set for the navigated origin right before it is loaded. */
export const SecretCookie = z.strictObject({
  name: z.string().min(1).max(STEP_LIMITS.key).regex(TOKEN, 'must be an RFC 7230 token'),
  secret: SecretName,
});

/**
 * Loads `url`. `headers` are sent with every request to the URL's origin (and to no other) from this step on, for
 * the rest of the session; `cookies` are set for that origin before loading it. Values from secrets are read by
 * the robot at the moment of use and never travel in a command, an event or a work message.
 */
export const NavigateStep = z.strictObject({
  action: z.literal('navigate'),
  url: httpUrl,
  headers: z
    .record(z.string(), HeaderValue)
    .superRefine((headers, ctx) => {
      const names = Object.keys(headers);
      if (names.length > MAX_NAVIGATE_HEADERS)
        ctx.addIssue({ code: 'custom', message: `at most ${MAX_NAVIGATE_HEADERS} headers` });
      if (new Set(names.map((n) => n.toLowerCase())).size !== names.length)
        ctx.addIssue({ code: 'custom', message: 'header names must be unique regardless of case' });
      // Checked here rather than as the record's key schema, so that the message says what is wrong with the name.
      for (const name of names) {
        const checked = HeaderName.safeParse(name);
        if (!checked.success)
          ctx.addIssue({ code: 'custom', path: [name], message: checked.error.issues[0]!.message });
      }
    })
    .optional(),
  cookies: z
    .array(SecretCookie)
    .max(MAX_NAVIGATE_HEADERS)
    .refine((c) => new Set(c.map((x) => x.name)).size === c.length, {
      message: 'cookie names must be unique',
    })
    .optional(),
  ...common,
});

/**
 * Types a literal `value`, or the value of the secret named `secret`: the robot resolves it at the moment it types
 * it, so the value never travels in a command, an event or a work message. Exactly one of the two.
 */
export const FillStep = z
  .strictObject({
    action: z.literal('fill'),
    selector,
    value: z.string().max(STEP_LIMITS.value).optional(),
    secret: SecretName.optional(),
    ...common,
  })
  .superRefine((step, ctx) => {
    if (step.value !== undefined && step.secret !== undefined)
      ctx.addIssue({ code: 'custom', path: ['secret'], message: 'give either value or secret, not both' });
    else if (step.value === undefined && step.secret === undefined)
      ctx.addIssue({ code: 'custom', path: ['value'], message: 'value (or secret) is required' });
  });
export const PressStep = z.strictObject({
  action: z.literal('press'),
  selector,
  key: z.string().min(1).max(STEP_LIMITS.key),
  ...common,
});
export const WaitForStep = z.strictObject({
  action: z.literal('waitFor'),
  selector,
  state: z.enum(['attached', 'detached', 'visible', 'hidden']).optional(),
  ...common,
});
export const ExtractTextStep = z.strictObject({ action: z.literal('extractText'), selector, ...common });
export const ExtractTableStep = z.strictObject({ action: z.literal('extractTable'), selector, ...common });
export const ScreenshotStep = z.strictObject({
  action: z.literal('screenshot'),
  fullPage: z.boolean().optional(),
  ...common,
});

/**
 * The author's declaration that the page's state is fully captured by its storage (cookies, localStorage) and URL,
 * after a login say: the robot takes a restore point here, and recovery never replays the steps before it.
 */
export const CheckpointStep = z.strictObject({ action: z.literal('checkpoint'), ...common });

/** One unit of browser work, as an automation author submits it. Steps are data: nothing in them is evaluated. */
export const StepSpec = z.discriminatedUnion('action', [
  NavigateStep,
  ClickStep,
  FillStep,
  PressStep,
  WaitForStep,
  ExtractTextStep,
  ExtractTableStep,
  ScreenshotStep,
  CheckpointStep,
]);
export type StepSpec = z.infer<typeof StepSpec>;

/**
 * Whether a step sets request headers or cookies that stay with its origin for the rest of the session (a navigate
 * step with either): state of the browser context that no restore point keeps.
 */
export function setsCredentials(step: StepSpec): boolean {
  return (
    step.action === 'navigate' &&
    ((step.cookies?.length ?? 0) > 0 || Object.keys(step.headers ?? {}).length > 0)
  );
}
export type StepAction = StepSpec['action'];
export const STEP_ACTIONS = StepSpec.options.map((o) => o.shape.action.value) as readonly StepAction[];

/** Default per-step timeout when the step names none. */
export const DEFAULT_STEP_TIMEOUT_MS = 15_000;

/** Why a step failed, as a stable code dashboards and retry policies can switch on. */
export const StepErrorCode = z.enum([
  'SELECTOR_NOT_FOUND',
  'TIMEOUT',
  'NAVIGATION_FAILED',
  'BROWSER_ERROR',
  /** The step was cut off by a crash and an operator chose not to run it again (it must not run twice). */
  'INTERRUPTED',
  /** The session was cancelled while the step ran: it was abandoned part-way. */
  'CANCELLED',
  /** The broker gave up delivering the step (its delivery limit) before any result was recorded. */
  'DELIVERY_EXHAUSTED',
  /** A step names a secret the robot's secret provider does not hold: retrying cannot help. */
  'SECRET_NOT_FOUND',
  /** The robot's egress policy refused the address a navigation led to (loopback, private, metadata...). */
  'EGRESS_DENIED',
  'INTERNAL',
]);
export type StepErrorCode = z.infer<typeof StepErrorCode>;

export const StepError = z.strictObject({
  code: StepErrorCode,
  message: z.string().max(4_000),
});
export type StepError = z.infer<typeof StepError>;

/** What a succeeded step produced; the shape depends on the action. */
export const StepOutput = z.union([
  z.strictObject({
    kind: z.literal('navigation'),
    url: z.string(),
    status: z.number().int().nullable(),
    title: z.string(),
  }),
  z.strictObject({ kind: z.literal('text'), text: z.string() }),
  z.strictObject({
    kind: z.literal('table'),
    headers: z.array(z.string()),
    rows: z.array(z.array(z.string())),
  }),
  z.strictObject({
    kind: z.literal('artifact'),
    artifactKey: z.string(),
    contentType: z.string(),
    bytes: z.number().int().nonnegative(),
  }),
  z.strictObject({ kind: z.literal('checkpoint'), url: z.string() }),
  z.strictObject({ kind: z.literal('none') }),
]);

/**
 * Failures worth another attempt: the target did not answer or the browser broke. A selector that matched nothing
 * within its timeout, an invalid step or an operator's decision fails the same way every time: no retry.
 */
export const RETRYABLE_ERROR_CODES: ReadonlySet<StepErrorCode> = new Set([
  'NAVIGATION_FAILED',
  'TIMEOUT',
  'BROWSER_ERROR',
]);

/**
 * The delay before attempt `failedAttempt + 1` under `policy`. Pure: the jitter comes from `seed` (the id of the
 * command that recorded the failure), so that deciding again over the same stream gives the same delay.
 */
export function retryDelayMs(policy: RetryPolicy, failedAttempt: number, seed: string): number {
  const base =
    policy.backoff === 'fixed'
      ? policy.initialMs
      : Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, failedAttempt - 1));
  const jitter = 0.9 + 0.2 * unitHash(seed);
  return Math.max(1, Math.min(policy.maxMs, Math.round(base * jitter)));
}

/** A number in [0, 1) derived from a string (FNV-1a). */
function unitHash(seed: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) {
    h ^= seed.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 0x1_0000_0000;
}

/**
 * Steps that only read the page. Recovery does not replay them: the page after them is the page before them.
 */
export const READ_ONLY_ACTIONS: ReadonlySet<StepAction> = new Set([
  'extractText',
  'extractTable',
  'screenshot',
  'checkpoint',
]);
export type StepOutput = z.infer<typeof StepOutput>;
