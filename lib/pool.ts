import { describe } from './address.js';
import { ConnInUseError, ConnReleasedError, PoolClosedError, QueueFullError } from './errors.js';
import { connectionLimit } from './limits.js';
import { SlotQueue } from './slots.js';

/**
 * One of the pool's `max` places for an open resource, as the pool sees it:
 * in use, idle (on the LRU list), or releasing. Subclasses close the thing.
 * @internal
 */
export abstract class Seat {
  lruPrev: Seat | undefined = undefined;
  lruNext: Seat | undefined = undefined;
  /** When the resource was opened (performance.now()), for `maxLifetime`. */
  bornAt = performance.now();
  /** When the seat last became idle, for `idleTimeout`; set only when that is on. */
  idleSince = 0;

  /**
   * Detaches the resource from any index and closes it. Resolves once it is
   * closed (for a socket: its file descriptor); never rejects.
   */
  abstract shut(): Promise<void>;
}

/**
 * A party asking for a seat. Once one is free, `reuse()` is called
 * synchronously: it returns one of its own idle seats (unlinked from its own
 * indexes), or `undefined` to be given a fresh seat to open something in.
 * `seated()` then turns the claim into what the caller gets; `abandoned()` is
 * called instead if the caller is turned away (aborted, pool closed, queue full).
 * @internal
 */
export interface Claimant<T> {
  reuse(): Seat | undefined;
  seated(claim: Claim | Promise<Claim>): T | Promise<T>;
  abandoned(): void;
}

/** What a claimant gets: an idle seat to reuse, or `null` for a fresh one. @internal */
export type Claim = Seat | null;

/** Options of {@link ResourcePool}. */
export interface ResourcePoolOptions {
  /** How many resources may be open at once (in use, idle and closing): an integer >= 1. */
  max: number;
  /** A name for diagnostics. @default 'connpool' */
  name?: string;
  /**
   * Records where each connection was got, so that the `CONNPOOL_LEAK` warning
   * for one dropped without put() or close() says where (as `NODE_DEBUG=connpool`
   * does for every pool). Off by default: capturing stacks costs.
   * @default false
   */
  traceLeaks?: boolean;
  /** Closes a resource idle for longer than this many ms. 0 or undefined: never. @default undefined */
  idleTimeout?: number;
  /**
   * Closes a resource older than this many ms: at its first `put()` past
   * that age, or when it reaches it while idle. 0 or undefined: never.
   * @default undefined
   */
  maxLifetime?: number;
  /**
   * The most callers that may wait for a slot; one more is rejected at once
   * with `QueueFullError` (load shedding). 0: never wait. @default Infinity
   */
  maxWaiting?: number;
}

/** A snapshot of a pool's counters: the seed's metrics plus the waiters. */
export interface PoolStats {
  /** The most resources that may be open at once. */
  max: number;
  /** Resources handed out (or being opened for a caller). */
  inUse: number;
  /** Resources open and kept for re-use. */
  idle: number;
  /** Resources being closed. */
  releasing: number;
  /** Callers waiting for a slot. */
  waiting: number;
}

/**
 * What a {@link Resource} does to open and close the thing it manages.
 * `allocate()` may reject to fail the `get()`; `release()` may reject to fail
 * the `release()` that called it. The slot is freed either way.
 */
export interface AllocateReleaser {
  allocate(signal: AbortSignal | undefined): void | Promise<void>;
  release(): void | Promise<void>;
}

/**
 * A set of slots shared by everything that opens file descriptors (or any
 * scarce resource) through it: the seed's `resourcepool.Pool`.
 *
 * At every instant `inUse + idle + releasing <= max`. A caller waits (first
 * come, first served) only while every slot is in use or closing; idle
 * resources hold no slot, and the least recently used one is closed to make
 * room when a new one must be opened. Most programs use the one process-wide
 * pool from {@link getResourcePool}.
 *
 * @example
 * ```ts
 * const pool = new ResourcePool({ max: 16 });
 * const db = New('tcp', 'db.internal:5432', { pool });
 * ```
 */
export class ResourcePool {
  /** The most resources that may be open at once. */
  readonly max: number;
  /** The name given at construction, for diagnostics. */
  readonly name: string;
  /** Whether connections record where they were got, for leak warnings. */
  readonly traceLeaks: boolean;
  #inUse = 0;
  #idle = 0;
  #releasing = 0;
  /** Idle seats, least recently used first. */
  #lruFirst: Seat | undefined = undefined;
  #lruLast: Seat | undefined = undefined;
  readonly #queue: SlotQueue<Claimant<unknown>, unknown>;
  readonly #idleTimeout: number;
  readonly #maxLifetime: number;
  readonly #maxWaiting: number;
  /** One unref'd timer sweeps expired idle seats, only while lifetimes are on and some seat is idle. */
  #sweeper: NodeJS.Timeout | undefined = undefined;
  #closing: Promise<void> | undefined = undefined;
  #resolveClosed: (() => void) | undefined = undefined;

