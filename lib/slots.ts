import pLimit from 'p-limit';
import { onAbort } from './abort.js';
import { ResourceLimitExceededError } from './errors.js';

/** A caller waiting for a slot, linked in arrival order. */
class Waiter<C, T> {
  prev: Waiter<C, T> | undefined = undefined;
  next: Waiter<C, T> | undefined = undefined;
  stopListening: Disposable | undefined = undefined;
  /** Its place in the process-wide order of waiters (0 when the pool is private). */
  ticket = 0;
  /** Settle the caller's promise; set by {@link capture} as the promise is made. */
  resolve: (claim: T | PromiseLike<T>) => void = unset;
  reject: (reason: unknown) => void = unset;

  constructor(readonly claimant: C) {}
}

const unset = (): void => {};

/** What {@link SlotQueue}'s `take` returns when the room it was told of is gone (taken by another thread). */
export const NO_ROOM: unique symbol = Symbol('no room');

/** Orders waiters across queues (threads): the budget a queue's pool draws on. */
export interface Turns {
  /** A ticket for a new waiter: the order in which waiters of every queue are served. */
  ticket(): number;
  /** The queue changed: `size` waiters, the oldest holding ticket `head`. */
  queued(head: number, size: number): void;
  /** The oldest waiter is parked with no room: ask for some. */
  askForRoom(): void;
}

/** The waiter whose promise is being made, for {@link capture}. */
let capturing: Waiter<unknown, unknown> | undefined;

/**
 * The executor of every waiter's promise: one function for all, so that a
 * wait allocates no closure (nor the context it would capture), only the
 * promise and its waiter.
 */
function capture(resolve: (claim: never) => void, reject: (reason: unknown) => void): void {
  const waiter = capturing!;
  waiter.resolve = resolve as (claim: unknown) => void;
  waiter.reject = reject;
}

/**
 * The FIFO queue of callers waiting for a slot.
 *
 * Waiters are linked in arrival order; an aborted one is unlinked at once, so
 * the queue never holds a dead entry, however long no slot frees. A single
 * admission loop, run through a p-limit gate of concurrency 1 whenever anyone
 * waits, hands each freed slot to the oldest waiter. Callers only enter the
 * queue when it is not empty or the pool is full (the pool checks before
 * calling {@link SlotQueue.wait}), so the uncontended path never pays for it
 * and a newcomer never jumps ahead of a waiter.
 *
 * One p-limit task per burst of waiting rather than one per waiter: a
 * p-limit task costs about as much as a whole contended get() should.
 */
export class SlotQueue<C extends { abandoned(): void }, R, T> {
  readonly #gate = pLimit(1);
  readonly #hasRoom: () => boolean;
  readonly #take: (claimant: C) => R | typeof NO_ROOM;
  readonly #seat: (claimant: C, room: R) => T | PromiseLike<T>;
  readonly #onGiveUp: () => void;
  readonly #turns: Turns;
  #first: Waiter<C, T> | undefined = undefined;
  #last: Waiter<C, T> | undefined = undefined;
  #size = 0;
  #isServing = false;
  /** Resumes the admission loop, parked until the pool has room or the queue empties. */
  #wake: (() => void) | undefined = undefined;

  /**
   * @param hasRoom whether the pool can take one more caller now.
   * @param take takes the room for a claimant, synchronously, running none of the caller's
   *   code; `NO_ROOM` if it is gone (taken by another thread first): the claimant then waits on.
   * @param seat gives the claimant the room taken, once it has left the queue; its result
   *   settles the wait. A claimant turned away (aborted, or all rejected) is told with `abandoned()`.
   * @param onGiveUp hears of each waiter whose signal aborted while it waited.
   * @param turns orders waiters with those of other queues drawing on the same budget.
   */
  constructor(
    hasRoom: () => boolean,
    take: (claimant: C) => R | typeof NO_ROOM,
    seat: (claimant: C, room: R) => T | PromiseLike<T>,
    onGiveUp: () => void,
    turns: Turns,
  ) {
    this.#hasRoom = hasRoom;
    this.#take = take;
    this.#seat = seat;
    this.#onGiveUp = onGiveUp;
    this.#turns = turns;
  }

