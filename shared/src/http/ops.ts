import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

/** A named dependency check for /readyz; it throws (or rejects) when the dependency does not answer. */
export interface ReadinessCheck {
  name: string;
  check: () => Promise<void>;
}

/**
 * Registers the operational routes every service exposes: `/healthz` (the process is alive), `/readyz` (each
 * dependency answers, within a deadline) and `/metrics` (Prometheus text). They carry no tenant data.
 */
export function registerOpsRoutes(
  app: FastifyInstance,
  options: { registry: Registry; checks: ReadinessCheck[]; timeoutMs?: number },
): void {
  const timeoutMs = options.timeoutMs ?? 2_000;
  app.get('/healthz', { config: { ops: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: { ops: true } }, async (_request, reply) => {
    const results = await Promise.all(
      options.checks.map(async ({ name, check }) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            check(),
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
            }),
          ]);
          return { name, ok: true as const };
        } catch (error) {
          return { name, ok: false as const, error: (error as Error).message };
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    const ready = results.every((r) => r.ok);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks: results });
  });
  app.get('/metrics', { config: { ops: true } }, async (_request, reply) => {
    return reply.type(options.registry.contentType).send(await options.registry.metrics());
  });
}
