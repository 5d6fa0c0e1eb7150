/**
 * fc.scheduler() tests of the slot queue and of eviction. Every allocate()
 * and release() callback, and every action of the test (a get(), an abort, a
 * put() or release(), pool.close()), is a task that fast-check's scheduler
 * runs in an order of its choosing, so each property holds for whatever
 * interleaving of callers and callbacks it finds. Half the runs let the
 * pool's own promise chains finish between two tasks ("drained": what each
 * step must have done is then exact); the other half start the next task at
 * once, mid-chain.
 *
 * At every step: no negative counter, inUse + idle + releasing <= max, at
 * most max resources open by the callbacks' own count, allocate() never while
 * the same resource's release() runs. Throughout: every get() settles once,
 * with an outcome the contract allows. At the end: no slot lost (with
 * everything released, a fresh get() of every slot succeeds at once) and
 * pool.close() resolves.
 */
import fc from 'fast-check';
import { PoolClosedError, QueueFullError, ResourceLimitExceededError, ResourcePool, type PoolStats, type Resource } from '../lib/index.js';
import { fuzzOptions, fuzzTimeout } from './helpers/fuzz-options.js';

type Allocation = 'none' | 'allocating' | 'allocated' | 'releasing';
type Hold = 'free' | 'getting' | 'held';
type SignalKind = 'none' | 'later' | 'aborted';
/** How successive calls of a callback end: 'sync' succeeds at once; else a scheduled task each, true = succeeds. */
type Plan = 'sync' | boolean[];

interface Track {
  id: number;
  r: number;
  kind: SignalKind;
  signal: AbortSignal | undefined;
  controller: AbortController | undefined;
  reason: Error;
  settled: boolean;
  ok: boolean;
  error: unknown;
  /** allocate() was called for this get(), or it resolved (reusing its own idle allocation). */
  admitted: boolean;
  queueFullLawful: boolean;
  allocErrors: Set<unknown>;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function text(value: unknown): string {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return `${value.name}${code === undefined ? '' : `(${String(code)})`}: ${value.message}`;
  }
  return String(value);
}

const isError = (error: unknown, type: new (...args: never[]) => Error, code: string): boolean =>
  error instanceof type && (error as { code?: unknown }).code === code;
const isTurnedAway = (t: Track): boolean =>
  isError(t.error, ResourceLimitExceededError, 'ERR_RESOURCE_LIMIT_EXCEEDED') && (t.error as Error).cause === t.reason;
const outcome = (t: Track): string => (!t.settled ? (t.admitted ? 'admitted, pending' : 'pending') : t.ok ? 'resolved' : `rejected with ${text(t.error)}`);
const show = (s: PoolStats): string => `{inUse ${s.inUse}, idle ${s.idle}, releasing ${s.releasing}, waiting ${s.waiting}}`;

/** What the scheduler's act runs after each task: set per run. */
let afterStep: (() => Promise<void>) | undefined;
const schedulerArb = fc.scheduler({
  act: async (f) => {
    await f();
    await afterStep?.();
  },
});

class Harness {
  readonly pool: ResourcePool;
  readonly resources: Resource[] = [];
  readonly names: string[] = [];
  readonly allocation: Allocation[] = [];
  readonly hold: Hold[] = [];
  readonly plans: { allocate: Plan; release: Plan }[] = [];
  readonly calls: { allocate: number; release: number }[] = [];
  readonly current: (Track | undefined)[] = [];
  readonly gets: Track[] = [];
  readonly releaseErrors = new Set<unknown>();
  readonly releases: { label: string; settled: boolean; error: unknown }[] = [];
  readonly violations: string[] = [];
  readonly events: string[] = [];
  readonly closes: { settled: boolean; ok: boolean }[] = [];
  isClosed = false;
  caught: unknown = undefined;
  /** Run when the release() callback of a resource ends (see Race). */
  readonly afterRelease = new Map<number, () => void>();
  /** Check that admissions follow arrivals (only where nothing reorders them: no eviction, no own release). */
  checksFifo = false;

