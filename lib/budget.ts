import { getEnvironmentData, isMainThread, setEnvironmentData, threadId } from 'node:worker_threads';
import { connectionLimit } from './limits.js';

/** Indexes into {@link Budget.count}: one pool's own resources, in each state. @internal */
export const IN_USE = 0;
/** @internal */
export const IDLE = 1;
/** @internal */
export const RELEASING = 2;

/** The cumulative counters of a pool, in the order {@link Counters} keeps them. */
const COUNTER_NAMES = ['dials', 'dialErrors', 'reuses', 'evictions', 'waitsGivenUp', 'leaks'] as const;
const COUNTERS = COUNTER_NAMES.length;

/**
 * A pool's cumulative counters, kept in a `Float64Array` so that the global
 * pool's live in shared memory, where another thread can add them up (and
 * keep those of a thread that ended). Doubles count exactly to 2^53.
 * @internal
 */
export class Counters {
  readonly #n: Float64Array;

  constructor(n: Float64Array = new Float64Array(COUNTERS)) {
    this.#n = n;
  }

  get dials(): number {
    return this.#n[0]!;
  }
  set dials(value: number) {
    this.#n[0] = value;
  }
  get dialErrors(): number {
    return this.#n[1]!;
  }
  set dialErrors(value: number) {
    this.#n[1] = value;
  }
  get reuses(): number {
    return this.#n[2]!;
  }
  set reuses(value: number) {
    this.#n[2] = value;
  }
  get evictions(): number {
    return this.#n[3]!;
  }
  set evictions(value: number) {
    this.#n[3] = value;
  }
  get waitsGivenUp(): number {
    return this.#n[4]!;
  }
  set waitsGivenUp(value: number) {
    this.#n[4] = value;
  }
  get leaks(): number {
    return this.#n[5]!;
  }
  set leaks(value: number) {
    this.#n[5] = value;
  }
}

/** A snapshot of a pool's counters: the Go package's metrics plus the waiters. */
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
  /** Connections opened, since the pool was made. */
  dials: number;
  /** Dials that failed (their caller got the error). */
  dialErrors: number;
  /** `get()` calls served an idle connection or resource. */
  reuses: number;
  /** Idle resources closed to make room for a new one. */
  evictions: number;
  /** `get()` calls whose signal aborted while they waited for a slot (`ResourceLimitExceededError`); not those whose signal had aborted before (they never waited). */
  waitsGivenUp: number;
  /** Connections garbage-collected while out (`CONNPOOL_LEAK`). */
  leaks: number;
}

/** What a shared budget asks of the pool that draws on it. @internal */
export interface BudgetOwner {
  /**
   * Another thread needs room: close the least recently used idle resource,
   * if any, and call {@link Budget.answered} once it is closed. Returns
   * whether one is closing.
   */
  evictForOther(): boolean;
  /** Room may have appeared in another thread (or a thread ended): let the oldest waiter try again. */
  roomElsewhere(): void;
}

/**
 * The slots of one pool: `max`, and the pool's own counts of resources in
 * use, idle and releasing (`count`, indexed by {@link IN_USE}, {@link IDLE},
 * {@link RELEASING}). The pool moves its resources between those counts; the
 * budget says whether a fresh slot may be taken and hears when one frees.
 *
 * This base class is a private pool's: the counts are the whole budget.
 * {@link SharedBudget} is the process-wide pool's, shared by every thread.
 * @internal
 */
export class Budget {
  constructor(
    readonly max: number,
    readonly count: Int32Array<ArrayBufferLike> = new Int32Array(3),
    readonly counters = new Counters(),
  ) {}

  /** Whether the pool should close a resource at its `put()` rather than keep it idle: another thread is owed room. */
  owes(): boolean {
    return false;
  }

  /** Takes a fresh slot (counted in use) if one is free and no older waiter wants it; idle resources are not free. */
  takeFresh(): boolean {
    const count = this.count;
    if (count[IN_USE]! + count[IDLE]! + count[RELEASING]! >= this.max) return false;
    count[IN_USE]!++;
    return true;
  }

