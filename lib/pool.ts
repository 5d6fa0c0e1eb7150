import { describe } from './address.js';
import { ConnInUseError, ConnReleasedError } from './errors.js';
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

  /**
   * Detaches the resource from any index and closes it. Resolves once it is
   * closed (for a socket: its file descriptor); never rejects.
   */
  abstract shut(): Promise<void>;
}

/**
 * A party waiting for a seat. `reuse()` is called synchronously once a seat is
 * free: it returns one of its own idle seats (unlinked from its own indexes),
 * or `undefined` to be given a fresh seat to open something in.
 * @internal
 */
export interface Claimant {
  reuse(): Seat | undefined;
}

/** What a claimant gets: an idle seat to reuse, or `null` for a fresh one. @internal */
export type Claim = Seat | null;

/** Options of {@link ResourcePool}. */
export interface ResourcePoolOptions {
  /** How many resources may be open at once (in use, idle and closing): an integer >= 1. */
  max: number;
  /** A name for diagnostics. @default 'connpool' */
  name?: string;
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
  #inUse = 0;
  #idle = 0;
  #releasing = 0;
  /** Idle seats, least recently used first. */
  #lruFirst: Seat | undefined = undefined;
  #lruLast: Seat | undefined = undefined;
  readonly #queue: SlotQueue<Claimant, Claim>;

  /**
   * @throws {TypeError} if `options.max` is not a number.
   * @throws {RangeError} if `options.max` is not an integer >= 1.
   */
  constructor(options: ResourcePoolOptions) {
    const max: unknown = options?.max;
    if (typeof max !== 'number') throw new TypeError(`max must be an integer >= 1, received ${describe(max)}`);
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`max must be an integer >= 1, received ${describe(max)}`);
    this.max = max;
    this.name = options.name ?? 'connpool';
    this.#queue = new SlotQueue<Claimant, Claim>(
      () => this.#inUse + this.#releasing < this.max,
      (claimant) => this.#claim(claimant),
    );
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
   * else in turn. Resolves with the idle seat it reused or `null` for a fresh
   * seat, which the caller must fill, or give back with {@link vacate}.
   * @internal
   */
  acquire(signal: AbortSignal | undefined, claimant: Claimant): Claim | Promise<Claim> {
    if (this.#queue.size === 0 && this.#inUse + this.#releasing < this.max) return this.#claim(claimant);
    return this.#queue.wait(signal, claimant);
  }

  /** An in-use seat becomes idle: it keeps its resource open for re-use. @internal */
  checkIn(seat: Seat): void {
    this.#inUse--;
    this.#idle++;
    seat.lruPrev = this.#lruLast;
    if (this.#lruLast === undefined) this.#lruFirst = seat;
    else this.#lruLast.lruNext = seat;
    this.#lruLast = seat;
    this.#queue.notify();
  }

  /** Closes the resource in a seat, in use or idle; the slot frees once it is closed. @internal */
  dispose(seat: Seat, isIdle: boolean): Promise<void> {
    if (isIdle) this.#unlinkIdle(seat);
    else this.#inUse--;
    this.#releasing++;
    return seat.shut().then(this.#released);
  }

  /** Gives back a fresh seat that was never filled (a failed dial). @internal */
  vacate(): void {
    this.#inUse--;
    this.#queue.notify();
  }

  readonly #released = (): void => {
    this.#releasing--;
    this.#queue.notify();
  };

  #claim(claimant: Claimant): Claim | Promise<Claim> {
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
  readonly #claimant: Claimant;
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
    if (this.#isReleaseScheduled) {
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
