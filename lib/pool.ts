import { onAbort } from './abort.js';
import { describe } from './address.js';
import { Budget, IDLE, IN_USE, processBudget, RELEASING, type Counters, type PoolStats } from './budget.js';
import { channels } from './diagnostics.js';
import { invalidArgType, outOfRange, PoolClosedError, QueueFullError, ResourceLimitExceededError } from './errors.js';
import { newResource, type AllocateReleaser, type Resource } from './resource.js';
import type { Claimant, Seat } from './seat.js';
import { NO_ROOM, SlotQueue } from './slots.js';

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
  /**
   * How long a dial whose caller gave up may go on to join the idle list
   * (E3) before it is aborted, in ms, so that a peer that accepts TCP and
   * never answers cannot hold a slot for ever. 0: never keep such a dial;
   * `Infinity`: no bound. @default 10000
   */
  orphanTimeout?: number;
}

export type { PoolStats } from './budget.js';

/**
 * A set of slots shared by everything that opens file descriptors (or any
 * scarce resource) through it: the Go package's `resourcepool.Pool`.
 *
 * At every instant `inUse + idle + releasing <= max`. A caller waits (first
 * come, first served) only while every slot is in use or closing; idle
 * resources hold no slot, and the least recently used one is closed to make
 * room when a new one must be opened. Most programs use the one process-wide
 * pool from {@link getResourcePool}, whose budget every worker thread shares:
 * there a caller also queues behind other threads' waiters, and an idle
 * resource of another thread is closed by that thread.
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
  /** How long an orphaned dial may go on, in ms (E11). @internal */
  readonly orphanTimeout: number;
  /** @internal */
  readonly counters: Counters;
  /** The slots this pool draws on: its own, or (the global pool's) every thread's. */
  readonly #budget: Budget;
  // This pool's seats in use, idle and releasing (indexed by IN_USE, IDLE,
  // RELEASING), kept where its budget can read them. inUse + idle + releasing
  // <= max at every instant, every thread's together (S1): a seat moves
  // between the three counts synchronously, never through a gap or an overlap.
  readonly #count: Int32Array<ArrayBufferLike>;
  /** Idle seats, least recently used first. */
  #lruFirst: Seat | undefined = undefined;
  #lruLast: Seat | undefined = undefined;
  readonly #queue: SlotQueue<Claimant<unknown>, Room, unknown>;
  readonly #idleTimeout: number;
  readonly #maxLifetime: number;
  readonly #maxWaiting: number;
  /** Opens in flight (dials), aborted by close() so that it never waits on a peer (E11). */
  readonly #openings = new Set<AbortController>();
  /** One unref'd timer sweeps expired idle seats, only while lifetimes are on and some seat is idle. */
  #sweeper: NodeJS.Timeout | undefined = undefined;
  #closing: Promise<void> | undefined = undefined;
  #resolveClosed: (() => void) | undefined = undefined;

  /**
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` if an option is not a number.
   * @throws {RangeError} `ERR_OUT_OF_RANGE` if `max` is not an integer >= 1, or another option is out of range.
   */
  constructor(options: ResourcePoolOptions);
  // The global pool draws on the process budget. This overload is stripped
  // from the published types, so a user's extra argument is a type error.
  /** @internal */
  constructor(options: ResourcePoolOptions, budget: Budget);
  constructor(options: ResourcePoolOptions, budget?: Budget) {
    const max: unknown = options?.max;
    if (typeof max !== 'number') throw invalidArgType(`max must be an integer >= 1, received ${describe(max)}`);
    if (!Number.isInteger(max) || max < 1) throw outOfRange(`max must be an integer >= 1, received ${describe(max)}`);
    this.max = max;
    this.name = options.name ?? 'connpool';
    this.traceLeaks = options.traceLeaks === true;
    this.#idleTimeout = duration('idleTimeout', options.idleTimeout, 0);
    this.#maxLifetime = duration('maxLifetime', options.maxLifetime, 0);
    this.orphanTimeout = bound('orphanTimeout', options.orphanTimeout ?? 10_000);
    const maxWaiting: unknown = options.maxWaiting ?? Number.POSITIVE_INFINITY;
    if (typeof maxWaiting !== 'number') throw invalidArgType(`maxWaiting must be a number, received ${describe(maxWaiting)}`);
    if (!(Number.isInteger(maxWaiting) || maxWaiting === Number.POSITIVE_INFINITY) || maxWaiting < 0) {
      throw outOfRange(`maxWaiting must be an integer >= 0, received ${describe(maxWaiting)}`);
    }
    this.#maxWaiting = maxWaiting;
    this.#budget = budget ?? new Budget(max);
    this.#count = this.#budget.count;
    this.counters = this.#budget.counters;
    this.#queue = new SlotQueue<Claimant<unknown>, Room, unknown>(
      () => this.#budget.hasRoom(),
      (claimant) => this.#takeRoom(claimant),
      (claimant, room) => this.#fill(claimant, room),
      () => void this.counters.waitsGivenUp++,
      this.#budget,
    );
    this.#budget.attach({ evictForOther: () => this.#evictForOther(), roomElsewhere: () => this.#queue.notify() });
  }

  /** True once {@link close} has been called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * The pool's counters now: the Go package's metrics, the waiters, and
   * cumulative counts. For the global pool, those of every thread.
   */
  stats(): PoolStats {
    return this.#budget.stats(this.#queue.size);
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
      throw invalidArgType(`create() needs an object with allocate() and release() methods, received ${describe(allocateReleaser)}`);
    }
    return newResource(this, allocateReleaser);
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
    if (this.#queue.size === 0) {
      const room = this.#takeRoom(claimant);
      if (room !== NO_ROOM) return this.#fill(claimant, room);
    }
    if (this.#queue.size >= this.#maxWaiting) return turnAway(claimant, new QueueFullError());
    if (channels.wait.hasSubscribers) channels.wait.publish({ pool: this });
    return this.#queue.wait(signal, claimant) as Promise<T>;
  }

  /**
   * Whether an in-use seat may go back to the idle list: not once the pool is
   * closed, nor past `maxLifetime`, nor while another thread is owed room.
   * @internal
   */
  keeps(seat: Seat): boolean {
    return (
      this.#closing === undefined && (this.#maxLifetime === 0 || performance.now() - seat.bornAt < this.#maxLifetime) && !this.#budget.owes()
    );
  }

  /** An in-use seat becomes idle: it keeps its resource open for re-use. Check {@link keeps} first. @internal */
  checkIn(seat: Seat): void {
    this.#count[IN_USE]!--;
    this.#count[IDLE]!++;
    seat.isIdle = true;
    seat.lruPrev = this.#lruLast;
    if (this.#lruLast === undefined) this.#lruFirst = seat;
    else this.#lruLast.lruNext = seat;
    this.#lruLast = seat;
    if (this.#idleTimeout !== 0 || this.#maxLifetime !== 0) {
      seat.idleSince = performance.now();
      this.#sweeper ??= setTimeout(this.#sweep, this.#sweepInterval()).unref();
    }
    this.#budget.madeIdle();
    this.#queue.notify();
  }

  /**
   * An idle seat goes back in use, taken by the owner that parked it (a
   * reuse): the opposite of {@link checkIn}. The seat must be idle.
   * @internal
   */
  checkOut(seat: Seat): void {
    this.#unlinkIdle(seat);
    this.#count[IN_USE]!++;
    this.counters.reuses++;
  }

  /** Closes the resource in a seat, in use or idle; the slot frees once it is closed. @internal */
  dispose(seat: Seat): Promise<void> {
    if (seat.isIdle) this.#unlinkIdle(seat);
    else {
      this.#count[IN_USE]!--;
      this.#budget.closingInUse();
    }
    this.#count[RELEASING]!++;
    return seat.shut().then(this.#released);
  }

  /** Gives back a fresh seat that was never filled (a failed dial). @internal */
  vacate(): void {
    this.#budget.freed(IN_USE);
    this.#queue.notify();
    this.#settleClose();
  }

  /** Tracks an open in flight, so that {@link close} can abort it (at once if closed already). @internal */
  opening(controller: AbortController): void {
    if (this.#closing !== undefined) controller.abort(new PoolClosedError());
    else this.#openings.add(controller);
  }

  /** The open tracked by {@link opening} settled. @internal */
  opened(controller: AbortController): void {
    this.#openings.delete(controller);
  }

  /**
   * Closes the pool: rejects waiters with `PoolClosedError`, aborts dials in
   * flight, closes idle resources now and those in use at their `put()`.
   * Resolves once every resource it counted is closed. Calling it again
   * returns the same promise.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
    clearTimeout(this.#sweeper);
    this.#sweeper = undefined;
    this.#queue.rejectAll(new PoolClosedError());
    for (const controller of this.#openings) controller.abort(new PoolClosedError());
    this.#openings.clear();
    while (this.#lruFirst !== undefined) void this.dispose(this.#lruFirst);
    this.#settleClose();
    return this.#closing;
  }

  /** Closes the pool, for `await using pool = new ResourcePool(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  readonly #released = (): void => {
    this.#budget.freed(RELEASING);
    this.#queue.notify();
    this.#settleClose();
  };

  #settleClose(): void {
    const count = this.#count;
    if (this.#resolveClosed !== undefined && count[IN_USE]! + count[IDLE]! + count[RELEASING]! === 0) {
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
      if (seat.idleSince <= idleDeadline || seat.bornAt <= birthDeadline) void this.dispose(seat);
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

  /**
   * Takes the room the pool has now for `claimant`: its own idle seat, a
   * fresh slot (`null`), or the slot of an idle seat of this pool to evict
   * (`EVICT`); `NO_ROOM` if none. Runs none of the caller's code:
   * {@link #fill} does, once the claimant has left the queue.
   */
  #takeRoom(claimant: Claimant<unknown>): Room | typeof NO_ROOM {
    const reused = claimant.reuse();
    if (reused !== undefined) {
      this.#unlinkIdle(reused);
      this.#count[IN_USE]!++;
      this.counters.reuses++;
      return reused;
    }
    if (this.#budget.takeFresh()) return null;
    if (this.#lruFirst !== undefined) return EVICT;
    return NO_ROOM;
  }

  /** Gives `claimant` the room taken for it. */
  #fill<T>(claimant: Claimant<T>, room: Room): T | Promise<T> {
    return room === EVICT ? this.#evictFor(claimant) : claimant.seated(room);
  }

  /**
   * Closes the least recently used idle resource to make room, and hands its
   * slot to `claimant` once the close completes (S4). Only called when the
   * pool is full and has room for a caller, so some seat is idle. The wait is
   * part of the wait for a slot: if the claimant's signal aborts first, its
   * get() rejects at once and the slot goes to the next in line (E11).
   */
  #evictFor<T>(claimant: Claimant<T>): Promise<T> {
    const evicted = this.#evictLeastRecentlyUsed().then(this.#evicted);
    const signal = claimant.signal;
    if (signal === undefined || signal.aborted) return evicted.then(() => claimant.seated(null));
    return this.waitFor(evicted, signal).then(
      () => claimant.seated(null),
      (error: unknown) => {
        claimant.abandoned();
        void evicted.then(() => this.vacate());
        throw error;
      },
    );
  }

  /**
   * Waits for `done` as part of a wait for a slot (an eviction, a resource's
   * own release): if `signal` aborts first, rejects at once with
   * `ResourceLimitExceededError` (E11), and at once if it already has.
   * @internal
   */
  waitFor(done: Promise<unknown>, signal: AbortSignal | undefined): Promise<void> {
    if (signal === undefined) return done.then(noop);
    if (signal.aborted) return Promise.reject(new ResourceLimitExceededError({ cause: signal.reason }));
    return new Promise<void>((resolve, reject) => {
      const listening = onAbort(signal, () => {
        this.counters.waitsGivenUp++;
        reject(new ResourceLimitExceededError({ cause: signal.reason }));
      });
      void done.then(() => {
        listening[Symbol.dispose]();
        resolve();
      });
    });
  }

  /** The evicted seat's slot becomes the claimant's. */
  readonly #evicted = (): void => {
    this.#count[RELEASING]!--;
    this.#count[IN_USE]!++;
  };

  /** Another thread's oldest waiter needs room: the slot goes to it once the close completes. */
  #evictForOther(): boolean {
    if (this.#lruFirst === undefined) return false;
    void this.#evictLeastRecentlyUsed().then(this.#evictedForOther);
    return true;
  }

  readonly #evictedForOther = (): void => {
    this.#budget.answered();
    this.#settleClose();
  };

  /** Closes the least recently used idle seat, counted as releasing until its close completes. */
  #evictLeastRecentlyUsed(): Promise<void> {
    const victim = this.#lruFirst!;
    this.#unlinkIdle(victim);
    this.#count[RELEASING]!++;
    this.counters.evictions++;
    if (channels.eviction.hasSubscribers) channels.eviction.publish({ pool: this });
    return victim.shut();
  }

  #unlinkIdle(seat: Seat): void {
    if (seat.lruPrev === undefined) this.#lruFirst = seat.lruNext;
    else seat.lruPrev.lruNext = seat.lruNext;
    if (seat.lruNext === undefined) this.#lruLast = seat.lruPrev;
    else seat.lruNext.lruPrev = seat.lruPrev;
    seat.lruPrev = seat.lruNext = undefined;
    seat.isIdle = false;
    this.#count[IDLE]!--;
    seat.unindex();
  }
}