  constructor(
    readonly s: fc.Scheduler,
    readonly max: number,
    readonly maxWaiting: number,
    readonly drain: boolean,
  ) {
    this.pool = new ResourcePool({ max, maxWaiting });
    afterStep = async () => {
      if (this.drain) await this.flush();
      this.checkNow(this.drain);
    };
  }

  add(name: string, allocate: Plan, release: Plan): number {
    const r = this.resources.length;
    this.names.push(name);
    this.allocation.push('none');
    this.hold.push('free');
    this.plans.push({ allocate, release });
    this.calls.push({ allocate: 0, release: 0 });
    this.current.push(undefined);
    this.resources.push(this.pool.create({ allocate: () => this.#allocate(r), release: () => this.#release(r) }));
    return r;
  }

  #allocate(r: number): void | Promise<void> {
    const name = this.names[r]!;
    const call = this.calls[r]!.allocate++;
    const state = this.allocation[r]!;
    if (state === 'releasing') this.violation(`E13: allocate() of ${name} ran while its release() was still in progress`);
    else if (state !== 'none') this.violation(`allocate() of ${name} ran while it was ${state}`);
    const track = this.current[r];
    if (track === undefined || track.settled) this.violation(`allocate() of ${name} ran with no get() of it pending`);
    else {
      if (track.admitted) this.violation(`get#${track.id} of ${name} admitted twice`);
      track.admitted = true;
      if (this.checksFifo) this.#checkFifo(track);
    }
    this.allocation[r] = 'allocating';
    this.event(`allocate() of ${name} starts`);
    this.#checkOpen(`allocate() of ${name} started`);
    this.checkStats(`allocate() of ${name} started`);
    const plan = this.plans[r]!.allocate;
    const ok = plan === 'sync' ? true : plan[call % plan.length]!;
    const error = new Error(`allocate() of ${name} failed`);
    track?.allocErrors.add(error);
    const finish = (): void => {
      if (this.allocation[r] === 'allocating') this.allocation[r] = ok ? 'allocated' : 'none';
      this.event(`allocate() of ${name} ${ok ? 'done' : 'failed'}`);
      if (!ok) throw error;
    };
    if (plan === 'sync') return finish();
    return this.s.schedule(Promise.resolve(), `allocate() of ${name} ${ok ? 'succeeds' : 'fails'}`).then(finish);
  }

  #release(r: number): void | Promise<void> {
    const name = this.names[r]!;
    const call = this.calls[r]!.release++;
    if (this.allocation[r] !== 'allocated') this.violation(`release() of ${name} ran while it was ${this.allocation[r]}`);
    if (this.hold[r] === 'held') this.violation(`release() of ${name} ran while its caller held it`);
    this.allocation[r] = 'releasing';
    this.event(`release() of ${name} starts`);
    this.checkStats(`release() of ${name} started`);
    const plan = this.plans[r]!.release;
    const ok = plan === 'sync' ? true : plan[call % plan.length]!;
    const error = new Error(`release() of ${name} failed`);
    this.releaseErrors.add(error);
    const finish = (): void => {
      if (this.allocation[r] === 'releasing') this.allocation[r] = 'none';
      this.event(`release() of ${name} ${ok ? 'done' : 'failed'}`);
      const after = this.afterRelease.get(r);
      this.afterRelease.delete(r);
      after?.();
      if (!ok) throw error;
    };
    if (plan === 'sync') return finish();
    return this.s.schedule(Promise.resolve(), `release() of ${name} ${ok ? 'succeeds' : 'fails'}`).then(finish);
  }

  /** S2, no barging: an admitted get() arrived after no get() still waiting. */
  #checkFifo(admitted: Track): void {
    for (const earlier of this.gets) {
      if (earlier.id >= admitted.id) break;
      if (earlier.admitted || earlier.settled || earlier.signal?.aborted === true || this.isClosed) continue;
      this.violation(`S2: get#${admitted.id} of ${this.names[admitted.r]} was admitted while get#${earlier.id}, which came first, still waits`);
    }
  }

  event(line: string): void {
    this.events.push(`${line} ${show(this.pool.stats())}`);
  }