  /**
   * @throws {TypeError} if an option is not a number.
   * @throws {RangeError} if `max` is not an integer >= 1, or another option is out of range.
   */
  constructor(options: ResourcePoolOptions) {
    const max: unknown = options?.max;
    if (typeof max !== 'number') throw new TypeError(`max must be an integer >= 1, received ${describe(max)}`);
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`max must be an integer >= 1, received ${describe(max)}`);
    this.max = max;
    this.name = options.name ?? 'connpool';
    this.traceLeaks = options.traceLeaks === true;
    this.#idleTimeout = duration('idleTimeout', options.idleTimeout);
    this.#maxLifetime = duration('maxLifetime', options.maxLifetime);
    const maxWaiting: unknown = options.maxWaiting ?? Number.POSITIVE_INFINITY;
    if (typeof maxWaiting !== 'number') throw new TypeError(`maxWaiting must be a number, received ${describe(maxWaiting)}`);
    if (!(Number.isInteger(maxWaiting) || maxWaiting === Number.POSITIVE_INFINITY) || maxWaiting < 0) {
      throw new RangeError(`maxWaiting must be an integer >= 0, received ${describe(maxWaiting)}`);
    }
    this.#maxWaiting = maxWaiting;
    this.#queue = new SlotQueue<Claimant<unknown>, unknown>(
      () => this.#inUse + this.#releasing < this.max,
      (claimant) => claimant.seated(this.#claim(claimant)),
    );
  }

  /** True once {@link close} has been called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** The pool's counters now. */
  stats(): PoolStats {
    return {
      max: this.max,
      inUse: this.#inUse,
      idle: this.#idle,
      releasing: this.#releasing,
      waiting: this.#queue.size,
    };
  }

  /**
   * Creates a {@link Resource} that shares this pool's slots: for packages
   * that open file descriptors of their own and must stay within the same
   * budget as connpool's connections.
   *
   * @example
   * ```ts
   * const file = getResourcePool().create({
   *   async allocate() { handle = await open(path) },
   *   async release() { await handle.close() },
   * });
   * await file.get(AbortSignal.timeout(1_000));
   * try { await handle.read(...) } finally { file.put() }
   * ```
   */
  create(allocateReleaser: AllocateReleaser): Resource {
    if (typeof allocateReleaser?.allocate !== 'function' || typeof allocateReleaser.release !== 'function') {
      throw new TypeError(`create() needs an object with allocate() and release() methods, received ${describe(allocateReleaser)}`);
    }
    return new Resource(this, allocateReleaser);
  }

  /**
   * Takes a seat for `claimant`: at once when one is free and nobody waits,
   * else in turn. The result is what `claimant.seated()` makes of the claim:
   * an idle seat it reused, or `null` for a fresh seat, which it must fill
   * or give back with {@link vacate}.
   * @internal
   */
  acquire<T>(signal: AbortSignal | undefined, claimant: Claimant<T>): T | Promise<T> {
    if (this.#closing !== undefined) return turnAway(claimant, new PoolClosedError());
    if (this.#queue.size === 0 && this.#inUse + this.#releasing < this.max) return claimant.seated(this.#claim(claimant));
    if (this.#queue.size >= this.#maxWaiting) return turnAway(claimant, new QueueFullError());
    return this.#queue.wait(signal, claimant) as Promise<T>;
  }

  /**
   * Whether an in-use seat may go back to the idle list: not once the pool is
   * closed, nor past `maxLifetime`.
   * @internal
   */
  keeps(seat: Seat): boolean {
    return this.#closing === undefined && (this.#maxLifetime === 0 || performance.now() - seat.bornAt < this.#maxLifetime);
  }

  /** An in-use seat becomes idle: it keeps its resource open for re-use. Check {@link keeps} first. @internal */
  checkIn(seat: Seat): void {
    this.#inUse--;
    this.#idle++;
    seat.lruPrev = this.#lruLast;
    if (this.#lruLast === undefined) this.#lruFirst = seat;
    else this.#lruLast.lruNext = seat;
    this.#lruLast = seat;
    if (this.#idleTimeout !== 0 || this.#maxLifetime !== 0) {
      seat.idleSince = performance.now();
      this.#sweeper ??= setTimeout(this.#sweep, this.#sweepInterval()).unref();
    }
    this.#queue.notify();
  }

  /** Closes the resource in a seat, in use or idle; the slot frees once it is closed. @internal */
  dispose(seat: Seat, isIdle: boolean): Promise<void> {
    if (isIdle) this.#unlinkIdle(seat);
    else this.#inUse--;
    this.#releasing++;
    return seat.shut().then(this.#released);
  }

  /**
   * Closes the pool: rejects waiters with `PoolClosedError`, closes idle
   * resources now and those in use at their `put()`. Resolves once every
   * resource it counted is closed. Calling it again returns the same promise.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
    clearTimeout(this.#sweeper);
    this.#sweeper = undefined;
    this.#queue.rejectAll(new PoolClosedError());
    while (this.#lruFirst !== undefined) void this.dispose(this.#lruFirst, true);
    this.#settleClose();
    return this.#closing;
  }

  /** Closes the pool, for `await using pool = new ResourcePool(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Gives back a fresh seat that was never filled (a failed dial). @internal */
  vacate(): void {
    this.#inUse--;
    this.#queue.notify();
    this.#settleClose();
  }

  readonly #released = (): void => {
    this.#releasing--;
    this.#queue.notify();
    this.#settleClose();
  };

  #settleClose(): void {
    if (this.#resolveClosed !== undefined && this.#inUse + this.#idle + this.#releasing === 0) {
      this.#resolveClosed();
      this.#resolveClosed = undefined;
    }
  }

  /** Closes idle seats past `idleTimeout` or `maxLifetime`, and runs again while any seat is idle. */
  readonly #sweep = (): void => {
    this.#sweeper = undefined;
    const now = performance.now();
    const idleDeadline = this.#idleTimeout === 0 ? Number.NEGATIVE_INFINITY : now - this.#idleTimeout;
    const birthDeadline = this.#maxLifetime === 0 ? Number.NEGATIVE_INFINITY : now - this.#maxLifetime;
    // The list is in idle order: idle timeouts expire from the front; lifetimes anywhere.
    let seat = this.#lruFirst;
    while (seat !== undefined) {
      const next = seat.lruNext;
      if (seat.idleSince <= idleDeadline || seat.bornAt <= birthDeadline) void this.dispose(seat, true);
      else if (this.#maxLifetime === 0) break;
      seat = next;
    }
    if (this.#lruFirst !== undefined) this.#sweeper = setTimeout(this.#sweep, this.#sweepInterval()).unref();
  };

  /** A quarter of the shortest lifetime option, within 5 ms and 1 s. */
  #sweepInterval(): number {
    const shortest = Math.min(this.#idleTimeout || Number.POSITIVE_INFINITY, this.#maxLifetime || Number.POSITIVE_INFINITY);
    return Math.min(1_000, Math.max(5, shortest / 4));
  }

  #claim(claimant: Claimant<unknown>): Claim | Promise<Claim> {
    const reused = claimant.reuse();
    if (reused !== undefined) {
      this.#unlinkIdle(reused);
      this.#inUse++;
      return reused;
    }
    if (this.#inUse + this.#idle + this.#releasing < this.max) {
      this.#inUse++;
      return null;
    }
    return this.#evict();
  }

  /**
   * Closes the least recently used idle resource to make room, and hands its
   * slot to the caller once the close completes (S4). Only called when the
   * pool is full and has room for a caller, so some seat is idle.
   */
  #evict(): Promise<Claim> {
    const victim = this.#lruFirst!;
    this.#unlinkIdle(victim);
    this.#releasing++;
    return victim.shut().then(() => {
      this.#releasing--;
      this.#inUse++;
      return null;
    });
  }

  #unlinkIdle(seat: Seat): void {
    if (seat.lruPrev === undefined) this.#lruFirst = seat.lruNext;
    else seat.lruPrev.lruNext = seat.lruNext;
    if (seat.lruNext === undefined) this.#lruLast = seat.lruPrev;
    else seat.lruNext.lruPrev = seat.lruPrev;
    seat.lruPrev = seat.lruNext = undefined;
    this.#idle--;
  }
}