  /** Whether the oldest waiter of this pool could be seated now: a slot is free, or idle, ready to evict. */
  hasRoom(): boolean {
    const count = this.count;
    return count[IN_USE]! + count[RELEASING]! < this.max;
  }

  /**
   * A resource counted in `state` is gone: closed ({@link RELEASING}), or a
   * fresh slot never filled ({@link IN_USE}). Uncounts it and frees its slot.
   */
  freed(state: number): void {
    this.count[state]!--;
  }

  /** An eviction another thread asked for completed: uncounts the resource and frees its slot for that thread. */
  answered(): void {
    this.count[RELEASING]!--;
  }

  /** The pool is closing a resource in use (its caller closed it, or {@link owes} said so). */
  closingInUse(): void {}

  /** The pool made a resource idle, which another thread's waiter could evict. */
  madeIdle(): void {}

  /** The pool's queue changed: `size` waiters, the oldest holding `head`. */
  queued(_head: number, _size: number): void {}

  /** A ticket for a waiter, ordering waiters process-wide; 0 for a private pool. */
  ticket(): number {
    return 0;
  }

  /** The pool has waiters and no room: ask another thread to make some. */
  askForRoom(): void {}

  /** Starts answering other threads; called once, by the pool that draws on this budget. */
  attach(_owner: BudgetOwner): void {}

  stats(waiting: number): PoolStats {
    const count = this.count;
    const counters = this.counters;
    return {
      max: this.max,
      inUse: count[IN_USE]!,
      idle: count[IDLE]!,
      releasing: count[RELEASING]!,
      waiting,
      dials: counters.dials,
      dialErrors: counters.dialErrors,
      reuses: counters.reuses,
      evictions: counters.evictions,
      waitsGivenUp: counters.waitsGivenUp,
      leaks: counters.leaks,
    };
  }
}

// The shared memory: a header, then one entry per party (one thread's global
// pool), then each entry's counters as doubles.
//
// OPEN counts every slot of the process (in use + idle + releasing, every
// thread): taking a fresh slot is one compare-and-swap on it. A party's own
// counts are written by its thread alone, with plain stores; other threads
// read them (with Atomics.load) to decide whom to wake or ask, and for
// stats(). Waiting is the contended path, and uses atomics throughout.
//
// Nothing takes a lock: worker.terminate() can stop a thread anywhere, and a
// lock it held would stop every other thread.

/** The key of the environment data that hands the memory to workers; the number is the layout's. */
const KEY = 'connpool:budget:1';
/** Most parties at once: a thread beyond this gets a budget of its own (with a warning). */
const CAPACITY = 256;

// Header words.
const LAYOUT = 0;
const MAX = 1;
const OPEN = 2;
const WAITING = 3;
const TICKETS = 4;
const EVICTING = 5;
const HIGH = 6;
/** The counters of parties gone, each as two words (low, high) of an unsigned 64-bit sum. */
const RETIRED = 8;
const HEADER = 32;

// Entry words, from the entry's base.
const OWNER = 0;
const PARENT = 1;
const COUNT = 2;
const WAITERS = 5;
const HEAD = 6;
const BELL = 7;
/** Evictions asked of this party and not yet done (being done, or not begun). */
const ASKS = 8;
const ENTRY = 16;

const LAYOUT_MARK = 0x63706f6f; // 'cpoo'
const WORDS = HEADER + CAPACITY * ENTRY;
const BYTES = WORDS * 4 + CAPACITY * 8 * 8;
const TWO_TO_32 = 2 ** 32;

/** The memory shared by every thread of this process that loaded connpool. @internal */
export class Memory {
  readonly words: Int32Array;
  readonly #retired: Uint32Array;
  readonly #doubles: Float64Array;