  violation(message: string): void {
    this.violations.push(message);
  }

  fail(message: string): never {
    const states = this.names
      .map((name, r) => `${name}: ${this.hold[r]}/${this.allocation[r]}`)
      .filter((line) => !line.endsWith('free/none'))
      .join(', ');
    throw new Error(
      `${message}\n  stats now ${show(this.pool.stats())}; ${states || 'all free'}\n  events:\n    ${this.events.slice(-40).join('\n    ')}`,
    );
  }

  open(): number {
    return this.allocation.filter((a) => a !== 'none').length;
  }

  count(state: Allocation): number {
    return this.allocation.filter((a) => a === state).length;
  }

  #checkOpen(when: string): void {
    const open = this.open();
    if (open > this.max) this.violation(`S1: ${open} resources open (allocating, allocated or releasing) > max ${this.max} when ${when}`);
  }

  checkStats(when: string): void {
    const s = this.pool.stats();
    if (s.inUse < 0 || s.idle < 0 || s.releasing < 0 || s.waiting < 0) this.violation(`negative counter when ${when}: ${show(s)}`);
    if (s.inUse + s.idle + s.releasing > this.max) this.violation(`S1: inUse + idle + releasing > max ${this.max} when ${when}: ${show(s)}`);
  }

  /** Gets that may still wait for a slot (an upper bound when not drained). */
  liveWaiters(): Track[] {
    if (this.isClosed) return [];
    return this.gets.filter((t) => !t.settled && !t.admitted && t.signal?.aborted !== true);
  }

  /** The scheduler swallows a failing task: keep its error for the next check. */
  guard(step: Promise<void>): Promise<void> {
    return step.catch((error: unknown) => {
      this.caught ??= error;
    });
  }

  /** Invariants; with `exact` (the pool has drained), also: nobody waits while a slot is free and nothing is being released. */
  checkNow(exact: boolean): void {
    if (this.caught !== undefined) throw this.caught;
    this.checkStats('a step ended');
    if (this.violations.length > 0) this.fail(this.violations[0]!);
    if (!exact) return;
    const s = this.pool.stats();
    const waiting = this.liveWaiters().length;
    if (waiting > 0 && this.count('releasing') === 0 && s.inUse < this.max) {
      this.fail(`S2: ${waiting} get() waiting while a slot is free and nothing is being released`);
    }
  }

  get(r: number, kind: SignalKind): Track {
    const id = this.gets.length;
    const reason = new Error(`abort of get#${id}`);
    const controller = kind === 'later' ? new AbortController() : undefined;
    const signal = kind === 'aborted' ? AbortSignal.abort(reason) : controller?.signal;
    const t: Track = {
      id,
      r,
      kind,
      signal,
      controller,
      reason,
      settled: false,
      ok: false,
      error: undefined,
      admitted: false,
      queueFullLawful: this.liveWaiters().length >= this.maxWaiting,
      allocErrors: new Set(),
    };
    this.gets.push(t);
    this.hold[r] = 'getting';
    this.current[r] = t;
    this.event(`get#${id} of ${this.names[r]}${kind === 'none' ? '' : ` (signal ${kind})`}`);
    this.resources[r]!.get(signal).then(
      () => this.#settled(t, true, undefined),
      (error: unknown) => this.#settled(t, false, error),
    );
    return t;
  }

  #settled(t: Track, ok: boolean, error: unknown): void {
    t.settled = true;
    t.ok = ok;
    t.error = error;
    const name = this.names[t.r]!;
    if (ok) {
      t.admitted = true;
      if (this.allocation[t.r] !== 'allocated') this.violation(`get#${t.id} of ${name} resolved while it is ${this.allocation[t.r]}`);
      this.hold[t.r] = 'held';
    } else {
      const wrong = this.#unlawful(t, error);
      if (wrong !== undefined) this.violation(`get#${t.id} of ${name}: ${wrong}`);
      this.hold[t.r] = 'free';
    }
    this.event(`  => get#${t.id} ${outcome(t)}`);
  }

  #unlawful(t: Track, error: unknown): string | undefined {
    if (isError(error, ResourceLimitExceededError, 'ERR_RESOURCE_LIMIT_EXCEEDED')) {
      if (t.signal?.aborted !== true) return 'ERR_RESOURCE_LIMIT_EXCEEDED although its signal was not aborted';
      return (error as Error).cause === t.reason ? undefined : "ERR_RESOURCE_LIMIT_EXCEEDED whose cause is not the signal's reason";
    }
    if (t.signal?.aborted === true && error === t.reason) return undefined;
    if (isError(error, PoolClosedError, 'ERR_POOL_CLOSED')) return this.isClosed ? undefined : 'ERR_POOL_CLOSED before close()';
    if (isError(error, QueueFullError, 'ERR_QUEUE_FULL')) {
      return t.queueFullLawful ? undefined : `E8: ERR_QUEUE_FULL with fewer than maxWaiting (${this.maxWaiting}) waiting`;
    }
    if (t.allocErrors.has(error)) return undefined;
    return `an unexpected rejection: ${text(error)}`;
  }

  put(r: number): void {
    this.hold[r] = 'free';
    this.event(`put(${this.names[r]})`);
    this.resources[r]!.put();
  }

  release(r: number): void {
    const label = `release(${this.names[r]})`;
    if (this.hold[r] === 'held') this.hold[r] = 'free';
    this.event(label);
    const record = { label, settled: false, error: undefined as unknown };
    this.releases.push(record);
    this.resources[r]!.release().then(
      () => {
        record.settled = true;
      },
      (error: unknown) => {
        record.settled = true;
        record.error = error;
        if (!this.releaseErrors.has(error)) this.violation(`${label} rejected with ${text(error)}, not release()'s error`);
      },
    );
  }

  close(): void {
    this.isClosed = true;
    this.event('pool.close()');
    const record = { settled: false, ok: false };
    this.closes.push(record);
    this.pool.close().then(
      () => {
        record.settled = true;
        record.ok = true;
        if (this.open() !== 0) this.violation(`E7: pool.close() resolved while ${this.open()} resources are still open`);
      },
      () => {
        record.settled = true;
      },
    );
  }

  async flush(): Promise<void> {
    await tick();
    await tick();
  }

  /** Runs every scheduled task, and those they lead to. */
  async runAll(): Promise<void> {
    do {
      while (this.s.count() > 0) await this.s.waitOne();
      await this.flush();
    } while (this.s.count() > 0);
  }

  /** Runs every scheduled task, letting go of whatever is held, until nothing moves. */
  async settle(letGo: (r: number) => void): Promise<void> {
    for (let round = 0; round < 1_000; round++) {
      while (this.s.count() > 0) await this.s.waitOne();
      await this.flush();
      this.checkNow(true);
      const r = this.hold.indexOf('held');
      if (r !== -1) letGo(r);
      else if (this.s.count() === 0) return;
    }
    this.fail('the pool did not come to rest');
  }

  /** Everything settled; no slot lost; pool.close() resolves. */
  async finish(letGo: (r: number) => void): Promise<void> {
    await this.settle(letGo);
    for (const t of this.gets) if (!t.settled) this.fail(`get#${t.id} of ${this.names[t.r]} never settled (${outcome(t)})`);
    for (const release of this.releases) if (!release.settled) this.fail(`${release.label} never settled`);
    const s = this.pool.stats();
    const idle = this.count('allocated');
    if (s.inUse !== 0 || s.waiting !== 0 || s.releasing !== 0 || s.idle !== idle) {
      this.fail(`at rest stats() should be {inUse 0, idle ${idle}, releasing 0, waiting 0}, but is ${show(s)}`);
    }
    if (!this.isClosed) {
      const fresh: number[] = [];
      for (let k = 0; k < this.max; k++) {
        const r = this.add(`fresh${k}`, 'sync', 'sync');
        fresh.push(r);
        const t = this.get(r, 'aborted'); // the immediate canceler: no wait, except for an eviction
        for (let round = 0; round < 100 && !t.settled; round++) {
          if (this.s.count() > 0) await this.s.waitOne();
          await this.flush();
        }
        if (!t.ok) this.fail(`slot lost: with nothing held, a fresh get() (${k + 1} of max ${this.max}) ${outcome(t)}`);
      }
      for (const r of fresh) this.release(r);
      await this.settle(letGo);
      this.close();
    }
    await this.settle(letGo);
    if (this.closes.some((c) => !c.ok)) this.fail('E7: pool.close() did not resolve');
    const end = this.pool.stats();
    if (end.inUse + end.idle + end.releasing + end.waiting !== 0) this.fail(`E7: after close() stats() should be all 0: ${show(end)}`);
    if (this.open() !== 0) this.fail(`E7: ${this.open()} resources still open after pool.close() resolved`);
  }
}

