import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { CommandResult, LoadedSession, SessionCommand } from '@rpa/shared';
import type { IdSource } from '../ids.js';

/** The fastify instance routes are declared on: request and response types come from their zod schemas. */
export type CommandApp = FastifyInstance<
  Server,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  ZodTypeProvider
>;

/** What every command route needs besides the request. */
export interface RouteContext {
  /** Runs a command for the request and counts it. */
  run(request: FastifyRequest, command: SessionCommand): Promise<CommandResult>;
  /** A session's current state, read without deciding anything. */
  load(sessionId: string): Promise<LoadedSession>;
  clock: () => Date;
  ids: IdSource;
  maxStepsPerRequest: number;
}

/** The fields every command takes from the request: who, for which tenant, and when. */
export function commandBase(request: FastifyRequest, ctx: RouteContext, sessionId: string) {
  return {
    sessionId,
    tenantId: request.auth.tenantId,
    actor: request.auth.actor,
    at: ctx.clock().toISOString(),
  };
}
