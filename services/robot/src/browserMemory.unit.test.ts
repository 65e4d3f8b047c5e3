import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { browserMemoryBytes } from './browserMemory.js';

describe('browser memory from /proc', () => {
  let root = '';
  afterEach(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  /** A fake /proc: pid -> [parent pid, command line, VmRSS in kB]. */
  async function fakeProc(processes: Record<number, [number, string, number]>): Promise<string> {
    root = await mkdtemp(join(tmpdir(), 'proc-'));
    for (const [pid, [ppid, cmdline, rssKb]] of Object.entries(processes)) {
      const dir = join(root, pid);
      await mkdir(dir);
      // A command name with spaces and parentheses, as Chromium's renderers have.
      await writeFile(join(dir, 'stat'), `${pid} (chrome (x) y) S ${ppid} 1 1 0 -1`);
      await writeFile(join(dir, 'cmdline'), cmdline.split(' ').join('\0'));
      await writeFile(join(dir, 'status'), `Name:\tx\nVmRSS:\t  ${rssKb} kB\nThreads:\t1\n`);
    }
    await writeFile(join(root, 'uptime'), '1 1');
    return root;
  }

  it('sums the Chromium children of the process and all their descendants, nothing else', async () => {
    const proc = await fakeProc({
      100: [1, 'node robot.js', 50_000],
      200: [100, '/usr/bin/chromium --headless', 1_000],
      201: [200, '/usr/lib/chromium/chromium --type=renderer', 300],
      202: [201, 'helper', 20],
      300: [100, 'git status', 7_000],
      400: [1, '/usr/bin/chromium --headless', 9_000],
    });
    expect(await browserMemoryBytes(100, proc)).toBe((1_000 + 300 + 20) * 1_024);
  });

  it('answers 0 without a browser and null where /proc cannot be read', async () => {
    const proc = await fakeProc({ 100: [1, 'node robot.js', 50_000] });
    expect(await browserMemoryBytes(100, proc)).toBe(0);
    expect(await browserMemoryBytes(100, join(proc, 'missing'))).toBeNull();
  });
});
