import { readdirSync, readFileSync } from 'node:fs';

/** One process as /proc describes it; `startTime` tells a process from a later one that reused its pid. */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  pgid: number;
  /** The command name (at most 15 characters, as the kernel keeps it). */
  comm: string;
  /** R, S, D, T (stopped), Z (zombie), ... */
  state: string;
  /** Clock ticks after boot at which the process started. */
  startTime: number;
}

/** The /proc entry of one process, or null when there is none (gone, or not Linux). */
export function processInfo(pid: number): ProcessInfo | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name is in parentheses and may itself hold spaces or parentheses: split at the last one.
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const rest = stat
    .slice(close + 2)
    .trim()
    .split(' ');
  // rest[0] is field 3 of proc(5): state; ppid 4, pgrp 5, starttime 22.
  return {
    pid,
    comm: stat.slice(open + 1, close),
    state: rest[0] ?? '?',
    ppid: Number(rest[1]),
    pgid: Number(rest[2]),
    startTime: Number(rest[19]),
  };
}

/** Every process visible in /proc right now. */
export function listProcesses(): ProcessInfo[] {
  const all: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = processInfo(Number(entry));
    if (info) all.push(info);
  }
  return all;
}

/** The children, grandchildren, ... of a process, as they are now (not the process itself). */
export function descendants(pid: number): ProcessInfo[] {
  const byParent = new Map<number, ProcessInfo[]>();
  for (const info of listProcesses()) {
    const siblings = byParent.get(info.ppid) ?? [];
    siblings.push(info);
    byParent.set(info.ppid, siblings);
  }
  const found: ProcessInfo[] = [];
  const queue = [pid];
  const seen = new Set<number>([pid]);
  while (queue.length > 0) {
    for (const child of byParent.get(queue.shift()!) ?? []) {
      if (seen.has(child.pid)) continue;
      seen.add(child.pid);
      found.push(child);
      queue.push(child.pid);
    }
  }
  return found;
}

/** True while the process (the same one, when `startTime` is known) exists and is not a zombie. */
export function isAlive(target: number | Pick<ProcessInfo, 'pid' | 'startTime'>): boolean {
  const pid = typeof target === 'number' ? target : target.pid;
  const now = processInfo(pid);
  if (!now || now.state === 'Z' || now.state === 'X') return false;
  return typeof target === 'number' || now.startTime === target.startTime;
}

const CHROMIUM_NAMES = /chrom/i;

/** Whether a process is (by its command name) Chromium or one of Chromium's helper processes. */
export function isChromium(info: Pick<ProcessInfo, 'comm'>): boolean {
  return CHROMIUM_NAMES.test(info.comm);
}

/** A process's command-line arguments, or null when it is gone. */
export function commandLine(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return null;
  }
}

/**
 * The Chromium processes of a robot, as they are now: those under it, and any that left its tree (a helper that
 * daemonized) but still run with one of its browsers' profile directories.
 */
export function chromiumOf(robotPid: number): ProcessInfo[] {
  const under = descendants(robotPid).filter(isChromium);
  const profiles = new Set<string>();
  for (const info of under) {
    for (const arg of commandLine(info.pid) ?? []) {
      if (arg.startsWith('--user-data-dir=')) profiles.add(arg);
    }
  }
  const found = new Map(under.map((info) => [info.pid, info]));
  if (profiles.size === 0) return [...found.values()];
  for (const info of listProcesses()) {
    if (found.has(info.pid) || !isChromium(info)) continue;
    if ((commandLine(info.pid) ?? []).some((arg) => profiles.has(arg))) found.set(info.pid, info);
  }
  return [...found.values()];
}

/**
 * The Chromium processes among `processes` that are still alive: orphans, when they belonged to a robot that is
 * gone. Give the snapshots taken before the kill, so that a pid reused since then does not count.
 */
export function chromiumProcessesOf(processes: Iterable<number | ProcessInfo>): ProcessInfo[] {
  const alive: ProcessInfo[] = [];
  for (const entry of processes) {
    if (!isAlive(entry)) continue;
    const now = processInfo(typeof entry === 'number' ? entry : entry.pid);
    if (now && isChromium(now)) alive.push(now);
  }
  return alive;
}

function signal(target: number, sig: NodeJS.Signals): void {
  try {
    process.kill(target, sig);
  } catch (error) {
    // Already gone: what the caller wanted.
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/**
 * SIGKILLs a process and everything under it, as a machine failure would: the process, each descendant, and the
 * process group of each descendant that leads one (Playwright starts Chromium detached, in a group of its own),
 * and any Chromium helper running with the same profile. Returns what it found before the kill, for orphan checks.
 */
export function killTree(pid: number): ProcessInfo[] {
  const under = new Map(descendants(pid).map((info) => [info.pid, info]));
  for (const info of chromiumOf(pid)) under.set(info.pid, info);
  const ownGroup = processInfo(process.pid)?.pgid;
  signal(pid, 'SIGKILL');
  for (const child of under.values()) {
    if (child.pgid === child.pid && child.pgid !== ownGroup) signal(-child.pgid, 'SIGKILL');
    signal(child.pid, 'SIGKILL');
  }
  return [...under.values()];
}

/** A process stopped with SIGSTOP; `thaw` (safe to call twice) lets it go on with SIGCONT. */
export interface Frozen {
  readonly pid: number;
  thaw(): void;
}

/** Stops a process (not its children) with SIGSTOP, as a long GC pause or a stalled VM would. */
export function freeze(pid: number): Frozen {
  signal(pid, 'SIGSTOP');
  let thawed = false;
  return {
    pid,
    thaw() {
      if (thawed) return;
      thawed = true;
      signal(pid, 'SIGCONT');
    },
  };
}

/** Runs `work` while the process is stopped, and always lets it go on afterwards. */
export async function whileFrozen<T>(pid: number, work: () => Promise<T>): Promise<T> {
  const frozen = freeze(pid);
  try {
    return await work();
  } finally {
    frozen.thaw();
  }
}