  /** Memory for a budget of `max` slots, not yet shared with any thread. */
  static create(max: number): Memory {
    const memory = new Memory(new SharedArrayBuffer(BYTES));
    Atomics.store(memory.words, MAX, max);
    Atomics.store(memory.words, LAYOUT, LAYOUT_MARK);
    return memory;
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer, 0, WORDS);
    this.#retired = new Uint32Array(buffer, RETIRED * 4, COUNTERS * 2);
    this.#doubles = new Float64Array(buffer, WORDS * 4);
  }

  /** The end of the entries ever used, for scans. */
  get high(): number {
    return HEADER + Atomics.load(this.words, HIGH) * ENTRY;
  }

  /** Counters of the entry at `base`. */
  counters(base: number): Float64Array {
    const at = ((base - HEADER) / ENTRY) * 8;
    return this.#doubles.subarray(at, at + COUNTERS);
  }

  /** Counter `i` of the parties gone. */
  retired(i: number): number {
    const retired = this.#retired;
    for (;;) {
      const high = Atomics.load(retired, i * 2 + 1);
      const low = Atomics.load(retired, i * 2);
      if (Atomics.load(retired, i * 2 + 1) === high) return high * TWO_TO_32 + low;
    }
  }

  /** Claims a free entry for this thread; `undefined` when all are taken. */
  join(parent: number): number | undefined {
    const words = this.words;
    for (let index = 0; index < CAPACITY; index++) {
      const base = HEADER + index * ENTRY;
      if (Atomics.compareExchange(words, base + OWNER, 0, threadId + 1) !== 0) continue;
      Atomics.store(words, base + PARENT, parent);
      // An ask that reached this entry after its last party was given back: nobody will answer it.
      Atomics.sub(words, EVICTING, Atomics.exchange(words, base + ASKS, 0));
      for (let high = Atomics.load(words, HIGH); high <= index; ) {
        const seen = Atomics.compareExchange(words, HIGH, high, index + 1);
        if (seen === high) break;
        high = seen;
      }
      return base;
    }
    return undefined;
  }

  /** Wakes the party at entry `base`. */
  ring(base: number): void {
    Atomics.add(this.words, base + BELL, 1);
    Atomics.notify(this.words, base + BELL);
  }

  /** Wakes every party with waiters, but `except`. */
  ringWaiting(except: number): void {
    const words = this.words;
    const high = this.high;
    for (let base = HEADER; base < high; base += ENTRY) {
      if (base !== except && Atomics.load(words, base + WAITERS) > 0) this.ring(base);
    }
  }

  /**
   * Gives back every slot of the parties of thread `thread` and of the
   * threads it started (they end with it): their descriptors are closed by
   * the time its `'exit'` is seen.
   *
   * An entry being given back has OWNER = -(its owner) and PARENT = the
   * thread giving it back. Each word is taken (exchanged for 0) as it is
   * given back, so if that thread is itself stopped halfway, the reclaim of
   * that thread finishes the entry and gives back no word twice.
   */
  reclaim(thread: number): void {
    const words = this.words;
    const high = this.high;
    const gone = new Set([thread + 1]);
    for (let grew = true; grew; ) {
      grew = false;
      for (let base = HEADER; base < high; base += ENTRY) {
        const owner = Math.abs(Atomics.load(words, base + OWNER));
        if (owner !== 0 && !gone.has(owner) && gone.has(Atomics.load(words, base + PARENT))) {
          gone.add(owner);
          grew = true;
        }
      }
    }
    let reclaimed = false;
    for (let base = HEADER; base < high; base += ENTRY) {
      const owner = Atomics.load(words, base + OWNER);
      if (owner > 0) {
        if (!gone.has(owner) || Atomics.compareExchange(words, base + OWNER, owner, -owner) !== owner) continue;
        Atomics.store(words, base + PARENT, threadId + 1);
      } else if (owner === 0 || !gone.has(Atomics.load(words, base + PARENT))) continue;
      Atomics.store(words, base + HEAD, 0);
      Atomics.sub(words, WAITING, Atomics.exchange(words, base + WAITERS, 0));
      for (let state = IN_USE; state <= RELEASING; state++) Atomics.sub(words, OPEN, Atomics.exchange(words, base + COUNT + state, 0));
      const counters = this.counters(base);
      for (let i = 0; i < COUNTERS; i++) this.#retire(i, counters[i]!);
      counters.fill(0);
      Atomics.store(words, base + PARENT, 0);
      Atomics.store(words, base + BELL, 0);
      // Asks last: one that lands after this is taken back by its asker (OWNER changed) or by the next join.
      Atomics.sub(words, EVICTING, Atomics.exchange(words, base + ASKS, 0));
      Atomics.store(words, base + OWNER, 0);
      reclaimed = true;
    }
    if (reclaimed) this.ringWaiting(-1);
  }

  /** Adds `value` to counter `i` of the parties gone: a 64-bit add, carried by hand. */
  #retire(i: number, value: number): void {
    const retired = this.#retired;
    const low = value % TWO_TO_32;
    const before = Atomics.add(retired, i * 2, low);
    const carry = before + low >= TWO_TO_32 ? 1 : 0;
    Atomics.add(retired, i * 2 + 1, Math.floor(value / TWO_TO_32) + carry);
  }
}