  /** Callers waiting. */
  get size(): number {
    return this.#size;
  }

  /**
   * Waits for room, in turn. Rejects with `ResourceLimitExceededError` if
   * `signal` aborts first (at once if it already has).
   */
  wait(signal: AbortSignal | undefined, claimant: C): Promise<T> {
    if (signal?.aborted) {
      claimant.abandoned();
      return Promise.reject(new ResourceLimitExceededError({ cause: signal.reason }));
    }
    const waiter = new Waiter<C, T>(claimant);
    waiter.ticket = this.#turns.ticket();
    capturing = waiter as Waiter<unknown, unknown>;
    const promise = new Promise<T>(capture);
    capturing = undefined;
    this.#append(waiter);
    if (signal !== undefined) waiter.stopListening = onAbort(signal, () => this.#abandon(waiter, signal.reason));
    if (!this.#isServing) {
      this.#isServing = true;
      void this.#gate(this.#serve);
    }
    return promise;
  }

  /** The pool may have room: resumes the admission loop if it is parked (or asks for room, if there is none). */
  notify(): void {
    const wake = this.#wake;
    if (wake === undefined) return;
    if (this.#hasRoom()) {
      this.#wake = undefined;
      wake();
    } else this.#turns.askForRoom();
  }

  /** Rejects every waiter with `error`. */
  rejectAll(error: Error): void {
    while (this.#first !== undefined) {
      const waiter = this.#first;
      this.#unlink(waiter);
      waiter.claimant.abandoned();
      waiter.reject(error);
    }
    this.#resume();
  }

  /** The admission loop: the oldest waiter gets each slot as it frees, until none waits. */
  readonly #serve = async (): Promise<void> => {
    while (this.#first !== undefined) {
      if (!this.#hasRoom()) {
        this.#turns.askForRoom();
        await new Promise<void>((wake) => {
          this.#wake = wake;
        });
        continue;
      }
      const waiter = this.#first;
      const room = this.#take(waiter.claimant);
      if (room === NO_ROOM) continue;
      this.#admit(waiter, room);
    }
    this.#isServing = false;
  };

  /**
   * Seats an admitted waiter. It leaves the queue before the caller's code
   * runs (allocate(), an abort of its own signal, close()). The loop may park
   * next with this waiter still in its frame, so the waiter lets go of its
   * promise, which holds what the caller was given: a connection its caller
   * drops is then collected and reclaimed like any other (E15).
   */
  #admit(waiter: Waiter<C, T>, room: R): void {
    this.#unlink(waiter);
    const resolve = waiter.resolve;
    waiter.resolve = waiter.reject = unset;
    resolve(this.#seat(waiter.claimant, room));
  }

  #abandon(waiter: Waiter<C, T>, reason: unknown): void {
    this.#unlink(waiter);
    if (this.#first === undefined) this.#resume();
    this.#onGiveUp();
    waiter.claimant.abandoned();
    waiter.reject(new ResourceLimitExceededError({ cause: reason }));
  }

  /** Lets a parked loop run on (and end, once nobody waits). */
  #resume(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #append(waiter: Waiter<C, T>): void {
    waiter.prev = this.#last;
    if (this.#last === undefined) this.#first = waiter;
    else this.#last.next = waiter;
    this.#last = waiter;
    this.#size++;
    this.#turns.queued(this.#first!.ticket, this.#size);
  }

  /** Unlinks a waiter that is admitted or abandoned, and stops its abort listener. */
  #unlink(waiter: Waiter<C, T>): void {
    waiter.stopListening?.[Symbol.dispose]();
    waiter.stopListening = undefined;
    if (waiter.prev === undefined) this.#first = waiter.next;
    else waiter.prev.next = waiter.next;
    if (waiter.next === undefined) this.#last = waiter.prev;
    else waiter.next.prev = waiter.prev;
    waiter.prev = waiter.next = undefined;
    this.#size--;
    this.#turns.queued(this.#first?.ticket ?? 0, this.#size);
  }
}