const noop = (): void => {};

/** The room {@link ResourcePool} takes for a claimant: its own idle seat, a fresh slot (`null`), or an idle seat to evict. */
type Room = Seat | null | typeof EVICT;
const EVICT: unique symbol = Symbol('evict');

function turnAway(claimant: Claimant<unknown>, error: Error): Promise<never> {
  claimant.abandoned();
  return Promise.reject(error);
}

/** An optional duration option in ms: `fallback` when not given, 0 when off. */
function duration(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (value === 0 || value === Number.POSITIVE_INFINITY) return 0;
  if (typeof value !== 'number') throw invalidArgType(`${name} must be a number of milliseconds, received ${describe(value)}`);
  if (!(value > 0)) throw outOfRange(`${name} must be a number of milliseconds > 0, received ${describe(value)}`);
  return value;
}

/** A bound in ms: a number >= 0, `Infinity` for none. */
function bound(name: string, value: unknown): number {
  if (typeof value !== 'number') throw invalidArgType(`${name} must be a number of milliseconds, received ${describe(value)}`);
  if (!(value >= 0)) throw outOfRange(`${name} must be a number of milliseconds >= 0, received ${describe(value)}`);
  return value;
}

let globalPool: ResourcePool | undefined;

/**
 * The process-wide pool that connections use unless told otherwise, created
 * on first use with `max` = {@link connectionLimit}(). Other packages that
 * open file descriptors can share its budget through
 * {@link ResourcePool.create}.
 *
 * Every thread of the process draws on one budget: the global pool of a
 * worker started after connpool was loaded in its parent shares `max` with
 * its parent's, and `stats()` counts every thread's (see README, "Worker
 * threads").
 */
export function getResourcePool(): ResourcePool {
  if (globalPool === undefined) {
    const budget = processBudget();
    globalPool = new ResourcePool({ max: budget.max, name: 'global' }, budget);
  }
  return globalPool;
}
