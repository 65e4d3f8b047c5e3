import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Memory (bytes) of the Chromium processes launched by the process `rootPid`: its children whose
 * command line names chrom(e|ium), and all their descendants (renderers, GPU and utility processes). Null where
 * /proc cannot be read (not Linux, or hidden). Processes that exit while being read are skipped. Each process counts
 * its proportional set size (Pss: pages it shares with the others, such as Chromium's code, count once across all of
 * them); where that is not available, its resident size (VmRSS), which counts shared pages in every process and so
 * overstates a browser with many renderers.
 */
export async function browserMemoryBytes(rootPid: number, procRoot = '/proc'): Promise<number | null> {
  let entries: string[];
  try {
    entries = await readdir(procRoot);
  } catch {
    return null;
  }
  const children = new Map<number, number[]>();
  await Promise.all(
    entries
      .filter((name) => /^\d+$/.test(name))
      .map(async (name) => {
        const ppid = await parentOf(procRoot, name);
        if (ppid === null) return;
        const pid = Number(name);
        const siblings = children.get(ppid);
        if (siblings) siblings.push(pid);
        else children.set(ppid, [pid]);
      }),
  );
  const roots: number[] = [];
  for (const pid of children.get(rootPid) ?? []) {
    if (/chrom/i.test(await commandLine(procRoot, pid))) roots.push(pid);
  }
  const seen = new Set<number>();
  const queue = [...roots];
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  let total = 0;
  for (const pid of seen) total += await residentBytes(procRoot, pid);
  return total;
}

/** The parent pid from /proc/<pid>/stat; the command name in it may hold spaces and parentheses. */
async function parentOf(procRoot: string, pid: string): Promise<number | null> {
  try {
    const stat = await readFile(join(procRoot, pid, 'stat'), 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(fields[1]);
    return Number.isInteger(ppid) ? ppid : null;
  } catch {
    return null;
  }
}

async function commandLine(procRoot: string, pid: number): Promise<string> {
  try {
    return (await readFile(join(procRoot, String(pid), 'cmdline'), 'utf8')).replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

async function residentBytes(procRoot: string, pid: number): Promise<number> {
  try {
    const rollup = await readFile(join(procRoot, String(pid), 'smaps_rollup'), 'utf8');
    const pss = /^Pss:\s+(\d+)\s+kB/m.exec(rollup);
    if (pss) return Number(pss[1]) * 1_024;
  } catch {
    // No smaps_rollup (older kernels, or a process that just exited): fall back to VmRSS.
  }
  try {
    const status = await readFile(join(procRoot, String(pid), 'status'), 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1_024 : 0;
  } catch {
    return 0;
  }
}