function turnAway(claimant: Claimant<unknown>, error: Error): Promise<never> {
  claimant.abandoned();
  return Promise.reject(error);
}

/** An optional duration option in ms: 0 when off. */
function duration(name: string, value: unknown): number {
  if (value === undefined || value === 0 || value === Number.POSITIVE_INFINITY) return 0;
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number of milliseconds, received ${describe(value)}`);
  if (!(value > 0)) throw new RangeError(`${name} must be a number of milliseconds > 0, received ${describe(value)}`);
  return value;
}

let globalPool: ResourcePool | undefined;

/**
 * The process-wide pool that connections use unless told otherwise, created
 * on first use with `max` = {@link connectionLimit}(). Other packages that
 * open file descriptors can share its budget through
 * {@link ResourcePool.create}.
 */
export function getResourcePool(): ResourcePool {
  return (globalPool ??= new ResourcePool({ max: connectionLimit(), name: 'global' }));
}

/** Closes a {@link Resource} for the pool, keeping release()'s error for the caller. */
class ResourceSeat extends Seat {
  constructor(readonly close: () => Promise<void>) {
    super();
  }
  shut(): Promise<void> {
    return this.close();
  }
}

/**
 * One resource of a shared budget, made by {@link ResourcePool.create}: the
 * seed's `resourcepool.Resource`. `get()` takes a slot and allocates (or
 * reuses the allocation kept by the last `put()`); `put()` keeps it
 * allocated for re-use; `release()` frees it now.
 */
export class Resource {
  readonly #pool: ResourcePool;
  readonly #allocateReleaser: AllocateReleaser;
  readonly #seat: ResourceSeat;
  readonly #claimant: Claimant<Claim>;
  /** A caller holds it: from get() until put() or release(). */
  #isOut = false;
  /** Allocated and kept on the pool's idle list. */
  #isIdle = false;
  /** Allocated: in use or idle. */
  #isAllocated = false;
  #isReleaseScheduled = false;
  /** How the last holder let go, so that put() after release() is harmless. */
  #lastEnd: 'put' | 'release' | undefined = undefined;
  #releaseError: { error: unknown } | undefined = undefined;

  /** @internal Use {@link ResourcePool.create}. */
  constructor(pool: ResourcePool, allocateReleaser: AllocateReleaser) {
    this.#pool = pool;
    this.#allocateReleaser = allocateReleaser;
    this.#seat = new ResourceSeat(() => this.#shut());
    this.#claimant = {
      reuse: () => {
        if (!this.#isIdle) return undefined;
        this.#isIdle = false;
        return this.#seat;
      },
      seated: (claim) => claim,
      abandoned: () => {},
    };
  }

  /**
   * Takes a slot, waiting in turn while all are in use, then allocates unless
   * the allocation kept by the last `put()` is still there.
   * @throws {ResourceLimitExceededError} `ERR_RESOURCE_LIMIT_EXCEEDED` if `signal` aborts while waiting.
   * @throws {ConnInUseError} `ERR_CONN_IN_USE` if the resource is already held.
   * Errors of `allocate()` are passed through; the slot is freed.
   */
  async get(signal?: AbortSignal): Promise<void> {
    if (this.#isOut) throw new ConnInUseError('resource is already in use: put() or release() it first');
    this.#isOut = true;
    try {
      let claim = this.#pool.acquire(signal, this.#claimant);
      if (claim instanceof Promise) claim = await claim;
      if (claim !== null) return;
      try {
        await this.#allocateReleaser.allocate(signal);
      } catch (error) {
        this.#pool.vacate();
        throw error;
      }
      this.#isAllocated = true;
      this.#seat.bornAt = performance.now();
    } catch (error) {
      this.#isOut = false;
      throw error;
    }
  }

  /**
   * Lets go of the resource, keeping it allocated for the next `get()` (or
   * releasing it, if {@link scheduleRelease} asked). Does nothing after
   * `release()`.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` if it was already put, or never got.
   */
  put(): void {
    if (!this.#isOut || !this.#isAllocated) {
      if (this.#lastEnd === 'release') return;
      throw new ConnReleasedError('resource is not in use: put() without a matching get()');
    }
    this.#isOut = false;
    this.#lastEnd = 'put';
    if (this.#isReleaseScheduled || !this.#pool.keeps(this.#seat)) {
      this.#isReleaseScheduled = false;
      void this.#pool.dispose(this.#seat, false);
      return;
    }
    this.#isIdle = true;
    this.#pool.checkIn(this.#seat);
  }

  /**
   * Releases the resource now, in use or idle, and frees its slot.
   * Rejects with the error of `release()` if it threw; the slot is freed anyway.
   */
  async release(): Promise<void> {
    const wasIdle = this.#isIdle;
    if (this.#isOut && this.#isAllocated) {
      this.#isOut = false;
      this.#lastEnd = 'release';
    } else if (!wasIdle) {
      return;
    }
    this.#isIdle = false;
    this.#releaseError = undefined;
    await this.#pool.dispose(this.#seat, wasIdle);
    // #shut() sets it while dispose() runs.
    const failure = this.#releaseError as { error: unknown } | undefined;
    this.#releaseError = undefined;
    if (failure !== undefined) throw failure.error;
  }

  /**
   * Releases the resource now if it is idle, or at its next `put()` if it is
   * in use. Rejects like {@link release} when it releases at once.
   */
  async scheduleRelease(): Promise<void> {
    if (this.#isIdle) return this.release();
    if (this.#isOut) this.#isReleaseScheduled = true;
  }

  async #shut(): Promise<void> {
    this.#isIdle = false;
    this.#isAllocated = false;
    try {
      await this.#allocateReleaser.release();
    } catch (error) {
      this.#releaseError = { error };
    }
  }
}
