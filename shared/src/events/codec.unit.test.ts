import { afterEach, describe, expect, it } from 'vitest';
import { SchemaError } from '../errors.js';
import type { EventToAppend, RecordedEvent } from '../eventStore/port.js';
import { decodeSessionEvent, encodeSessionEvent, sessionStreamId } from './codec.js';
import { CURRENT_SCHEMA_VERSION, upcasters, type SessionEvent } from './sessionEvents.js';

const metadata = {
  tenantId: 'acme',
  sessionId: 's1',
  occurredAt: '2024-05-01T10:00:00.000Z',
  commandId: 'cmd-1',
  commandType: 'OpenSession',
  actor: { kind: 'api-key' as const, id: 'key-1' },
};

function recorded(appended: Pick<EventToAppend, 'type' | 'data' | 'metadata'>): RecordedEvent {
  return {
    eventId: '0b9c7c0e-2f5d-4b9e-8f1a-7d1c2b3a4e5f',
    type: appended.type,
    data: appended.data,
    metadata: appended.metadata,
    streamId: sessionStreamId('s1'),
    revision: 3,
    position: 42,
    recordedAt: '2024-05-01T10:00:01.000Z',
  };
}

function schemaError(run: () => unknown): SchemaError {
  try {
    run();
  } catch (error) {
    if (error instanceof SchemaError) return error;
    throw error;
  }
  throw new Error('expected a SchemaError');
}

