import { defineConfig } from 'vitest/config';

// The tier is in the file name: *.unit.test.ts needs nothing, *.int.test.ts talks to a real nats-server or
// Chromium, *.e2e.test.ts runs the services as processes.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          sequence: { groupOrder: 0 },
          include: [
            'shared/src/**/*.unit.test.ts',
            'services/*/src/**/*.unit.test.ts',
            'services/*/test/**/*.unit.test.ts',
            'scripts/**/*.unit.test.ts',
            'test/**/*.unit.test.ts',
          ],
        },
      },
      {
        test: {
          name: 'int',
          sequence: { groupOrder: 1 },
          include: [
            'shared/src/**/*.int.test.ts',
            'services/*/src/**/*.int.test.ts',
            'services/*/test/**/*.int.test.ts',
          ],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Two cores: integration files start their own nats-server and Chromium; more workers only thrash.
          maxWorkers: 2,
        },
      },
      {
        test: {
          name: 'e2e',
          sequence: { groupOrder: 2 },
          include: ['test/**/*.e2e.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
