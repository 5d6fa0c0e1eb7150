import type { PoolStats } from '../../lib/index.js';

/**
 * Settles like `promise`, or rejects naming `what` if it has not settled
 * within `ms`: a bug that hangs then fails its test instead of the run. The
 * bound is generous; it is never a claim about how long anything takes.
 */
export function within<T>(promise: Promise<T>, what: string, ms = 3_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Resolves once `predicate` holds, polling; rejects naming `what` after `ms`. */
export async function eventually(predicate: () => boolean, what: string, ms = 3_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** What a promise settled with, as a value: the rejection reason, or `undefined` once the resolved value is handed to `onValue`. */
export function outcome<T>(promise: Promise<T>, onValue: (value: T) => unknown = () => {}): Promise<unknown> {
  return promise.then(
    (value) => {
      onValue(value);
      return undefined;
    },
    (error: unknown) => error,
  );
}

/** What `fn` threw, or `undefined`. */
export function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** The invariants of the contract (8) that `stats` breaks: negative counters, more open than `max`. */
export function invariantsBroken(stats: PoolStats): string[] {
  const broken: string[] = [];
  for (const name of ['inUse', 'idle', 'releasing', 'waiting'] as const) {
    if (stats[name] < 0) broken.push(`${name} ${stats[name]} < 0`);
  }
  if (stats.inUse + stats.idle + stats.releasing > stats.max) {
    broken.push(`inUse ${stats.inUse} + idle ${stats.idle} + releasing ${stats.releasing} > max ${stats.max}`);
  }
  return broken;
}
