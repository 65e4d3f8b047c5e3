import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { CommandRejectedError } from '../session/commandHandler.js';
import type { RejectionCode } from '../session/decide.js';
import { RpaError } from '../errors.js';

/** The body of every error response: `{error: {code, message, details?}}`. */
export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

/** An error raised at the HTTP edge with the status it maps to. */
export class HttpError extends RpaError {
  constructor(
    readonly statusCode: number,
    code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(code, message);
  }
}

const REJECTION_STATUS: Record<RejectionCode, number> = {
  SESSION_NOT_FOUND: 404,
  SESSION_EXISTS: 409,
  ILLEGAL_TRANSITION: 409,
  STALE_EPOCH: 409,
  STEP_NOT_FOUND: 404,
  IDEMPOTENCY_MISMATCH: 422,
  SESSION_STEP_LIMIT: 413,
  SESSION_PAUSED: 409,
};

/**
 * One error handler for the HTTP APIs: validation failures name the field (400), decider rejections map to their
 * status, coded fastify errors keep theirs, and every 5xx hides its text behind a generic message.
 */
export function registerErrorHandler(app: FastifyInstance): void {
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({
      error: {
        code: 'ROUTE_NOT_FOUND',
        message: `no route ${request.method} ${request.url.split('?')[0]}`,
      },
    });
  });
  app.setErrorHandler((error: FastifyError | Error, request, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      const where = error.validationContext ?? 'request';
      const details = error.validation.map((v) => ({
        // An issue on the whole object (an unknown key, say) has the path "/": name the object, not "body.".
        field: [where, ...(v.instancePath ?? '').split('/').filter(Boolean)].join('.'),
        message: v.message ?? 'invalid',
      }));
      return reply.code(400).send({
        error: {
          code: 'VALIDATION_FAILED',
          message: details.map((d) => `${d.field}: ${d.message}`).join('; '),
          details,
        },
      } satisfies ErrorBody);
    }
    if (error instanceof CommandRejectedError) {
      return reply.code(REJECTION_STATUS[error.rejection.code]).send({
        error: { code: error.rejection.code, message: error.rejection.message },
      } satisfies ErrorBody);
    }
    if (error instanceof HttpError) {
      return reply
        .code(error.statusCode)
        .send({ error: { code: error.code, message: error.message, details: error.details } });
    }
    const status = (error as FastifyError).statusCode;
    if (status && status >= 400 && status < 500) {
      const code = (error as FastifyError).code ?? 'BAD_REQUEST';
      return reply.code(status).send({ error: { code, message: error.message } } satisfies ErrorBody);
    }
    request.log.error({ err: error }, 'request failed');
    const code = error instanceof RpaError && error.code === 'EVENT_STORE_UNAVAILABLE' ? 503 : 500;
    return reply.code(code).send({
      error: {
        code: code === 503 ? 'UNAVAILABLE' : 'INTERNAL',
        message: code === 503 ? 'a dependency is unavailable; retry' : 'internal error',
      },
    });
  });
}

/** The HTTP status a decider rejection maps to, for answers that carry several outcomes in one body. */
export function rejectionStatus(code: RejectionCode): number {
  return REJECTION_STATUS[code];
}