/**
 * The process-wide pool's budget: one `max` for every thread, counted in a
 * `SharedArrayBuffer` handed to each worker started after connpool was loaded
 * in its parent (through `worker_threads` environment data, set at load).
 *
 * - Taking a fresh slot is one compare-and-swap on the process's count of
 *   open slots; reusing this thread's idle resource and `put()` touch only
 *   this thread's counts (plain stores) and read one shared word, while no
 *   other thread waits.
 * - Waiters hold tickets from one process-wide counter: the oldest waiter of
 *   the process is served first, whatever its thread. A thread that frees
 *   room while others wait rings their bells (`Atomics.notify`); each thread
 *   listens with `Atomics.waitAsync`, which never blocks its event loop and
 *   never keeps an idle thread alive. While another thread shares the
 *   budget, a thread with waiters keeps itself alive (a ref'd timer), as a
 *   socket it waited on would.
 * - Idle resources stay in their thread, and serve its own waiters first.
 *   When the oldest waiter finds the process full and its own thread holds
 *   nothing idle, it asks the thread holding the most idle resources to
 *   close its least recently used one; that slot frees once the close
 *   completes (S4). An ask is only sent while asks in flight are fewer than
 *   the waiters. A thread asked for room it no longer has owes it: it closes
 *   the next resource it is given back instead of keeping it.
 * - The thread that started a worker gives back its slots when it sees the
 *   worker's `'exit'` (with those of the workers it started in turn), if it
 *   had loaded connpool when it started it.
 * @internal
 */
export class SharedBudget extends Budget {
  readonly #memory: Memory;
  readonly #words: Int32Array;
  /** This party's entry. */
  readonly #base: number;
  #owner: BudgetOwner | undefined = undefined;
  /** This party's waiters (as published in its entry). */
  #waiters = 0;
  /**
   * Evictions other threads asked of this one when it had nothing idle
   * (its own waiters had reused it): its next `put()`s close instead of
   * keeping, while others wait, so that a busy thread cannot starve them.
   */
  #owed = 0;
  /** Of this party's ASKS, those whose eviction is under way. */
  #answering = 0;
  /**
   * While this thread has waiters and another thread shares the budget:
   * keeps it alive (their room may come from another thread, as a socket they
   * waited on would), and looks for room every {@link LOOK_AGAIN_MS}, in case
   * a bell was missed (see `#wakeOthers`).
   */
  #keepAlive: NodeJS.Timeout | undefined = undefined;

  /** @returns a budget for this thread, or `undefined` when every entry is taken. */
  static join(memory: Memory, parent: number): SharedBudget | undefined {
    const base = memory.join(parent);
    return base === undefined ? undefined : new SharedBudget(memory, base);
  }