describe('session event codec', () => {
  const original = { ...CURRENT_SCHEMA_VERSION };
  afterEach(() => {
    Object.assign(CURRENT_SCHEMA_VERSION, original);
    delete upcasters.SessionCloseRequested;
  });

  it('round-trips an event through encode and decode, with its stream coordinates', () => {
    const event: SessionEvent = {
      type: 'SessionOpened',
      data: {
        labels: { team: 'billing' },
        browser: { locale: 'en-US' },
        idleTimeoutMs: 60_000,
        priority: 'normal',
        onStepFailure: 'continue',
        requires: {},
      },
    };
    const appended = encodeSessionEvent('0b9c7c0e-2f5d-4b9e-8f1a-7d1c2b3a4e5f', event, metadata);
    expect(appended.metadata).toMatchObject({ schemaVersion: CURRENT_SCHEMA_VERSION.SessionOpened });

    const decoded = decodeSessionEvent(recorded(JSON.parse(JSON.stringify(appended)) as EventToAppend));
    expect(decoded).toEqual({
      event,
      metadata: { ...metadata, schemaVersion: CURRENT_SCHEMA_VERSION.SessionOpened },
      eventId: '0b9c7c0e-2f5d-4b9e-8f1a-7d1c2b3a4e5f',
      streamId: 'session-s1',
      revision: 3,
      position: 42,
      recordedAt: '2024-05-01T10:00:01.000Z',
    });
  });

  it('upcasts a payload stored at an old schema version on read, without touching the stored event', () => {
    // Pretend SessionCloseRequested moved to v2 and v1 called its field `why`.
    CURRENT_SCHEMA_VERSION.SessionCloseRequested = 2;
    upcasters.SessionCloseRequested = {
      1: (data) => ({ reason: (data as { why: string | null }).why }),
    };
    const stored = recorded({
      type: 'SessionCloseRequested',
      data: { why: 'done for today' },
      metadata: { ...metadata, schemaVersion: 1 },
    });

    const decoded = decodeSessionEvent(stored);
    expect(decoded?.event).toEqual({ type: 'SessionCloseRequested', data: { reason: 'done for today' } });
    expect(decoded?.metadata.schemaVersion).toBe(2);
    expect(stored.data).toEqual({ why: 'done for today' });
  });

  it('refuses an old schema version that has no upcaster', () => {
    CURRENT_SCHEMA_VERSION.SessionCloseRequested = 2;
    const stored = recorded({
      type: 'SessionCloseRequested',
      data: { reason: null },
      metadata: { ...metadata, schemaVersion: 1 },
    });
    expect(schemaError(() => decodeSessionEvent(stored)).message).toMatch(/no upcaster/);
  });

  it('returns null for an event type this code does not know', () => {
    expect(decodeSessionEvent(recorded({ type: 'SessionTeleported', data: {}, metadata }))).toBeNull();
  });

  it('throws a SchemaError naming the field of an invalid stored payload', () => {
    const error = schemaError(() =>
      decodeSessionEvent(
        recorded({
          type: 'SessionClaimed',
          data: { robotId: 'r1', epoch: 0, previousRobotId: null },
          metadata: { ...metadata, schemaVersion: 1 },
        }),
      ),
    );
    expect(error.issues.map((i) => i.path)).toEqual(['epoch']);
    expect(error.message).toContain('epoch');
    expect(error.message).toContain('session-s1@3');
  });

  it('throws a SchemaError naming the field of invalid stored metadata', () => {
    const error = schemaError(() =>
      decodeSessionEvent(
        recorded({
          type: 'SessionCloseRequested',
          data: { reason: null },
          metadata: { ...metadata, tenantId: '', schemaVersion: 1 },
        }),
      ),
    );
    expect(error.issues.map((i) => i.path)).toEqual(['tenantId']);
  });

  it('refuses to encode an invalid payload, naming the field', () => {
    const error = schemaError(() =>
      encodeSessionEvent(
        '0b9c7c0e-2f5d-4b9e-8f1a-7d1c2b3a4e5f',
        {
          type: 'SessionOpened',
          data: {
            labels: {},
            browser: { locale: 'not a tag!' },
            idleTimeoutMs: null,
            priority: 'normal',
            onStepFailure: 'continue',
            requires: {},
          },
        },
        metadata,
      ),
    );
    expect(error.issues.map((i) => i.path)).toEqual(['browser.locale']);
    expect(error.message).toContain('browser.locale');
  });

  describe('the v1 payloads recorded before retries and failure policies', () => {
    it('reads a v1 SessionOpened as v2: normal priority, the continue policy, no requirements', () => {
      const v1 = { labels: { team: 'billing' }, browser: { locale: 'en-US' }, idleTimeoutMs: 60_000 };
      const stored = recorded({
        type: 'SessionOpened',
        data: v1,
        metadata: { ...metadata, schemaVersion: 1 },
      });
      const decoded = decodeSessionEvent(stored);
      expect(decoded?.event).toEqual({
        type: 'SessionOpened',
        data: { ...v1, priority: 'normal', onStepFailure: 'continue', requires: {} },
      });
      expect(decoded?.metadata.schemaVersion).toBe(2);
      expect(stored.data).toEqual(v1);
    });

    it('reads a v1 StepFailed as v2: final, no attempt due', () => {
      const v1 = {
        stepId: 'a',
        seq: 1,
        attempt: 2,
        error: { code: 'TIMEOUT', message: 'no #go within 15s' },
        durationMs: 15_010,
        robotId: 'r1',
        epoch: 1,
      };
      const stored = recorded({
        type: 'StepFailed',
        data: v1,
        metadata: { ...metadata, commandType: 'CompleteStep', schemaVersion: 1 },
      });
      const decoded = decodeSessionEvent(stored);
      expect(decoded?.event).toEqual({ type: 'StepFailed', data: { ...v1, final: true, retryInMs: null } });
      expect(decoded?.metadata.schemaVersion).toBe(2);
      expect(stored.data).toEqual(v1);
    });

    it('writes SessionOpened and StepFailed at v2 and reads them back as written', () => {
      const events: SessionEvent[] = [
        {
          type: 'SessionOpened',
          data: {
            labels: {},
            browser: {},
            idleTimeoutMs: null,
            priority: 'low',
            onStepFailure: 'fail',
            requires: { region: 'eu' },
          },
        },
        {
          type: 'StepFailed',
          data: {
            stepId: 'a',
            seq: 1,
            attempt: 1,
            error: { code: 'NAVIGATION_FAILED', message: 'net::ERR_CONNECTION_REFUSED' },
            durationMs: 40,
            final: false,
            retryInMs: 1_042,
            robotId: 'r1',
            epoch: 1,
          },
        },
      ];
      for (const event of events) {
        const appended = encodeSessionEvent('0b9c7c0e-2f5d-4b9e-8f1a-7d1c2b3a4e5f', event, metadata);
        expect(appended.metadata).toMatchObject({ schemaVersion: 2 });
        expect(decodeSessionEvent(recorded(appended))?.event).toEqual(event);
      }
    });

    it('refuses a v2 StepFailed without final, naming the field', () => {
      const error = schemaError(() =>
        decodeSessionEvent(
          recorded({
            type: 'StepFailed',
            data: {
              stepId: 'a',
              seq: 1,
              attempt: 1,
              error: { code: 'TIMEOUT', message: 'x' },
              durationMs: 1,
              retryInMs: null,
              robotId: 'r1',
              epoch: 1,
            },
            metadata: { ...metadata, schemaVersion: 2 },
          }),
        ),
      );
      expect(error.issues.map((i) => i.path)).toEqual(['final']);
    });
  });
});
