import { checkSignal } from './abort.js';
import { ConnInUseError, ConnReleasedError } from './errors.js';
import type { ResourcePool } from './pool.js';
import { Seat, type Claim, type Claimant } from './seat.js';

/**
 * What a {@link Resource} does to open and close the thing it manages.
 * `allocate()` may reject to fail the `get()`; `release()` may reject to fail
 * the `release()` that called it. The slot is freed either way. The pool
 * never runs a resource's `allocate()` while its `release()` is running.
 */
export interface AllocateReleaser {
  allocate(signal: AbortSignal | undefined): void | Promise<void>;
  release(): void | Promise<void>;
}

/**
 * Where a resource is in its life (E13):
 * - `free`: nothing allocated, nobody holds it;
 * - `getting`: a get() is pending (an idle allocation it came from may
 *   still be reused, or evicted while it waits);
 * - `held`: allocated, in use by its caller;
 * - `idle`: allocated, kept on the pool's idle list;
 * - `releasing`: its release() is running, nobody holds it.
 */
type ResourceState = 'free' | 'getting' | 'held' | 'idle' | 'releasing';

let makeResource: (pool: ResourcePool, allocateReleaser: AllocateReleaser) => Resource;

/** Makes a {@link Resource} for {@link ResourcePool.create}, whose constructor is private. @internal */
export function newResource(pool: ResourcePool, allocateReleaser: AllocateReleaser): Resource {
  return makeResource(pool, allocateReleaser);
}

/**
 * One resource of a shared budget, made by {@link ResourcePool.create}: the
 * Go package's `resourcepool.Resource`. `get()` takes a slot and allocates
 * (or reuses the allocation kept by the last `put()`); `put()` keeps it
 * allocated for re-use; `release()` frees it now.
 */
export class Resource {
  readonly #pool: ResourcePool;
  readonly #allocateReleaser: AllocateReleaser;
  readonly #seat: ResourceSeat;
  readonly #claimant: Claimant<void>;
  #state: ResourceState = 'free';
  /**
   * The release in progress, resolving to its failure if it threw. A get()
   * that must allocate waits for it first: the allocation never overlaps its
   * own release (E13; an eviction may release it while its get() waits).
   */
  #releasing: Promise<{ error: unknown } | undefined> | undefined = undefined;
  #isReleaseScheduled = false;
  /** How the last holder let go, so that put() after release() is harmless and a second put() is not. */
  #lastEnd: 'put' | 'release' | undefined = undefined;

  /** Resources come from {@link ResourcePool.create}: the constructor is private, in the published types too. */
  private constructor(pool: ResourcePool, allocateReleaser: AllocateReleaser) {
    this.#pool = pool;
    this.#allocateReleaser = allocateReleaser;
    this.#seat = new ResourceSeat(() => this.#shut());
    this.#claimant = {
      signal: undefined,
      reuse: () => (this.#seat.isIdle ? this.#seat : undefined),
      seated: (claim) => this.#seated(claim),
      abandoned: () => this.#abandoned(),
    };
  }

  static {
    makeResource = (pool, allocateReleaser) => new Resource(pool, allocateReleaser);
  }

  /**
   * Takes a slot, waiting in turn while all are in use, then allocates unless
   * the allocation kept by the last `put()` is still there.
   * @throws {ResourceLimitExceededError} `ERR_RESOURCE_LIMIT_EXCEEDED` if `signal` aborts while waiting.
   * @throws {ConnInUseError} `ERR_CONN_IN_USE` if the resource is held, or its get() is pending.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` if `signal` is not an `AbortSignal`.
   * Errors of `allocate()` are passed through; the slot is freed.
   */
  async get(signal?: AbortSignal): Promise<void> {
    const checked = checkSignal(signal);
    if (this.#state === 'getting' || this.#state === 'held') {
      throw new ConnInUseError('resource is already in use: put() or release() it first');
    }
    this.#state = 'getting';
    this.#claimant.signal = checked?.aborted ? undefined : checked;
    await this.#pool.acquire(checked, this.#claimant);
  }