const signalArb = fc.constantFrom<SignalKind>('none', 'later', 'aborted');

// ---------------------------------------------------------------------------
// The slot queue: max holders, then arrivals, aborts, releases and close().

/**
 * Something that happens a few microtasks after a freed slot's release()
 * callback ends: inside the window where the pool hands that slot to its
 * oldest waiter (a newcomer must not barge in; an abort may come first).
 */
interface Race {
  what: 'newcomer' | 'abort';
  afterTicks: number;
  signal: SignalKind;
  k: number;
}
const raceArb: fc.Arbitrary<Race> = fc.record({
  what: fc.constantFrom('newcomer' as const, 'abort' as const),
  afterTicks: fc.nat({ max: 12 }),
  signal: signalArb,
  k: fc.nat({ max: 7 }),
});

function runRace(h: Harness, race: Race): void {
  if (race.what === 'newcomer') {
    h.get(h.add(`w${h.gets.length}`, [true], [true]), race.signal);
    return;
  }
  const candidates = h.gets.filter((t) => t.controller !== undefined && !t.controller.signal.aborted);
  if (candidates.length === 0) return;
  const t = candidates[race.k % candidates.length]!;
  h.event(`abort the signal of get#${t.id} (${outcome(t)})`);
  t.controller!.abort(t.reason);
}

