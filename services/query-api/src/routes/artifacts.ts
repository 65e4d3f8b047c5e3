import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import type { ObjectStore } from '@nats-io/obj';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { HttpError } from '@rpa/shared';
import type { SessionIndex } from '../index/sessionIndex.js';

const ARTIFACT_KEY = /^([A-Za-z0-9_-]{1,192})\.([A-Za-z0-9_-]{1,200})\.([a-z0-9]{1,10})$/;

/** Types a browser may render in place; anything else is served as a download. */
const INLINE_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
};
const DOWNLOAD_TYPES: Record<string, string> = {
  pdf: 'application/pdf',
  json: 'application/json',
  txt: 'text/plain; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
};

function notFound(key: string): HttpError {
  return new HttpError(404, 'ARTIFACT_NOT_FOUND', `artifact ${key} not found`);
}

/**
 * GET /v1/artifacts/:key: an artifact's bytes, streamed from the object store. The key names its session
 * (`<sessionId>.<stepId>.<ext>`), and the session must be the caller's; otherwise the answer is the same 404 as
 * for a missing object, so keys of other tenants cannot be probed.
 */
export function registerArtifactRoutes(
  app: FastifyInstance,
  index: SessionIndex,
  artifacts: ObjectStore,
): void {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/artifacts/:key',
    {
      schema: {
        summary: "A step's artifact (a screenshot, say)",
        tags: ['artifacts'],
        params: z.object({
          key: z.string().regex(ARTIFACT_KEY, 'must be <sessionId>.<stepId>.<extension>'),
        }),
      },
    },
    async (request, reply) => {
      const { key } = request.params;
      const [, sessionId, , ext] = ARTIFACT_KEY.exec(key)!;
      if (!index.get(request.auth.tenantId, sessionId!)) throw notFound(key);
      const result = await artifacts.get(key);
      if (!result || result.info.deleted) throw notFound(key);
      const etag = `"${result.info.digest}"`;
      reply
        .header('etag', etag)
        .header('cache-control', 'private, no-cache')
        .header('x-content-type-options', 'nosniff')
        // Artifacts come from arbitrary web pages: never let one run script in this origin.
        .header('content-security-policy', "default-src 'none'; sandbox");
      if (request.headers['if-none-match'] === etag) {
        await result.data.cancel();
        return reply.code(304).send();
      }
      const inline = INLINE_TYPES[ext!];
      reply
        .type(inline ?? DOWNLOAD_TYPES[ext!] ?? 'application/octet-stream')
        .header('content-length', result.info.size);
      if (!inline) reply.header('content-disposition', `attachment; filename="${key}"`);
      return reply.send(Readable.fromWeb(result.data as unknown as NodeReadableStream<Uint8Array>));
    },
  );
}
