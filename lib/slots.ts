import pLimit from 'p-limit';
import { onAbort } from './abort.js';
import { ResourceLimitExceededError } from './errors.js';

/** A caller waiting for a slot, linked in arrival order. */
class Waiter<C, T> {
  prev: Waiter<C, T> | undefined = undefined;
  next: Waiter<C, T> | undefined = undefined;
  isLive = true;
  stopListening: Disposable | undefined = undefined;

  constructor(
    readonly claimant: C,
    readonly resolve: (claim: T | PromiseLike<T>) => void,
    readonly reject: (reason: unknown) => void,
  ) {}
}

/**
 * The FIFO queue of callers waiting for a slot.
 *
 * p-limit with a concurrency of 1 is the turnstile: only the waiter at the
 * front is served, and it is admitted as soon as the pool has room, so a
 * freed slot always goes to the oldest live waiter. Callers only enter the
 * queue when it is not empty or the pool is full (the pool checks before
 * calling {@link SlotQueue.wait}), so the uncontended path never pays for it.
 *
 * p-limit cannot remove a queued task: an aborted waiter is flagged and
 * skipped when its turn comes. The dead entries are dropped (the queue is
 * cleared and the live waiters queued again, in order) as soon as they
 * outnumber the live ones, so their memory stays bounded by the live waiters
 * even while no slot frees.
 */
export class SlotQueue<C, T> {
  readonly #gate = pLimit(1);
  readonly #hasRoom: () => boolean;
  readonly #admit: (claimant: C) => T | PromiseLike<T>;
  #first: Waiter<C, T> | undefined = undefined;
  #last: Waiter<C, T> | undefined = undefined;
  #live = 0;
  /** Aborted waiters whose tasks are still queued in the gate. */
  #dead = 0;
  /** The waiter the gate is serving, parked until the pool has room. */
  #front: Waiter<C, T> | undefined = undefined;
  #wakeFront: (() => void) | undefined = undefined;

  /**
   * @param hasRoom whether the pool can take one more caller now.
   * @param admit takes the room for a claimant, synchronously; its result settles the wait.
   */
  constructor(hasRoom: () => boolean, admit: (claimant: C) => T | PromiseLike<T>) {
    this.#hasRoom = hasRoom;
    this.#admit = admit;
  }

  /** Live waiters. */
  get size(): number {
    return this.#live;
  }

  /**
   * Waits for room, in turn. Rejects with `ResourceLimitExceededError` if
   * `signal` aborts first (at once if it already has).
   */
  wait(signal: AbortSignal | undefined, claimant: C): Promise<T> {
    if (signal?.aborted) return Promise.reject(new ResourceLimitExceededError({ cause: signal.reason }));
    return new Promise<T>((resolve, reject) => {
      const waiter = new Waiter(claimant, resolve, reject);
      this.#append(waiter);
      if (signal !== undefined) waiter.stopListening = onAbort(signal, () => this.#abandon(waiter, signal.reason));
      this.#enqueue(waiter);
    });
  }

  /** The pool may have room: admit the waiter at the front if so. */
  notify(): void {
    const front = this.#front;
    if (front === undefined || !this.#hasRoom()) return;
    const wake = this.#wakeFront!;
    this.#front = this.#wakeFront = undefined;
    this.#settle(front);
    front.resolve(this.#admit(front.claimant));
    wake();
  }

  /** Rejects every live waiter with `error`. */
  rejectAll(error: Error): void {
    this.#gate.clearQueue();
    this.#dead = 0;
    const wake = this.#wakeFront;
    this.#front = this.#wakeFront = undefined;
    wake?.();
    while (this.#first !== undefined) {
      const waiter = this.#first;
      this.#settle(waiter);
      waiter.reject(error);
    }
  }

  #enqueue(waiter: Waiter<C, T>): void {
    void this.#gate(() => this.#serve(waiter));
  }

  /** The gate's task for one waiter: done once it is admitted or abandoned. */
  #serve(waiter: Waiter<C, T>): Promise<void> | undefined {
    if (!waiter.isLive) {
      this.#dead--;
      return undefined;
    }
    if (this.#hasRoom()) {
      this.#settle(waiter);
      waiter.resolve(this.#admit(waiter.claimant));
      return undefined;
    }
    this.#front = waiter;
    return new Promise<void>((wake) => {
      this.#wakeFront = wake;
    });
  }

  #abandon(waiter: Waiter<C, T>, reason: unknown): void {
    if (!waiter.isLive) return;
    this.#settle(waiter);
    if (waiter === this.#front) {
      const wake = this.#wakeFront!;
      this.#front = this.#wakeFront = undefined;
      wake();
    } else {
      this.#dead++;
      if (this.#dead > this.#live) this.#compact();
    }
    waiter.reject(new ResourceLimitExceededError({ cause: reason }));
  }

  /** Drops the dead entries from the gate: clear it, queue the live again in order. */
  #compact(): void {
    this.#gate.clearQueue();
    this.#dead = 0;
    for (let waiter = this.#first; waiter !== undefined; waiter = waiter.next) {
      if (waiter !== this.#front) this.#enqueue(waiter);
    }
  }

  #append(waiter: Waiter<C, T>): void {
    waiter.prev = this.#last;
    if (this.#last === undefined) this.#first = waiter;
    else this.#last.next = waiter;
    this.#last = waiter;
    this.#live++;
  }

  /** Unlinks a waiter that is admitted or abandoned, and stops its abort listener. */
  #settle(waiter: Waiter<C, T>): void {
    waiter.isLive = false;
    waiter.stopListening?.[Symbol.dispose]();
    waiter.stopListening = undefined;
    if (waiter.prev === undefined) this.#first = waiter.next;
    else waiter.prev.next = waiter.next;
    if (waiter.next === undefined) this.#last = waiter.prev;
    else waiter.next.prev = waiter.prev;
    waiter.prev = waiter.next = undefined;
    this.#live--;
  }
}