type QueueAction =
  | { t: 'get'; signal: SignalKind; allocates: boolean }
  | { t: 'abort'; k: number }
  | { t: 'free'; k: number; race: Race | null }
  | { t: 'close' };

const queueActionArb: fc.Arbitrary<QueueAction> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('get' as const), signal: signalArb, allocates: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('abort' as const), k: fc.nat({ max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('free' as const), k: fc.nat({ max: 7 }), race: fc.option(raceArb) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'close' as const }) },
);

async function queueStep(h: Harness, action: QueueAction): Promise<void> {
  switch (action.t) {
    case 'get': {
      const waiting = h.liveWaiters().length;
      const isQuiet = h.count('releasing') === 0;
      const wouldWait = waiting > 0 || h.open() >= h.max; // for a slot in use or being released
      const cancelerMustGo = waiting > 0 || (isQuiet && h.open() >= h.max); // a slot being released: the contract does not say
      const r = h.add(`w${h.gets.length}`, [action.allocates], [true, false]);
      const t = h.get(r, action.signal);
      if (!h.drain) return;
      await h.flush();
      const full = isError(t.error, QueueFullError, 'ERR_QUEUE_FULL');
      const label = `get#${t.id} (signal ${action.signal}), arriving with ${waiting} waiting`;
      if (h.isClosed) {
        if (!isError(t.error, PoolClosedError, 'ERR_POOL_CLOSED')) h.fail(`E7: ${label} after close() should reject with ERR_POOL_CLOSED, but ${outcome(t)}`);
      } else if (!wouldWait) {
        if (!t.admitted) h.fail(`S2: ${label} and a slot free should take the slot at once, but ${outcome(t)}`);
      } else if (waiting >= h.maxWaiting) {
        if (!full && !(action.signal === 'aborted' && isTurnedAway(t))) {
          h.fail(`E8: ${label}, maxWaiting ${h.maxWaiting}, should reject with ERR_QUEUE_FULL, but ${outcome(t)}`);
        }
      } else if (full) {
        h.fail(`E8: ${label} rejected with ERR_QUEUE_FULL below maxWaiting ${h.maxWaiting}`);
      } else if (action.signal === 'aborted' && cancelerMustGo && !isTurnedAway(t)) {
        h.fail(`S2: ${label} and no slot free: the immediate canceler should be turned away with ERR_RESOURCE_LIMIT_EXCEEDED, but ${outcome(t)}`);
      }
      break;
    }
    case 'abort': {
      const candidates = h.gets.filter((t) => t.controller !== undefined && !t.controller.signal.aborted);
      if (candidates.length === 0) return;
      const t = candidates[action.k % candidates.length]!;
      const wasWaiting = !t.admitted && !t.settled;
      h.event(`abort the signal of get#${t.id} (${outcome(t)})`);
      t.controller!.abort(t.reason);
      if (!h.drain) return;
      await h.flush();
      if (wasWaiting && !isTurnedAway(t)) {
        h.fail(`S2: aborting waiting get#${t.id} should reject it at once with ERR_RESOURCE_LIMIT_EXCEEDED (cause: the reason), but ${outcome(t)}`);
      }
      break;
    }
    case 'free': {
      const held = h.hold.flatMap((hold, r) => (hold === 'held' ? [r] : []));
      if (held.length === 0) return;
      const r = held[action.k % held.length]!;
      const { race } = action;
      if (race !== null) {
        h.afterRelease.set(r, () => {
          let ticks = Promise.resolve();
          for (let i = 0; i < race.afterTicks; i++) ticks = ticks.then(() => {});
          void ticks.then(() => runRace(h, race));
        });
      }
      h.release(r);
      if (!h.drain) return;
      await h.flush();
      break;
    }
    case 'close': {
      if (h.isClosed) return;
      const waiters = h.liveWaiters();
      h.close();
      if (!h.drain) return;
      await h.flush();
      for (const t of waiters) {
        if (!isError(t.error, PoolClosedError, 'ERR_POOL_CLOSED')) h.fail(`E7: close() should reject waiting get#${t.id} with ERR_POOL_CLOSED, but ${outcome(t)}`);
      }
      break;
    }
  }
  h.checkNow(true);
}