  /**
   * Lets go of the resource, keeping it allocated for the next `get()` (or
   * releasing it, if {@link scheduleRelease} asked). Does nothing after
   * `release()`.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` if it was already put,
   *   never got, or its get() is still pending.
   */
  put(): void {
    if (this.#state !== 'held') {
      if (this.#state === 'getting') throw new ConnReleasedError('put() while its own get() is still pending: await the get() first');
      if (this.#state === 'idle' || this.#lastEnd !== 'release') {
        throw new ConnReleasedError('resource is not in use: put() without a matching get()');
      }
      return;
    }
    this.#lastEnd = 'put';
    if (this.#isReleaseScheduled || !this.#pool.keeps(this.#seat)) {
      this.#isReleaseScheduled = false;
      this.#state = 'releasing';
      void this.#pool.dispose(this.#seat);
      return;
    }
    this.#state = 'idle';
    this.#pool.checkIn(this.#seat);
  }

  /**
   * Releases the resource now, in use or idle, and frees its slot. Rejects
   * with the error of `release()` if it threw; the slot is freed anyway.
   * Does nothing if nothing is allocated.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` if its get() is still pending.
   */
  async release(): Promise<void> {
    if (this.#state === 'getting') throw new ConnReleasedError('release() while its own get() is still pending: await the get() first');
    if (this.#state !== 'held' && this.#state !== 'idle') return;
    if (this.#state === 'held') this.#lastEnd = 'release';
    this.#state = 'releasing';
    const disposed = this.#pool.dispose(this.#seat);
    const failure = await this.#releasing;
    await disposed;
    if (failure !== undefined) throw failure.error;
  }

  /**
   * Releases the resource now if it is idle, or at its next `put()` if it is
   * in use or being got. Rejects like {@link release} when it releases at once.
   */
  async scheduleRelease(): Promise<void> {
    if (this.#state === 'idle') return this.release();
    if (this.#state === 'held' || this.#state === 'getting') this.#isReleaseScheduled = true;
  }

  async #seated(claim: Claim): Promise<void> {
    if (claim === null) {
      try {
        // Its own release first (E13); a wait for a slot like any other (E11).
        if (this.#releasing !== undefined) await this.#pool.waitFor(this.#releasing, this.#claimant.signal);
        await this.#allocateReleaser.allocate(this.#claimant.signal);
      } catch (error) {
        this.#pool.vacate();
        this.#abandoned();
        throw error;
      }
      this.#seat.bornAt = performance.now();
    }
    this.#state = 'held';
    this.#claimant.signal = undefined;
  }

  /** The pending get() failed or was turned away: back to what the allocation is now. */
  #abandoned(): void {
    this.#state = this.#seat.isIdle ? 'idle' : this.#releasing !== undefined ? 'releasing' : 'free';
    this.#claimant.signal = undefined;
    this.#isReleaseScheduled = false;
  }

  /** The pool closes the allocation: a release(), a put() that must not keep it, or an eviction. */
  #shut(): Promise<void> {
    const releasing = this.#runRelease();
    this.#releasing = releasing;
    return releasing.then(() => {
      if (this.#releasing !== releasing) return;
      this.#releasing = undefined;
      if (this.#state === 'releasing' || this.#state === 'idle') this.#state = 'free';
    });
  }

  async #runRelease(): Promise<{ error: unknown } | undefined> {
    if (this.#state === 'idle') this.#state = 'releasing';
    try {
      await this.#allocateReleaser.release();
      return undefined;
    } catch (error) {
      return { error };
    }
  }
}

/** A resource's place in the pool; closing it runs the resource's release(). */
class ResourceSeat extends Seat {
  constructor(readonly shut: () => Promise<void>) {
    super();
  }
}
