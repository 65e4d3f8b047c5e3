import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import {
  createApiServer,
  registerAuth,
  registerOpsRoutes,
  type Authenticator,
  type HttpLimits,
  type Logger,
  type ReadinessCheck,
  type Registry,
  type Scope,
  type SessionCommandHandler,
  type SessionCommandType,
} from '@rpa/shared';
import { BatchMetrics } from './batch/batchMetrics.js';
import { CommandMetrics } from './commandMetrics.js';
import { CommandRunner } from './commandRunner.js';
import { randomIds, type IdSource } from './ids.js';
import { registerCancelSessionRoute } from './routes/cancelSession.js';
import { registerCloseSessionRoute } from './routes/closeSession.js';
import type { RouteContext } from './routes/context.js';
import { registerOpenSessionRoute } from './routes/openSession.js';
import { registerOpenSessionsBatchRoute } from './routes/openSessionsBatch.js';
import { registerPauseSessionRoute } from './routes/pauseSession.js';
import { registerResumeSessionRoute } from './routes/resumeSession.js';
import { registerRetryStepRoute } from './routes/retryStep.js';
import { registerSubmitStepsRoute } from './routes/submitSteps.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The session command a route issues; it labels the route's metrics. */
    commandType?: SessionCommandType;
  }
}

export interface CommandApiLimits {
  /** Largest request body; a larger one is refused with 413 before it is parsed. */
  bodyLimitBytes: number;
  /** Most steps one submission may carry, and one batch item. */
  maxStepsPerRequest: number;
  /** Largest batch body (POST /v1/sessions:batch); larger ones are refused with 413 before they are parsed. */
  batchBodyLimitBytes: number;
  /** Items of one batch handled at once, so that one batch cannot take the whole process. */
  batchConcurrency: number;
  /** Jittered rounds after the handler's own conflict retries ran out, before answering 503. */
  exhaustedRetries: number;
}

export const DEFAULT_LIMITS: CommandApiLimits = {
  bodyLimitBytes: 256 * 1024,
  maxStepsPerRequest: 500,
  batchBodyLimitBytes: 1024 * 1024,
  batchConcurrency: 8,
  exhaustedRetries: 2,
};

const COMMAND_SCOPES: readonly Scope[] = ['sessions:write'];

export interface CommandApiDeps {
  handler: SessionCommandHandler;
  authenticator: Authenticator;
  logger: Logger;
  registry: Registry;
  readiness: ReadinessCheck[];
  clock?: () => Date;
  ids?: Partial<IdSource>;
  limits?: Partial<CommandApiLimits>;
  /** Timeouts and rate limits (HTTP_*, RATE_LIMIT_*); its body limit, when given, overrides limits.bodyLimitBytes. */
  http?: Partial<HttpLimits>;
}

/**
 * Builds the command API: validates each request, turns it into a session command for the caller's tenant and
 * hands it to the command handler. It does not listen.
 */
export async function buildApp(deps: CommandApiDeps): Promise<FastifyInstance> {
  const limits = { ...DEFAULT_LIMITS, ...deps.limits };
  const app = await createApiServer({
    logger: deps.logger,
    limits: { bodyLimitBytes: limits.bodyLimitBytes, ...deps.http },
    openapi: {
      title: 'RPA command API',
      description:
        'Open browser sessions (one at a time or in batches), submit steps to them, close them, pause and resume them, retry steps that failed for good, and cancel them. Every call is scoped to the caller’s tenant.',
      tags: [{ name: 'sessions', description: 'Session commands' }],
    },
  });

  // Every command route changes sessions: it needs sessions:write. Registered before the routes it guards.
  registerAuth(app, deps.authenticator, { scopes: () => COMMAND_SCOPES });
  registerOpsRoutes(app, { registry: deps.registry, checks: deps.readiness });

  const metrics = new CommandMetrics(deps.registry);
  const runner = new CommandRunner({
    handler: deps.handler,
    metrics,
    logger: deps.logger,
    exhaustedRetries: limits.exhaustedRetries,
  });
  const handled = new WeakSet<FastifyRequest>();
  // Requests refused before reaching the handler (malformed, too large, unauthenticated) are counted here.
  app.addHook('onResponse', async (request) => {
    const type = request.routeOptions.config.commandType;
    if (type && !handled.has(request)) metrics.refused(type);
  });
  // Both 503s (store unavailable, session too busy) are worth retrying shortly.
  app.addHook('onSend', async (_request, reply) => {
    if (reply.statusCode === 503 && !reply.hasHeader('retry-after')) reply.header('retry-after', '1');
  });

  const ctx: RouteContext = {
    run: (request, command) => {
      handled.add(request);
      return runner.run(command);
    },
    load: (sessionId) => deps.handler.load(sessionId),
    clock: deps.clock ?? (() => new Date()),
    ids: { ...randomIds, ...deps.ids },
    maxStepsPerRequest: limits.maxStepsPerRequest,
  };
  const routes = app.withTypeProvider<ZodTypeProvider>();
  registerOpenSessionRoute(routes, ctx);
  registerOpenSessionsBatchRoute(routes, ctx, {
    metrics: new BatchMetrics(deps.registry),
    bodyLimitBytes: limits.batchBodyLimitBytes,
    concurrency: limits.batchConcurrency,
  });
  registerSubmitStepsRoute(routes, ctx);
  registerCloseSessionRoute(routes, ctx);
  registerPauseSessionRoute(routes, ctx);
  registerResumeSessionRoute(routes, ctx);
  registerRetryStepRoute(routes, ctx);
  registerCancelSessionRoute(routes, ctx);
  return app;
}