test(
  'S2/E7/E8: the slot queue admits first come first served, never lets a newcomer barge, drops an aborted waiter at once, sheds load beyond maxWaiting and rejects waiters at close(), in any interleaving',
  async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }),
        fc.oneof(fc.constant(Number.POSITIVE_INFINITY), fc.integer({ min: 0, max: 3 })),
        fc.boolean(),
        fc.array(queueActionArb, { minLength: 1, maxLength: 25 }),
        schedulerArb,
        async (max, maxWaiting, drain, actions, s) => {
          const h = new Harness(s, max, maxWaiting, drain);
          // Only drained: mid-chain, a get() the pool has admitted or turned away may not show it yet.
          h.checksFifo = drain;
          for (let k = 0; k < max; k++) {
            const r = h.add(`holder${k}`, 'sync', [true]);
            h.get(r, 'none');
          }
          await h.flush();
          h.checkNow(true);
          s.scheduleSequence(actions.map((action) => ({ label: JSON.stringify(action), builder: () => h.guard(queueStep(h, action)) })));
          await h.finish((r) => h.release(r));
        },
      ),
      fuzzOptions(600),
    );
  },
  fuzzTimeout,
);

// ---------------------------------------------------------------------------
// Eviction: more resources than slots, kept idle by put(), evicted to make room.

type EvictAction =
  | { t: 'get'; r: number; signal: SignalKind }
  | { t: 'put'; k: number }
  | { t: 'release'; r: number }
  | { t: 'abort'; k: number }
  | { t: 'close' };

