import { afterEach, describe, expect, it } from 'vitest';
import {
  InMemoryEventStore,
  SessionCommandHandler,
  silentLogger,
  type EventStore,
  type Logger,
  type ReadStreamOptions,
  type RecordedEvent,
  type SessionCommand,
  type StepState,
} from '@rpa/shared';
import { Breaker } from './breakers.js';
import { Reporter } from './reporter.js';

const SESSION = '0195e0c1-2f4a-7000-8000-0000000000b1';
const base = {
  sessionId: SESSION,
  tenantId: 't1',
  at: '2026-01-01T00:00:00.000Z',
  actor: { kind: 'api-key', id: 'key-1' },
} as const;
const ROBOT = { robotId: 'robot-1', epoch: 1 };

const submit = (n: number, ids: string[]): SessionCommand => ({
  ...base,
  type: 'SubmitSteps',
  commandId: `submit-${n}`,
  steps: ids.map((stepId) => ({ stepId, step: { action: 'fill', selector: `#${stepId}`, value: stepId } })),
});
const run = (stepId: string): SessionCommand[] => [
  { ...base, ...ROBOT, type: 'StartStep', commandId: `start-${stepId}`, stepId, attempt: 1 },
  {
    ...base,
    ...ROBOT,
    type: 'CompleteStep',
    commandId: `complete-${stepId}`,
    stepId,
    attempt: 1,
    durationMs: 1,
    outcome: { status: 'succeeded', output: { kind: 'none' } },
  },
];

/** The store, recording what each read asked for. */
function observed(inner: EventStore): EventStore & { reads: ReadStreamOptions[] } {
  const reads: ReadStreamOptions[] = [];
  return Object.assign(Object.create(inner) as EventStore, {
    reads,
    async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
      reads.push(options);
      return inner.readStream(streamId, options);
    },
  });
}

const breakers: Breaker[] = [];
afterEach(() => {
  for (const b of breakers.splice(0)) b.shutdown();
});

/** A session whose steps were submitted in three requests, with steps run in between. */
async function given() {
  const memory = new InMemoryEventStore(() => new Date(base.at));
  const handler = new SessionCommandHandler({ store: memory });
  const commands: SessionCommand[] = [
    { ...base, type: 'OpenSession', commandId: 'open', labels: {}, browser: {}, idleTimeoutMs: null },
    { ...base, type: 'ClaimSession', commandId: 'claim', robotId: ROBOT.robotId },
    submit(1, ['a', 'b', 'c']),
    ...run('a'),
    ...run('b'),
    submit(2, ['d']),
    ...run('c'),
    submit(3, ['e', 'f']),
    ...run('d'),
  ];
  for (const command of commands) await handler.handle(command);
  const { state } = await handler.load(SESSION);
  if (state.status === 'none') throw new TypeError('no session');
  const store = observed(memory);
  const warnings: string[] = [];
  const logger: Logger = { ...silentLogger, warn: (_obj, msg) => void warnings.push(msg ?? '') };
  const breaker = new Breaker('event-store', {
    timeoutMs: false,
    resetTimeoutMs: 1_000,
    errorThresholdPercentage: 50,
    volumeThreshold: 100,
    isBusinessFailure: () => false,
  });
  breakers.push(breaker);
  const reporter = new Reporter({
    handler,
    store,
    breaker,
    robotId: ROBOT.robotId,
    now: () => new Date(base.at),
    logger,
  });
  const steps = (...ids: string[]) => ids.map((id) => state.steps[id]!);
  return { reporter, store, steps, warnings };
}

const specOf = (id: string) => ({ action: 'fill', selector: `#${id}`, value: id });

describe('Reporter.stepSpecs', () => {
  it('reads only the part of the stream from the first submission of the steps to the last', async () => {
    const { reporter, store, steps } = await given();
    const [d, e] = steps('d', 'e');
    const specs = await reporter.stepSpecs(SESSION, [d!, e!]);
    expect(specs).toEqual(
      new Map([
        ['d', specOf('d')],
        ['e', specOf('e')],
      ]),
    );
    expect(store.reads).toEqual([
      {
        fromRevision: d!.submitted!.revision,
        maxCount: e!.submitted!.revision - d!.submitted!.revision + 1,
        hint: d!.submitted,
      },
    ]);
    // Submitted in one request: one event read per step.
    store.reads.length = 0;
    await reporter.stepSpecs(SESSION, steps('a', 'b', 'c'));
    expect(store.reads).toEqual([{ fromRevision: 2, maxCount: 3, hint: steps('a')[0]!.submitted }]);
  });

  it('reads the whole stream when the state does not say where a step was submitted', async () => {
    const { reporter, store, steps } = await given();
    const [b, f] = steps('b', 'f');
    const { submitted: _submitted, ...unplaced } = f!;
    const specs = await reporter.stepSpecs(SESSION, [b!, unplaced as StepState]);
    expect([...specs.keys()]).toEqual(['b', 'f']);
    expect(store.reads).toEqual([{}]);
  });

  it('falls back to the whole stream when the submissions are not where the state placed them', async () => {
    const { reporter, store, steps, warnings } = await given();
    const [e] = steps('e');
    const misplaced = { ...e!, submitted: { revision: 0, position: 1 } };
    const specs = await reporter.stepSpecs(SESSION, [misplaced]);
    expect(specs).toEqual(new Map([['e', specOf('e')]]));
    expect(store.reads).toEqual([{ fromRevision: 0, maxCount: 1, hint: misplaced.submitted }, {}]);
    expect(warnings).toEqual([
      'step submissions were not where the state placed them; reading the whole stream',
    ]);
  });

  it('reads nothing when no spec is needed', async () => {
    const { reporter, store } = await given();
    expect(await reporter.stepSpecs(SESSION, [])).toEqual(new Map());
    expect(store.reads).toEqual([]);
  });
});
