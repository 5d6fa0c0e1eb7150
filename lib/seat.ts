/**
 * One of a pool's `max` places for an open resource, as the pool sees it:
 * in use, idle (on the pool's LRU list), or releasing. Subclasses close the
 * thing. `isIdle` and the LRU links belong to the pool, which alone moves a
 * seat in and out of the idle list.
 * @internal
 */
export abstract class Seat {
  lruPrev: Seat | undefined = undefined;
  lruNext: Seat | undefined = undefined;
  /** On the pool's idle list. Set by the pool only. */
  isIdle = false;
  /** When the resource was opened (performance.now()), for `maxLifetime`. */
  bornAt = performance.now();
  /** When the seat last became idle, for `idleTimeout`; set only when that is on. */
  idleSince = 0;

  /** The pool took the seat off its idle list: leave any index of the owner's too. */
  unindex(): void {}

  /**
   * Closes the resource. Resolves once it is closed (for a socket: its file
   * descriptor); never rejects.
   */
  abstract shut(): Promise<void>;
}

/**
 * A party asking for a seat. Once one is free, `reuse()` is called
 * synchronously: it returns one of its own idle seats, or `undefined` to be
 * given a fresh seat to open something in. `seated()` then turns the claim
 * into what the caller gets; `abandoned()` is called instead if the caller is
 * turned away (aborted, pool closed, queue full). `signal` bounds the wait,
 * evictions included (E11).
 * @internal
 */
export interface Claimant<T> {
  /** Set by the claimant for each request (a data property: claimants stay fast objects). */
  signal: AbortSignal | undefined;
  reuse(): Seat | undefined;
  seated(claim: Claim): T | Promise<T>;
  abandoned(): void;
}

/** What a claimant gets: an idle seat to reuse, or `null` for a fresh one. @internal */
export type Claim = Seat | null;