const evictActionArb: fc.Arbitrary<EvictAction> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('get' as const), r: fc.nat({ max: 7 }), signal: signalArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('put' as const), k: fc.nat({ max: 7 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('release' as const), r: fc.nat({ max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('abort' as const), k: fc.nat({ max: 7 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'close' as const }) },
);

async function evictStep(h: Harness, action: EvictAction): Promise<void> {
  switch (action.t) {
    case 'get': {
      const free = h.hold.flatMap((hold, r) => (hold === 'free' ? [r] : []));
      if (free.length === 0) return;
      const t = h.get(free[action.r % free.length]!, action.signal);
      if (!h.drain) return;
      await h.flush();
      if (h.isClosed && !isError(t.error, PoolClosedError, 'ERR_POOL_CLOSED')) {
        h.fail(`E7: get#${t.id} after close() should reject with ERR_POOL_CLOSED, but ${outcome(t)}`);
      }
      break;
    }
    case 'put': {
      const held = h.hold.flatMap((hold, r) => (hold === 'held' ? [r] : []));
      if (held.length === 0) return;
      h.put(held[action.k % held.length]!);
      if (!h.drain) return;
      await h.flush();
      break;
    }
    case 'release': {
      const notGetting = h.hold.flatMap((hold, r) => (hold === 'getting' ? [] : [r]));
      if (notGetting.length === 0) return;
      h.release(notGetting[action.r % notGetting.length]!);
      if (!h.drain) return;
      await h.flush();
      break;
    }
    case 'abort': {
      const candidates = h.gets.filter((t) => t.controller !== undefined && !t.controller.signal.aborted);
      if (candidates.length === 0) return;
      const t = candidates[action.k % candidates.length]!;
      const wasWaiting = !t.admitted && !t.settled;
      const name = h.names[t.r]!;
      const what = h.allocation[t.r] === 'releasing' ? 'waiting for its own release() to finish' : 'waiting for a slot or an eviction';
      h.event(`abort the signal of get#${t.id} of ${name} (${outcome(t)})`);
      t.controller!.abort(t.reason);
      if (!h.drain) return;
      await h.flush();
      if (wasWaiting && !isTurnedAway(t) && !(h.isClosed && isError(t.error, PoolClosedError, 'ERR_POOL_CLOSED'))) {
        h.fail(`E11: aborting get#${t.id} of ${name}, ${what}, should reject it at once with ERR_RESOURCE_LIMIT_EXCEEDED (cause: the reason), but ${outcome(t)}`);
      }
      break;
    }
    case 'close': {
      if (h.isClosed) return;
      h.close();
      if (!h.drain) return;
      await h.flush();
      break;
    }
  }
  h.checkNow(true);
}

test(
  'S4/E11/E13: evictions raced by aborts, puts, releases and close() never lose a slot, never overlap allocate() with its own release(), and settle every get()',
  async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.record({ allocate: fc.array(fc.boolean(), { minLength: 1, maxLength: 3 }), release: fc.array(fc.boolean(), { minLength: 1, maxLength: 3 }) }), {
          minLength: 5,
          maxLength: 5,
        }),
        fc.boolean(),
        fc.array(evictActionArb, { minLength: 1, maxLength: 25 }),
        schedulerArb,
        async (max, extra, plans, drain, actions, s) => {
          const h = new Harness(s, max, Number.POSITIVE_INFINITY, drain);
          for (let r = 0; r < max + extra; r++) {
            const plan = plans[r % plans.length]!;
            // The first max resources start idle (got, then put): the pool starts full.
            h.add(`r${r}`, plan.allocate, plan.release);
          }
          for (let r = 0; r < max; r++) h.get(r, 'none');
          await h.runAll();
          for (let r = 0; r < max; r++) if (h.hold[r] === 'held') h.put(r);
          await h.flush();
          h.checkNow(true);
          s.scheduleSequence(actions.map((action) => ({ label: JSON.stringify(action), builder: () => h.guard(evictStep(h, action)) })));
          await h.finish((r) => h.put(r));
        },
      ),
      fuzzOptions(600),
    );
  },
  fuzzTimeout,
);

// ---------------------------------------------------------------------------
// One waiter's abort vs its admission vs the eviction's completion vs close().

