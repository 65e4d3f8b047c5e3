import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { HttpError } from './errorHandler.js';

/** What one caller may ask of an API, and how long a connection may take to ask it. */
export interface HttpLimits {
  /** Largest request body; a larger one is refused with 413 before it is parsed. */
  bodyLimitBytes: number;
  /** Longest time a client may take to send a whole request (headers and body); 0 turns it off. */
  requestTimeoutMs: number;
  /** Longest a socket may stay silent, in a request or between keep-alive requests; 0 turns it off. */
  connectionTimeoutMs: number;
  /** Requests one caller may make per window; 0 turns rate limiting off. */
  rateLimitMax: number;
  rateLimitWindowMs: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  bodyLimitBytes: 256 * 1024,
  requestTimeoutMs: 30_000,
  // Above fastify's keep-alive timeout (72 s), so that an idle keep-alive socket is closed by that one first.
  connectionTimeoutMs: 120_000,
  rateLimitMax: 6_000,
  rateLimitWindowMs: 60_000,
};

const nonNegativeInt = (def: number, max: number) => z.coerce.number().int().min(0).max(max).default(def);

/** The variables both APIs read for their abuse limits. */
export const HttpLimitsEnv = {
  HTTP_BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1_024)
    .max(64 * 1024 * 1024)
    .default(DEFAULT_HTTP_LIMITS.bodyLimitBytes),
  HTTP_REQUEST_TIMEOUT_MS: nonNegativeInt(DEFAULT_HTTP_LIMITS.requestTimeoutMs, 3_600_000),
  HTTP_CONNECTION_TIMEOUT_MS: nonNegativeInt(DEFAULT_HTTP_LIMITS.connectionTimeoutMs, 3_600_000),
  RATE_LIMIT_MAX: nonNegativeInt(DEFAULT_HTTP_LIMITS.rateLimitMax, 10_000_000),
  RATE_LIMIT_WINDOW_MS: z.coerce
    .number()
    .int()
    .min(1_000)
    .max(86_400_000)
    .default(DEFAULT_HTTP_LIMITS.rateLimitWindowMs),
};

export interface HttpLimitsConfig {
  HTTP_BODY_LIMIT_BYTES: number;
  HTTP_REQUEST_TIMEOUT_MS: number;
  HTTP_CONNECTION_TIMEOUT_MS: number;
  RATE_LIMIT_MAX: number;
  RATE_LIMIT_WINDOW_MS: number;
}

/** The limits a parsed configuration asks for. */
export function httpLimitsFromConfig(config: HttpLimitsConfig): HttpLimits {
  return {
    bodyLimitBytes: config.HTTP_BODY_LIMIT_BYTES,
    requestTimeoutMs: config.HTTP_REQUEST_TIMEOUT_MS,
    connectionTimeoutMs: config.HTTP_CONNECTION_TIMEOUT_MS,
    rateLimitMax: config.RATE_LIMIT_MAX,
    rateLimitWindowMs: config.RATE_LIMIT_WINDOW_MS,
  };
}

/**
 * The fastify server options that carry the limits. Node checks request timeouts on an interval (30 s by
 * default); it is shortened for short timeouts, so that a slow client is cut off near its deadline.
 */
export function serverTimeoutOptions(limits: HttpLimits): {
  bodyLimit: number;
  requestTimeout: number;
  connectionTimeout: number;
  http: { connectionsCheckingInterval: number };
} {
  return {
    bodyLimit: limits.bodyLimitBytes,
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: limits.connectionTimeoutMs,
    http: {
      connectionsCheckingInterval:
        limits.requestTimeoutMs > 0
          ? Math.max(50, Math.min(30_000, Math.floor(limits.requestTimeoutMs / 4)))
          : 30_000,
    },
  };
}

/**
 * Who a request is counted against: the authenticated key or token subject (within its tenant), so that one
 * caller cannot spend another's allowance; the client address for a caller without an identity of its own.
 */
export function rateLimitKey(request: FastifyRequest): string {
  const auth = (request as { auth?: FastifyRequest['auth'] | null }).auth;
  if (auth && auth.actor.kind !== 'anonymous') return `${auth.tenantId}/${auth.actor.kind}:${auth.actor.id}`;
  return `ip:${request.ip}`;
}

/**
 * Security headers and per-caller rate limits, for an API that answers JSON only.
 *
 * Headers (@fastify/helmet): a content security policy that lets a response load and frame nothing (no API answer
 * is a page), no MIME sniffing, no referrer, HSTS, and `Cache-Control: no-store` unless a route chose its own,
 * so that no shared cache keeps a tenant's documents.
 *
 * Rate limits (@fastify/rate-limit): counted per caller (see rateLimitKey) in the preParsing hook, which runs
 * after authentication (onRequest) and before a body is read; over the limit is 429 with `Retry-After` (seconds).
 * Operational routes (`config.ops`) are never limited, so probes and scrapes keep working under load. Requests
 * refused by authentication are answered before the limit is counted. Call it before registering routes: the
 * limit is attached to each route as it is registered.
 */
export async function registerAbuseLimits(app: FastifyInstance, limits: HttpLimits): Promise<void> {
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'none'"],
      },
    },
    crossOriginResourcePolicy: { policy: 'same-site' },
    referrerPolicy: { policy: 'no-referrer' },
  });
  app.addHook('onSend', async (_request, reply) => {
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
  });

  if (limits.rateLimitMax <= 0) return;
  // Runs before the plugin's own onRoute hook: operational routes get no limit at all.
  app.addHook('onRoute', (route) => {
    if (route.config?.ops) route.config = { ...route.config, rateLimit: false };
  });
  await app.register(rateLimit, {
    global: true,
    hook: 'preParsing',
    max: limits.rateLimitMax,
    timeWindow: limits.rateLimitWindowMs,
    keyGenerator: rateLimitKey,
    errorResponseBuilder: (_request, context) =>
      new HttpError(
        429,
        'RATE_LIMITED',
        `at most ${context.max} requests per ${Math.round(limits.rateLimitWindowMs / 1000)} s; retry in ${context.after}`,
      ),
  });
}
