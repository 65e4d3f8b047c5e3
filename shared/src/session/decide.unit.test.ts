import { describe, expect, it } from 'vitest';
import type { SessionCommand } from '../commands/sessionCommands.js';
import type { SessionEvent } from '../events/sessionEvents.js';
import { decide } from './decide.js';
import { evolve } from './evolve.js';
import { initialState, type SessionState } from './state.js';

const base = {
  sessionId: 's1',
  tenantId: 't1',
  at: '2026-01-01T00:00:00.000Z',
  actor: { kind: 'system', id: 'test' },
} as const;
const meta = { sessionId: 's1', tenantId: 't1' };

function given(events: SessionEvent[]): SessionState {
  return events.reduce((s, e) => evolve(s, e, meta), initialState());
}

const opened: SessionEvent = {
  type: 'SessionOpened',
  data: { labels: {}, browser: {}, idleTimeoutMs: null },
};
const open: SessionCommand = {
  ...base,
  type: 'OpenSession',
  commandId: 'c1',
  labels: {},
  browser: {},
  idleTimeoutMs: null,
};

describe('decide', () => {
  it('given no events, when opening, then SessionOpened', () => {
    expect(decide(open, initialState())).toEqual({ ok: true, events: [opened] });
  });

  it('given an open session, when submitting steps, then they get consecutive seqs', () => {
    const decision = decide(
      {
        ...base,
        type: 'SubmitSteps',
        commandId: 'c2',
        steps: [
          { stepId: 'a', step: { action: 'click', selector: '#x' } },
          { stepId: 'b', step: { action: 'extractText', selector: 'h1' } },
        ],
      },
      given([opened]),
    );
    expect(decision.ok && decision.events.map((e) => e.type === 'StepSubmitted' && e.data.seq)).toEqual([
      1, 2,
    ]);
  });
});
