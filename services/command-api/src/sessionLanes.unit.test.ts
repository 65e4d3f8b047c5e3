import { describe, expect, it } from 'vitest';
import { waitFor } from '@rpa/shared/testing';
import { SessionLanes } from './sessionLanes.js';

/** A promise the test settles by hand, so ordering is shown without timers. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('SessionLanes', () => {
  it('runs work of one key one at a time, in arrival order, and other keys alongside', async () => {
    const lanes = new SessionLanes();
    const log: string[] = [];
    const first = gate();
    const a1 = lanes.run('a', async () => {
      log.push('a1 start');
      await first.opened;
      log.push('a1 end');
    });
    const a2 = lanes.run('a', async () => {
      log.push('a2');
    });
    const b1 = lanes.run('b', async () => {
      log.push('b1');
    });
    await b1;
    expect(log).toEqual(['a1 start', 'b1']);
    first.open();
    await Promise.all([a1, a2]);
    expect(log).toEqual(['a1 start', 'b1', 'a1 end', 'a2']);
  });

  it('a failure is its caller’s alone: the next work of the key still runs', async () => {
    const lanes = new SessionLanes();
    const failed = lanes.run('a', async () => {
      throw new RangeError('boom');
    });
    const next = lanes.run('a', async () => 'ran');
    await expect(failed).rejects.toThrow('boom');
    expect(await next).toBe('ran');
  });

  it('forgets a key once its work is done', async () => {
    const lanes = new SessionLanes();
    await Promise.all([lanes.run('a', async () => 1), lanes.run('b', async () => 2)]);
    await waitFor(() => lanes.size === 0, { timeoutMs: 1_000, description: 'the lanes to empty' });
  });
});