  private constructor(memory: Memory, base: number) {
    super(Atomics.load(memory.words, MAX), memory.words.subarray(base + COUNT, base + COUNT + 3), new Counters(memory.counters(base)));
    this.#memory = memory;
    this.#words = memory.words;
    this.#base = base;
    // A worker that ends by process.exit() or runs out of work leaves the line at once: its
    // parent gives back its slots only once it has seen it exit (terminate() skips this).
    if (!isMainThread) process.once('exit', this.#leave);
  }

  override attach(owner: BudgetOwner): void {
    this.#owner = owner;
    this.#listen();
  }

  override owes(): boolean {
    return this.#owed > 0 && this.#words[WAITING]! > this.#waiters;
  }

  override takeFresh(): boolean {
    const words = this.#words;
    // A free slot goes to the oldest waiter of the process: not to a newcomer, nor to a younger waiter.
    if (words[WAITING]! > this.#waiters && (this.#waiters === 0 || !this.#isOldest())) return false;
    let open = Atomics.load(words, OPEN);
    while (open < this.max) {
      const seen = Atomics.compareExchange(words, OPEN, open, open + 1);
      if (seen === open) {
        this.count[IN_USE]!++;
        return true;
      }
      open = seen;
    }
    return false;
  }

  override hasRoom(): boolean {
    return this.count[IDLE]! > 0 || (this.#isOldest() && Atomics.load(this.#words, OPEN) < this.max);
  }

  override freed(state: number): void {
    this.count[state]!--;
    Atomics.sub(this.#words, OPEN, 1);
    this.#wakeOthers();
  }

  override answered(): void {
    this.count[RELEASING]!--;
    Atomics.sub(this.#words, OPEN, 1);
    Atomics.sub(this.#words, ASKS + this.#base, 1);
    this.#answering--;
    Atomics.sub(this.#words, EVICTING, 1);
    this.#memory.ringWaiting(-1);
  }

  override closingInUse(): void {
    if (this.#owed > 0) this.#owed--;
  }

  override madeIdle(): void {
    if (this.#words[WAITING]! > this.#waiters) this.#memory.ringWaiting(this.#base);
    else this.#owed = 0;
  }

  override ticket(): number {
    return Atomics.add(this.#words, TICKETS, 1);
  }

  override queued(head: number, size: number): void {
    const words = this.#words;
    const base = this.#base;
    const before = this.#waiters;
    const headBefore = words[base + HEAD]!;
    Atomics.store(words, base + HEAD, head);
    Atomics.store(words, base + WAITERS, size);
    Atomics.add(words, WAITING, size - before);
    this.#waiters = size;
    if (size > 0) this.#keepAliveIfShared();
    else {
      clearInterval(this.#keepAlive);
      this.#keepAlive = undefined;
    }
    // The oldest waiter here left: the turn may have passed to another thread.
    if (before > 0 && (size === 0 || head !== headBefore)) this.#memory.ringWaiting(base);
  }

  override askForRoom(): void {
    const words = this.#words;
    if (this.count[IDLE]! > 0 || !this.#isOldest() || Atomics.load(words, OPEN) < this.max) return;
    const evicting = Atomics.load(words, EVICTING);
    if (evicting >= Atomics.load(words, WAITING)) return;
    const victim = this.#mostIdle();
    if (victim === undefined) return;
    const owner = Atomics.load(words, victim + OWNER);
    if (owner <= 0 || Atomics.compareExchange(words, EVICTING, evicting, evicting + 1) !== evicting) return;
    Atomics.add(words, victim + ASKS, 1);
    // The victim's thread ended meanwhile and its entry is being given back: take the ask back
    // (or the reclaim, or the entry's next party as it joins, does: whoever exchanges it first).
    // Should a new party have joined the entry meanwhile, this takes its asks too; its askers
    // then look again within LOOK_AGAIN_MS.
    if (Atomics.load(words, victim + OWNER) !== owner) Atomics.sub(words, EVICTING, Atomics.exchange(words, victim + ASKS, 0));
    else this.#memory.ring(victim);
  }

  /**
   * Rings the other threads' waiters, if any waits. The count is read
   * without a barrier, to keep `put()` free of atomics: a thread that starts
   * waiting in the same instant may not be rung, and finds the room when it
   * next looks (within {@link LOOK_AGAIN_MS}).
   */
  #wakeOthers(): void {
    if (this.#words[WAITING]! > this.#waiters) this.#memory.ringWaiting(this.#base);
  }

  /** This thread ends: its waiters leave the line, so that they hold up no other thread's. */
  readonly #leave = (): void => {
    const words = this.#words;
    Atomics.store(words, this.#base + HEAD, 0);
    Atomics.sub(words, WAITING, Atomics.exchange(words, this.#base + WAITERS, 0));
    this.#memory.ringWaiting(this.#base);
  };

  override stats(): PoolStats {
    const memory = this.#memory;
    const words = this.#words;
    const totals = COUNTER_NAMES.map((_, i) => memory.retired(i));
    let inUse = 0;
    let idle = 0;
    let releasing = 0;
    const high = this.#memory.high;
    for (let base = HEADER; base < high; base += ENTRY) {
      if (Atomics.load(words, base + OWNER) <= 0) continue;
      inUse += Atomics.load(words, base + COUNT + IN_USE);
      idle += Atomics.load(words, base + COUNT + IDLE);
      releasing += Atomics.load(words, base + COUNT + RELEASING);
      const counters = memory.counters(base);
      for (let i = 0; i < COUNTERS; i++) totals[i]! += counters[i]!;
    }
    const [dials = 0, dialErrors = 0, reuses = 0, evictions = 0, waitsGivenUp = 0, leaks = 0] = totals;
    return { max: this.max, inUse, idle, releasing, waiting: Atomics.load(words, WAITING), dials, dialErrors, reuses, evictions, waitsGivenUp, leaks };
  }

  /** Whether this thread's oldest waiter is the oldest of the process. */
  #isOldest(): boolean {
    const words = this.#words;
    const mine = Atomics.load(words, this.#base + HEAD);
    const high = this.#memory.high;
    for (let base = HEADER; base < high; base += ENTRY) {
      // Tickets wrap: compare by the sign of the difference.
      if (base !== this.#base && Atomics.load(words, base + WAITERS) > 0 && ((Atomics.load(words, base + HEAD) - mine) | 0) < 0) return false;
    }
    return true;
  }

  /** The other party holding the most idle resources. */
  #mostIdle(): number | undefined {
    const words = this.#words;
    const high = this.#memory.high;
    let victim: number | undefined;
    let most = 0;
    for (let base = HEADER; base < high; base += ENTRY) {
      const idle = Atomics.load(words, base + COUNT + IDLE);
      if (base !== this.#base && idle > most && Atomics.load(words, base + OWNER) > 0) {
        victim = base;
        most = idle;
      }
    }
    return victim;
  }

  readonly #lookAgain = (): void => this.#owner?.roomElsewhere();

  /**
   * Keeps this thread alive while it has waiters, once another thread draws
   * on the budget too (room may then come from there). Alone, a thread's
   * waiters wait on its own resources, as a private pool's do.
   */
  #keepAliveIfShared(): void {
    if (this.#keepAlive !== undefined) return;
    const words = this.#words;
    const high = this.#memory.high;
    for (let base = HEADER; base < high; base += ENTRY) {
      if (base !== this.#base && Atomics.load(words, base + OWNER) !== 0) {
        this.#keepAlive = setInterval(this.#lookAgain, LOOK_AGAIN_MS);
        return;
      }
    }
  }

  /** Answers this party's bell: evictions asked of it, then room for its waiters; and listens again. */
  readonly #listen = (): void => {
    const words = this.#words;
    const bell = this.#base + BELL;
    for (;;) {
      const seen = Atomics.load(words, bell);
      while (Atomics.load(words, this.#base + ASKS) > this.#answering) {
        if (this.#owner!.evictForOther()) this.#answering++;
        else {
          // Nothing idle here any more (this thread's waiters took it): the askers look
          // again, elsewhere too, and this thread owes them the next slots it frees.
          for (let asks = Atomics.load(words, this.#base + ASKS); asks > this.#answering; ) {
            const seenAsks = Atomics.compareExchange(words, this.#base + ASKS, asks, asks - 1);
            if (seenAsks !== asks) {
              asks = seenAsks;
              continue;
            }
            Atomics.sub(words, EVICTING, 1);
            this.#owed = Math.min(this.#owed + 1, this.count[IN_USE]!);
            asks--;
          }
          this.#memory.ringWaiting(-1);
          break;
        }
      }
      if (this.#waiters > 0) {
        this.#keepAliveIfShared();
        this.#owner!.roomElsewhere();
      }
      const wait = Atomics.waitAsync(words, bell, seen);
      if (wait.async) {
        void wait.value.then(this.#listen);
        return;
      }
    }
  };
}

/** How often a thread with waiters looks for room unrung. */
const LOOK_AGAIN_MS = 50;

/** What the environment data carries: the memory, and which thread set it. */
interface Handoff {
  buffer: SharedArrayBuffer;
  /** `threadId + 1` of the thread that set it. */
  thread: number;
  /** `threadId + 1` of the thread that gives back that thread's slots (0: none, the main thread). */
  parent: number;
}

function isHandoff(value: unknown): value is Handoff {
  const handoff = value as Handoff | undefined;
  return (
    handoff?.buffer instanceof SharedArrayBuffer &&
    handoff.buffer.byteLength === BYTES &&
    Atomics.load(new Int32Array(handoff.buffer, 0, 1), LAYOUT) === LAYOUT_MARK
  );
}

/**
 * Finds the memory this thread's parent handed down (or that another copy of
 * connpool in this thread made), or makes it; hands it on to the workers this
 * thread starts; and gives back the slots of each of them when it exits.
 */
function openMemory(): { memory: Memory; parent: number; isOrphan: boolean } {
  const inherited: unknown = getEnvironmentData(KEY);
  if (isHandoff(inherited) && inherited.thread === threadId + 1) {
    // Another copy of connpool in this thread got here first, and already watches its workers.
    return { memory: new Memory(inherited.buffer), parent: inherited.parent, isOrphan: false };
  }
  const memory = isHandoff(inherited) ? new Memory(inherited.buffer) : Memory.create(connectionLimit());
  const parent = isHandoff(inherited) ? inherited.thread : 0;
  setEnvironmentData(KEY, { buffer: memory.buffer, thread: threadId + 1, parent } satisfies Handoff);
  process.on('worker', (worker) => {
    const thread = worker.threadId;
    worker.once('exit', () => memory.reclaim(thread));
  });
  // A worker whose parent had not loaded connpool when it started it inherits nothing: its
  // budget is its own, and the process's descriptor table is not (each of four such workers
  // hit EMFILE in a trial). Said once, when its global pool is first used.
  return { memory, parent, isOrphan: !isMainThread && !isHandoff(inherited) };
}

const shared = openMemory();

/**
 * The budget of this thread's global pool: shared with every thread of the
 * process, or this thread's own (with a warning) if `CAPACITY` threads
 * already draw on it.
 * @internal
 */
export function processBudget(): Budget {
  const budget = SharedBudget.join(shared.memory, shared.parent);
  if (budget !== undefined && shared.isOrphan) {
    process.emitWarning(
      `connpool: worker thread ${threadId} was started by a thread that had not loaded connpool, so its global pool ` +
        `has a budget of its own (max ${budget.max}), not the process's: import 'connpool' in the parent before ` +
        'starting workers (see README, "Worker threads")',
      { code: 'CONNPOOL_BUDGET' },
    );
  }
  if (budget !== undefined) return budget;
  process.emitWarning(`connpool: more than ${CAPACITY} threads use the global pool; this one gets a budget of its own`, { code: 'CONNPOOL_BUDGET' });
  return new Budget(connectionLimit());
}

