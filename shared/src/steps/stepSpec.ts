import { z } from 'zod';

/** Longest selector, URL or typed value a step may carry. */
export const STEP_LIMITS = {
  selector: 2_000,
  url: 4_096,
  value: 10_000,
  key: 64,
  maxTimeoutMs: 300_000,
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

const common = {
  timeoutMs: z.number().int().min(1).max(STEP_LIMITS.maxTimeoutMs).optional(),
  /** "never" marks a step with effects outside the browser (a payment, a submission) that recovery must not repeat. */
  replay: z.enum(['safe', 'never']).optional(),
};

export const NavigateStep = z.strictObject({ action: z.literal('navigate'), url: httpUrl, ...common });
export const ClickStep = z.strictObject({ action: z.literal('click'), selector, ...common });
export const FillStep = z.strictObject({
  action: z.literal('fill'),
  selector,
  value: z.string().max(STEP_LIMITS.value),
  ...common,
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
 * Steps that only read the page. Recovery does not replay them: the page after them is the page before them.
 */
export const READ_ONLY_ACTIONS: ReadonlySet<StepAction> = new Set([
  'extractText',
  'extractTable',
  'screenshot',
  'checkpoint',
]);
export type StepOutput = z.infer<typeof StepOutput>;
