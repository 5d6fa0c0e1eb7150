import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** File descriptors left for everything else the process opens. */
const HEADROOM = 50;
/** The limit used when the file-descriptor limit cannot be read. */
const FALLBACK = 900;

/**
 * The default `max` of a {@link ResourcePool}: the soft `RLIMIT_NOFILE` of
 * this process, minus 50, rounded down to a multiple of 100, and at least 1;
 * 900 when the limit cannot be read (or is unlimited).
 *
 * On Linux the limit comes from `/proc/self/limits`; on other Unix systems
 * from `ulimit -n` in `/bin/sh`. It is read once, when connpool is loaded:
 * Node cannot change its own limit later, and a process that has run out of
 * descriptors could not open `/proc/self/limits` to find out.
 *
 * @example
 * ```ts
 * connectionLimit(); // 900 under `ulimit -n 1024`, 200 under `ulimit -n 256`
 * ```
 */
export function connectionLimit(): number {
  return LIMIT;
}

function limitFrom(soft: number | undefined): number {
  if (soft === undefined) return FALLBACK;
  return Math.max(1, Math.floor((soft - HEADROOM) / 100) * 100);
}

function readOpenFilesLimit(): number | undefined {
  if (process.platform === 'win32') return undefined;
  try {
    const limits = readFileSync('/proc/self/limits', 'latin1');
    const line = /^Max open files\s+(\S+)/m.exec(limits);
    return line === null ? undefined : toLimit(line[1]);
  } catch {
    // Not Linux, or /proc is not mounted: ask the shell.
  }
  try {
    return toLimit(execFileSync('/bin/sh', ['-c', 'ulimit -n'], { encoding: 'latin1', timeout: 5_000 }).trim());
  } catch {
    return undefined;
  }
}

function toLimit(text: string | undefined): number | undefined {
  if (text === undefined || !/^[0-9]+$/.test(text)) return undefined;
  return Number(text);
}

/** Read at load, before the process can have run out of descriptors (S11). */
const LIMIT = limitFrom(readOpenFilesLimit());