test(
  "E11/E7/S4: a waiter's abort, the eviction it waits for, its allocate() and pool.close(), in every order: an abort before the eviction ends rejects at once and the freed slot goes to the next waiter",
  async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          max: fc.integer({ min: 1, max: 2 }),
          evictionSucceeds: fc.boolean(),
          allocateSucceeds: fc.boolean(),
          abort: fc.boolean(),
          /** The abort as a task of its own, or this many microtasks after the eviction's release() callback ends. */
          abortAt: fc.oneof(fc.constant('task' as const), fc.nat({ max: 12 })),
          close: fc.boolean(),
          secondWaiter: fc.boolean(),
          drain: fc.boolean(),
        }),
        schedulerArb,
        async (p, s) => {
          const h = new Harness(s, p.max, Number.POSITIVE_INFINITY, p.drain);
          const victims: number[] = [];
          for (let k = 0; k < p.max; k++) victims.push(h.add(`idle${k}`, 'sync', [p.evictionSucceeds]));
          for (const r of victims) h.get(r, 'none');
          await h.flush();
          for (const r of victims) h.put(r);
          const w = h.add('W', [p.allocateSucceeds], [true]);
          const w2 = h.add('W2', [true], [true]);
          const order: string[] = [];
          const at = (event: string): number => order.indexOf(event);
          const evicted = `release() of idle0 ${p.evictionSucceeds ? 'done' : 'failed'}`;
          const record = h.event.bind(h);
          h.event = (line: string) => {
            if (line.startsWith(evicted)) order.push('evicted');
            record(line);
          };
          const waiter = h.get(w, 'later'); // evicts idle0, the least recently used
          const abortW = (): void => {
            order.push('abort');
            h.event('abort W');
            waiter.controller!.abort(waiter.reason);
          };
          if (p.abort && p.abortAt === 'task') void s.schedule(Promise.resolve(), 'abort W').then(abortW);
          if (p.abort && p.abortAt !== 'task') {
            const ticks = p.abortAt;
            h.afterRelease.set(victims[0]!, () => {
              let later = Promise.resolve();
              for (let i = 0; i < ticks; i++) later = later.then(() => {});
              void later.then(abortW);
            });
          }
          if (p.close) {
            void s.schedule(Promise.resolve(), 'pool.close()').then(() => {
              order.push('close');
              h.close();
            });
          }
          let second: Track | undefined;
          if (p.secondWaiter) {
            void s.schedule(Promise.resolve(), 'W2 arrives').then(() => {
              order.push('w2');
              second = h.get(w2, 'none');
            });
          }
          await h.runAll();
          h.checkNow(true);

          if (!waiter.settled) h.fail(`W should have settled once everything ran (${outcome(waiter)}); order: ${order.join(', ')}`);
          const before = (a: string, b: string): boolean => at(a) !== -1 && (at(b) === -1 || at(a) < at(b));
          if (before('abort', 'evicted') && !before('close', 'abort') && !isTurnedAway(waiter)) {
            h.fail(`E11: W aborted before the eviction it waits for ended should reject with ERR_RESOURCE_LIMIT_EXCEEDED, but ${outcome(waiter)}; order: ${order.join(', ')}`);
          }
          if (at('abort') === -1 && at('close') === -1) {
            const expected = p.allocateSucceeds ? waiter.ok : waiter.allocErrors.has(waiter.error);
            if (!expected) h.fail(`W, neither aborted nor closed, should ${p.allocateSucceeds ? 'resolve' : "reject with allocate()'s error"}, but ${outcome(waiter)}`);
          }
          if (second !== undefined) {
            if (before('close', 'w2') && !isError(second.error, PoolClosedError, 'ERR_POOL_CLOSED')) {
              h.fail(`E7: W2 arriving after close() should reject with ERR_POOL_CLOSED, but ${outcome(second)}`);
            }
            if (!h.isClosed && h.hold[w] !== 'held' && !second.admitted) {
              h.fail(`E11: W does not hold the slot its eviction freed, so W2 should have it, but W2 is ${outcome(second)}; order: ${order.join(', ')}`);
            }
          }
          await h.finish((r) => h.put(r));
        },
      ),
      fuzzOptions(300),
    );
  },
  fuzzTimeout,
);
