/**
 * A model-based test of ResourcePool and Resource (pool.create()): fast-check
 * draws sequences of get (no signal, a pre-aborted one, or one aborted later),
 * put, release, scheduleRelease, abort, settling a slow allocate()/release(),
 * and pool.close(), over resources whose allocate() and release() are sync or
 * async, failing or not, slow or not (slow ones are settled by a command).
 *
 * After every step, once the pool has gone quiet (its own promises settled):
 * the contract's invariants (no negative counter, inUse + idle + releasing <=
 * max, allocate() never while the same resource's release() runs, at most max
 * resources open counted from the callbacks themselves), the contract's errors
 * for misuse with counters untouched, lawful outcomes for every get(), and
 * stats() equal to what the callbacks say is open. At the end: everything
 * settled, every get() settled, counters back to rest, every slot usable by a
 * fresh get(), and pool.close() resolved.
 */
import fc from 'fast-check';
import {
  ConnInUseError,
  ConnReleasedError,
  PoolClosedError,
  QueueFullError,
  ResourceLimitExceededError,
  ResourcePool,
  type PoolStats,
  type Resource,
} from '../lib/index.js';
import { fuzzOptions, fuzzTimeout } from './helpers/fuzz-options.js';

/** How one call of allocate() or release() behaves. The first shrinks best. */
type Mode = 'sync' | 'async' | 'slow' | 'sync-throw' | 'async-reject' | 'slow-reject';
const MODES: readonly Mode[] = ['sync', 'async', 'slow', 'sync-throw', 'async-reject', 'slow-reject'];
const failing = (mode: Mode): boolean => mode.endsWith('throw') || mode.endsWith('reject');

/** What the callbacks say about one resource: nothing, being allocated, allocated, being released. */
type Allocation = 'none' | 'allocating' | 'allocated' | 'releasing';
/** Who has the resource, as the caller sees it. */
type Hold = 'free' | 'getting' | 'held';
type SignalKind = 'none' | 'aborted' | 'later';

const RESOURCES = 4;

interface Config {
  max: number;
  maxWaiting: number;
  modes: { allocate: Mode[]; release: Mode[] }[];
}

class Outcome {
  settled = false;
  ok = false;
  error: unknown = undefined;
  constructor(promise: Promise<unknown>) {
    promise.then(
      () => {
        this.settled = true;
        this.ok = true;
      },
      (error: unknown) => {
        this.settled = true;
        this.error = error;
      },
    );
  }
  toString(): string {
    return !this.settled ? 'pending' : this.ok ? 'resolved' : `rejected with ${text(this.error)}`;
  }
}

interface GetRecord {
  id: number;
  r: number;
  signal: AbortSignal | undefined;
  controller: AbortController | undefined;
  reason: unknown;
  outcome: Outcome;
  /** Errors thrown by allocate() while this get() was pending: lawful rejections. */
  allocErrors: Set<unknown>;
  queueFullLawful: boolean;
  /** An immediate canceler that needed no wait must not be turned away. */
  rleForbidden: boolean;
}

/** One call of a release() callback. */
interface Invocation {
  settled: boolean;
  ok: boolean;
  error: unknown;
}

interface ReleaseCall {
  label: string;
  r: number;
  outcome: Outcome;
  /** real: must settle with its callback's result; noop: must resolve; lenient: resolve or a release error; misuse: ConnReleasedError. */
  kind: 'real' | 'noop' | 'lenient' | 'misuse';
  invocation: Invocation | undefined;
}

interface SlowOp {
  label: string;
  settle: () => void;
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

const sameStats = (a: PoolStats, b: PoolStats): boolean =>
  a.max === b.max && a.inUse === b.inUse && a.idle === b.idle && a.releasing === b.releasing && a.waiting === b.waiting;

const show = (s: PoolStats): string => `{inUse ${s.inUse}, idle ${s.idle}, releasing ${s.releasing}, waiting ${s.waiting}, max ${s.max}}`;

/** The pool under test, its resources, and the model of them (one object: check() needs the live state). */
class World {
  readonly pool: ResourcePool;
  readonly max: number;
  readonly maxWaiting: number;
  readonly modes: { allocate: Mode[]; release: Mode[] }[];
  readonly resources: Resource[] = [];
  readonly allocation: Allocation[] = [];
  readonly hold: Hold[] = [];
  /** How the last holder let go: 'put', 'release', or not known for sure (the contract leaves it open). */
  readonly lastEnd: ('put' | 'release' | 'unknown')[] = [];
  /** Whether scheduleRelease() is in force for the next put(): 'maybe' where the contract leaves it open. */
  readonly scheduled: ('none' | 'yes' | 'maybe')[] = [];
  readonly current: (GetRecord | undefined)[] = [];
  readonly invocations: Invocation[][] = [];
  readonly allocateCalls: number[] = [];
  readonly releaseCalls: number[] = [];
  readonly gets: GetRecord[] = [];
  readonly pendingGets = new Set<GetRecord>();
  readonly releases: ReleaseCall[] = [];
  readonly slow: SlowOp[] = [];
  readonly violations: string[] = [];
  readonly trace: string[] = [];
  readonly closes: Outcome[] = [];
  isClosed = false;

  constructor(config: Config) {
    this.max = config.max;
    this.maxWaiting = config.maxWaiting;
    this.modes = config.modes;
    this.pool = new ResourcePool({ max: config.max, maxWaiting: config.maxWaiting });
    for (let r = 0; r < config.modes.length; r++) this.addResource();
  }

  addResource(): number {
    const r = this.resources.length;
    this.modes[r] ??= { allocate: ['sync'], release: ['sync'] };
    this.allocation.push('none');
    this.hold.push('free');
    this.lastEnd.push('unknown');
    this.scheduled.push('none');
    this.current.push(undefined);
    this.invocations.push([]);
    this.allocateCalls.push(0);
    this.releaseCalls.push(0);
    this.resources.push(
      this.pool.create({
        allocate: (signal) => this.#allocate(r, signal),
        release: () => this.#release(r),
      }),
    );
    return r;
  }

  #allocate(r: number, _signal: AbortSignal | undefined): void | Promise<void> {
    const call = this.allocateCalls[r]!++;
    const list = this.modes[r]!.allocate;
    const mode = list[call % list.length]!;
    const state = this.allocation[r]!;
    if (state === 'releasing') this.violation(`E13: allocate() of r${r} ran while its release() was still in progress`);
    else if (state !== 'none') this.violation(`allocate() of r${r} ran while it was already ${state}`);
    this.allocation[r] = 'allocating';
    this.#checkOpen(`allocate() of r${r} started`);
    this.checkStats(`allocate() of r${r} started`);
    const error = new Error(`allocate() of r${r} failed (call ${call})`);
    this.current[r]?.allocErrors.add(error);
    const finish = (ok: boolean): void => {
      if (this.allocation[r] === 'allocating') this.allocation[r] = ok ? 'allocated' : 'none';
    };
    return this.#perform(mode, `allocate() of r${r}`, error, finish);
  }

  #release(r: number): void | Promise<void> {
    const call = this.releaseCalls[r]!++;
    const list = this.modes[r]!.release;
    const mode = list[call % list.length]!;
    if (this.allocation[r] !== 'allocated') this.violation(`release() of r${r} ran while it was ${this.allocation[r]}`);
    if (this.hold[r] === 'held') this.violation(`release() of r${r} ran while a caller held it`);
    this.allocation[r] = 'releasing';
    this.checkStats(`release() of r${r} started`);
    const invocation: Invocation = { settled: false, ok: !failing(mode), error: new Error(`release() of r${r} failed (call ${call})`) };
    this.invocations[r]!.push(invocation);
    const finish = (): void => {
      if (this.allocation[r] === 'releasing') this.allocation[r] = 'none';
      invocation.settled = true;
    };
    return this.#perform(mode, `release() of r${r}`, invocation.error, finish);
  }

  #perform(mode: Mode, label: string, error: unknown, finish: (ok: boolean) => void): void | Promise<void> {
    switch (mode) {
      case 'sync':
        return finish(true);
      case 'sync-throw':
        finish(false);
        throw error;
      case 'async':
        return Promise.resolve().then(() => finish(true));
      case 'async-reject':
        return Promise.resolve().then(() => {
          finish(false);
          throw error;
        });
      case 'slow':
      case 'slow-reject':
        return new Promise<void>((resolve, reject) => {
          const ok = mode === 'slow';
          this.slow.push({
            label: `${label} ${ok ? 'succeeds' : 'fails'}`,
            settle: () => {
              finish(ok);
              if (ok) resolve();
              else reject(error);
            },
          });
        });
    }
  }

  violation(message: string): void {
    this.violations.push(message);
  }

  log(line: string): void {
    this.trace.push(`${line}  -> ${show(this.pool.stats())}`);
  }

  fail(message: string): never {
    const states = this.resources
      .map((_, r) => `r${r}: ${this.hold[r]}/${this.allocation[r]}`)
      .filter((s) => !s.endsWith('free/none'))
      .join(', ');
    throw new Error(
      `${message}\n  stats now ${show(this.pool.stats())}; resources ${states || 'all free'}\n  trace:\n    ${this.trace.slice(-40).join('\n    ')}`,
    );
  }

  /** Counts the callbacks say are open (allocating, allocated or releasing): S1 counted for real. */
  #checkOpen(when: string): void {
    const open = this.allocation.filter((s) => s !== 'none').length;
    if (open > this.max) this.violation(`S1: ${open} resources open (allocating, allocated or releasing) > max ${this.max} when ${when}`);
  }

  checkStats(when: string): void {
    const s = this.pool.stats();
    if (s.inUse < 0 || s.idle < 0 || s.releasing < 0 || s.waiting < 0) this.violation(`negative counter when ${when}: ${show(s)}`);
    if (s.inUse + s.idle + s.releasing > this.max) this.violation(`S1: inUse + idle + releasing > max when ${when}: ${show(s)}`);
  }

  async flush(): Promise<void> {
    await tick();
    await tick();
  }

  count(state: Allocation): number {
    return this.allocation.filter((s) => s === state).length;
  }

  /** No release() callback is running and no allocation runs without a get() waiting on it: predictions are exact. */
  isQuiet(): boolean {
    return this.count('releasing') === 0 && this.allocation.every((s, r) => s !== 'allocating' || this.hold[r] === 'getting');
  }

  /** Pending get() calls not inside allocate(): waiters (for a slot, or for an eviction). */
  queued(): number {
    let n = 0;
    for (const rec of this.pendingGets) if (this.allocation[rec.r] !== 'allocating') n++;
    return n;
  }

  /** Whether a get()'s rejection is one the contract allows; a description of what is wrong if not. */
  #unlawful(rec: GetRecord, error: unknown): string | undefined {
    if (isError(error, ResourceLimitExceededError, 'ERR_RESOURCE_LIMIT_EXCEEDED')) {
      if (rec.signal?.aborted !== true) return 'ERR_RESOURCE_LIMIT_EXCEEDED although its signal was not aborted';
      if ((error as Error).cause !== rec.reason) return "ERR_RESOURCE_LIMIT_EXCEEDED whose cause is not the signal's reason";
      if (rec.rleForbidden) return 'S2: the immediate canceler was turned away although no wait was needed';
      return undefined;
    }
    if (rec.signal?.aborted === true && error === rec.reason) return undefined;
    if (isError(error, PoolClosedError, 'ERR_POOL_CLOSED')) return this.isClosed ? undefined : 'ERR_POOL_CLOSED before close()';
    if (isError(error, QueueFullError, 'ERR_QUEUE_FULL')) {
      return rec.queueFullLawful ? undefined : `E8: ERR_QUEUE_FULL with fewer than maxWaiting (${this.maxWaiting}) waiters`;
    }
    if (rec.allocErrors.has(error)) return undefined;
    return `an unexpected rejection: ${text(error)}`;
  }

  /** Brings the model up to date with what settled, then checks stats() against it. */
  reconcile(when: string): void {
    if (this.violations.length > 0) this.fail(`${this.violations[0]!} (found after ${when})`);
    this.checkStats(when);
    if (this.violations.length > 0) this.fail(this.violations[0]!);
    for (const rec of this.pendingGets) {
      if (!rec.outcome.settled) continue;
      this.pendingGets.delete(rec);
      const { r } = rec;
      if (this.current[r] === rec) this.current[r] = undefined;
      if (rec.outcome.ok) {
        if (this.allocation[r] !== 'allocated') this.fail(`get#${rec.id} of r${r} resolved but r${r} is ${this.allocation[r]}`);
        this.hold[r] = 'held';
        this.lastEnd[r] = 'unknown';
        this.current[r] = rec;
      } else {
        const wrong = this.#unlawful(rec, rec.outcome.error);
        if (wrong !== undefined) this.fail(`get#${rec.id} of r${r}: ${wrong}`);
        this.hold[r] = 'free';
        this.lastEnd[r] = 'unknown';
        if (this.scheduled[r] !== 'none') this.scheduled[r] = 'maybe';
      }
      this.log(`  => get#${rec.id} of r${r} ${rec.outcome}`);
    }
    for (const call of this.releases) this.#reconcileRelease(call);
    for (let r = 0; r < this.resources.length; r++) {
      if (this.hold[r] === 'held' && this.allocation[r] !== 'allocated') this.fail(`r${r} is held but ${this.allocation[r]}`);
    }

    const s = this.pool.stats();
    const held = this.hold.filter((h) => h === 'held').length;
    const allocating = this.count('allocating');
    const releasing = this.count('releasing');
    const idle = this.count('allocated') - held;
    const queued = this.queued();
    // A get() waiting for its own release() to finish may already count as in use (the contract leaves it open).
    const ownRelease = [...this.pendingGets].filter((rec) => this.allocation[rec.r] === 'releasing').length;
    const expected = `held ${held}, allocating ${allocating}, idle ${idle}, releasing ${releasing}, waiting ${queued} (${ownRelease} for their own release())`;
    if (s.idle !== idle) this.fail(`stats().idle is ${s.idle}, the callbacks say ${idle} are idle (${expected})`);
    const slots = s.inUse + s.releasing;
    const open = held + allocating + releasing;
    if (slots < open || slots > open + ownRelease || s.inUse < held + allocating || s.releasing > releasing) {
      this.fail(`stats() ${show(s)} does not match the callbacks (${expected})`);
    }
    // Not waiting: those inside an eviction (one per release() running) and those already counted in use.
    if (s.waiting > queued || s.waiting < queued - releasing - (s.inUse - held - allocating)) {
      this.fail(`stats().waiting is ${s.waiting} (${expected})`);
    }
    if (this.isClosed && s.waiting !== 0) this.fail(`E7: ${s.waiting} still waiting after close()`);
    if (this.isQuiet() && queued > 0 && s.inUse < this.max) {
      this.fail(`S2: ${queued} get() waiting while a slot is free and nothing is being released (${expected})`);
    }
    if (this.isClosed) {
      const open = this.allocation.filter((a) => a !== 'none').length;
      for (const close of this.closes) {
        if (close.settled && open > 0) this.fail(`E7: pool.close() resolved while ${open} resources are still open`);
        if (close.settled && !close.ok) this.fail(`E7: pool.close() rejected: ${text(close.error)}`);
        if (!close.settled && open === 0 && s.inUse + s.idle + s.releasing === 0 && this.pendingGets.size === 0) {
          this.fail('E7: pool.close() has not resolved although nothing is open');
        }
      }
    }
  }

  #reconcileRelease(call: ReleaseCall): void {
    if (call.kind === 'real') {
      const inv = call.invocation!;
      if (!inv.settled) {
        if (call.outcome.settled) this.fail(`${call.label} settled before its release() callback finished`);
        return;
      }
      if (!call.outcome.settled) this.fail(`${call.label} still pending after its release() callback finished`);
      if (inv.ok && !call.outcome.ok) this.fail(`${call.label} rejected (${text(call.outcome.error)}) though release() succeeded`);
      if (!inv.ok && call.outcome.error !== inv.error) {
        this.fail(`${call.label} should reject with release()'s error, but ${call.outcome}`);
      }
    } else if (call.kind === 'noop') {
      if (!call.outcome.ok) this.fail(`${call.label} of a resource with nothing to release: ${call.outcome}, expected resolved`);
    } else if (call.kind === 'misuse') {
      if (!isError(call.outcome.error, ConnReleasedError, 'ERR_CONN_RELEASED')) {
        this.fail(`E13: ${call.label} during its own pending get() should reject with ERR_CONN_RELEASED, but ${call.outcome}`);
      }
    } else {
      if (!call.outcome.settled) return;
      const errors = this.invocations[call.r]!.map((inv) => inv.error);
      if (!call.outcome.ok && !errors.includes(call.outcome.error)) this.fail(`${call.label} ${call.outcome}`);
    }
    this.releases.splice(this.releases.indexOf(call), 1);
  }

  /** Records a call of release() or scheduleRelease(); a 'real' one must have called the callback once. */
  async release(label: string, r: number, kind: ReleaseCall['kind'], promise: Promise<void>, invocationsBefore: number): Promise<void> {
    const call: ReleaseCall = { label, r, kind, outcome: new Outcome(promise), invocation: undefined };
    this.releases.push(call);
    await this.flush();
    const invs = this.invocations[r]!;
    if (kind === 'real') {
      if (invs.length !== invocationsBefore + 1) this.fail(`${label} called the release() callback ${invs.length - invocationsBefore} times, expected once`);
      call.invocation = invs[invocationsBefore];
    }
  }

  /** Settles whatever is slow until nothing is left to settle and nobody holds anything. */
  async settleEverything(): Promise<void> {
    for (let round = 0; round < 500; round++) {
      await this.flush();
      this.reconcile('settling everything');
      const op = this.slow.shift();
      if (op !== undefined) {
        op.settle();
        this.log(`(end) ${op.label}`);
        continue;
      }
      const r = this.hold.indexOf('held');
      if (r !== -1) {
        await new Put(r).run(this);
        continue;
      }
      return;
    }
    this.fail('the pool did not come to rest');
  }

  async finish(): Promise<void> {
    await this.settleEverything();
    for (const rec of this.pendingGets) this.fail(`S3/E7: get#${rec.id} of r${rec.r} never settled`);
    if (this.releases.length > 0) this.fail(`${this.releases[0]!.label} never settled`);
    const s = this.pool.stats();
    if (s.inUse !== 0 || s.waiting !== 0 || s.releasing !== 0) this.fail(`at rest, stats() should show only idle resources: ${show(s)}`);

    if (!this.isClosed) {
      // No slot lost: every slot can be taken by a fresh get() with the immediate canceler (evicting idle ones).
      const fresh: number[] = [];
      for (let k = 0; k < this.max; k++) {
        const r = this.addResource();
        fresh.push(r);
        await new Get(r, 'aborted').run(this);
        const rec = this.gets[this.gets.length - 1]!;
        for (let round = 0; round < 100 && !rec.outcome.settled; round++) {
          const op = this.slow.shift(); // an eviction may wait for a slow release()
          if (op === undefined) break;
          op.settle();
          this.log(`(end) ${op.label}`);
          await this.flush();
          this.reconcile(`fresh get() ${k + 1} of ${this.max}`);
        }
        if (!rec.outcome.ok) this.fail(`slot lost: a fresh get() ${k + 1} of max ${this.max}, with nothing else held, ${rec.outcome}`);
      }
      for (const r of fresh) await new Release(r).run(this);
      await this.settleEverything();
    }

    this.isClosed = true;
    const closed = new Outcome(this.pool.close());
    this.closes.push(closed);
    this.log('(end) pool.close()');
    await this.settleEverything();
    if (!closed.ok) this.fail(`E7: pool.close() ${closed}`);
    const end = this.pool.stats();
    if (end.inUse + end.idle + end.releasing + end.waiting !== 0) this.fail(`E7: after close() stats() should be all 0: ${show(end)}`);
    const open = this.allocation.filter((a) => a !== 'none').length;
    if (open !== 0) this.fail(`E7: ${open} resources still allocated after pool.close() resolved`);
  }
}

type Command = fc.AsyncCommand<World, World>;

class Get implements Command {
  constructor(
    readonly r: number,
    readonly signalKind: SignalKind,
  ) {}
  check = (): boolean => true;
  async run(w: World): Promise<void> {
    const { r } = this;
    const resource = w.resources[r]!;
    const id = w.gets.length;
    let controller: AbortController | undefined;
    let signal: AbortSignal | undefined;
    const reason = new Error(`signal of get#${id} aborted`);
    if (this.signalKind === 'aborted') signal = AbortSignal.abort(reason);
    if (this.signalKind === 'later') {
      controller = new AbortController();
      signal = controller.signal;
    }
    const before = w.pool.stats();
    const label = `get#${id} of r${r}${this.signalKind === 'none' ? '' : ` (signal ${this.signalKind})`}`;

    if (w.hold[r] !== 'free') {
      const misuse = new Outcome(resource.get(signal));
      await w.flush();
      w.log(`get() of r${r} while ${w.hold[r]}: ${misuse}`);
      const lawful = isError(misuse.error, ConnInUseError, 'ERR_CONN_IN_USE') || (w.isClosed && isError(misuse.error, PoolClosedError, 'ERR_POOL_CLOSED'));
      if (!lawful) w.fail(`E13: get() of r${r} while ${w.hold[r]} should reject with ERR_CONN_IN_USE, but ${misuse}`);
      const after = w.pool.stats();
      if (!sameStats(before, after)) w.fail(`E13: get() of r${r} while ${w.hold[r]} changed stats() from ${show(before)} to ${show(after)}`);
      w.reconcile(label);
      return;
    }

    const quiet = w.isQuiet();
    const queued = w.queued();
    const mustWait = queued > 0 || before.inUse >= w.max;
    const rec: GetRecord = {
      id,
      r,
      signal,
      controller,
      reason,
      outcome: undefined as unknown as Outcome,
      allocErrors: new Set(),
      queueFullLawful: queued >= w.maxWaiting,
      rleForbidden: this.signalKind === 'aborted' && quiet && !mustWait,
    };
    w.gets.push(rec);
    w.pendingGets.add(rec);
    w.hold[r] = 'getting';
    w.current[r] = rec;
    rec.outcome = new Outcome(resource.get(signal));
    await w.flush();
    w.log(`${label}${rec.outcome.settled ? '' : ': pending'}`);
    const { outcome } = rec;
    if (w.isClosed) {
      if (!isError(outcome.error, PoolClosedError, 'ERR_POOL_CLOSED')) w.fail(`E7: ${label} after close() should reject with ERR_POOL_CLOSED, but ${outcome}`);
    } else if (quiet) {
      const queueFull = queued >= w.maxWaiting && mustWait;
      const full = isError(outcome.error, QueueFullError, 'ERR_QUEUE_FULL');
      const turnedAway = isError(outcome.error, ResourceLimitExceededError, 'ERR_RESOURCE_LIMIT_EXCEEDED');
      if (this.signalKind === 'aborted' && mustWait) {
        if (!turnedAway && !(queueFull && full)) {
          w.fail(`S2: ${label}, the immediate canceler, should be turned away when it would wait (${queued} waiting, inUse ${before.inUse} of ${w.max}), but ${outcome}`);
        }
      } else if (queueFull && !full) {
        w.fail(`E8: ${label} should reject with ERR_QUEUE_FULL (${queued} waiting, maxWaiting ${w.maxWaiting}), but ${outcome}`);
      }
    }
    w.reconcile(label);
  }
  toString(): string {
    return `get(r${this.r}${this.signalKind === 'none' ? '' : `, signal ${this.signalKind}`})`;
  }
}

class Put implements Command {
  constructor(readonly r: number) {}
  check = (): boolean => true;
  async run(w: World): Promise<void> {
    const { r } = this;
    const hold = w.hold[r]!;
    const before = w.pool.stats();
    const invocationsBefore = w.invocations[r]!.length;
    const mustRelease = hold === 'held' && (w.isClosed || w.scheduled[r] === 'yes');
    const mayRelease = mustRelease || w.scheduled[r] === 'maybe' || w.queued() > 0;
    if (hold === 'held') w.hold[r] = 'free';
    let thrown: { error: unknown } | undefined;
    try {
      w.resources[r]!.put();
    } catch (error) {
      thrown = { error };
    }
    const afterCall = w.pool.stats();
    await w.flush();
    w.log(`put(r${r}) while ${hold}${thrown === undefined ? '' : `: threw ${text(thrown.error)}`}`);
    const threwReleased = thrown !== undefined && isError(thrown.error, ConnReleasedError, 'ERR_CONN_RELEASED');
    if (hold === 'held') {
      if (thrown !== undefined) w.fail(`put() of held r${r} threw ${text(thrown.error)}`);
      w.lastEnd[r] = 'put';
      w.scheduled[r] = 'none';
      const released = w.invocations[r]!.length > invocationsBefore;
      if (mustRelease && !released) w.fail(`put() of r${r} should release it (${w.isClosed ? 'pool closed' : 'scheduleRelease() asked'}), but it did not`);
      if (!mayRelease && released) w.fail(`put() of r${r} released it instead of keeping it idle`);
    } else {
      const ok = hold === 'getting' || w.lastEnd[r] === 'put' ? threwReleased : w.lastEnd[r] === 'release' ? thrown === undefined : thrown === undefined || threwReleased;
      if (!ok) {
        const expected = hold === 'getting' || w.lastEnd[r] === 'put' ? 'throw ERR_CONN_RELEASED' : 'do nothing';
        const what = hold === 'getting' ? 'during its own pending get()' : `after ${w.lastEnd[r]}`;
        w.fail(`E13: put() of r${r} ${what} should ${expected}, but ${thrown === undefined ? 'returned' : `threw ${text(thrown.error)}`}`);
      }
      const after = w.pool.stats();
      if (!sameStats(before, afterCall) || !sameStats(before, after)) {
        w.fail(`E13: put() of r${r} while ${hold} changed stats() from ${show(before)} to ${show(afterCall)}, then ${show(after)}`);
      }
    }
    w.reconcile(`put(r${r})`);
  }
  toString(): string {
    return `put(r${this.r})`;
  }
}

class Release implements Command {
  constructor(readonly r: number) {}
  check = (): boolean => true;
  async run(w: World): Promise<void> {
    const { r } = this;
    const hold = w.hold[r]!;
    const allocation = w.allocation[r]!;
    const before = w.pool.stats();
    const invocationsBefore = w.invocations[r]!.length;
    const label = `release(r${r}) while ${hold}/${allocation}`;
    let kind: ReleaseCall['kind'];
    if (hold === 'getting') kind = 'misuse';
    else if (allocation === 'allocated') kind = 'real';
    else if (allocation === 'none') kind = 'noop';
    else kind = 'lenient';
    if (hold === 'held') {
      w.hold[r] = 'free';
      w.lastEnd[r] = 'release';
      if (w.scheduled[r] !== 'none') w.scheduled[r] = 'maybe';
    } else if (hold === 'free' && w.lastEnd[r] !== 'release') {
      w.lastEnd[r] = 'unknown'; // put, release of the idle allocation, put: "after release()" or "a second put()"?
    }
    const promise = w.resources[r]!.release();
    const afterCall = w.pool.stats();
    await w.release(label, r, kind, promise, invocationsBefore);
    w.log(label);
    if (kind === 'misuse' || kind === 'noop') {
      const after = w.pool.stats();
      if (!sameStats(before, afterCall) || !sameStats(before, after)) {
        w.fail(`E13: ${label} changed stats() from ${show(before)} to ${show(afterCall)}, then ${show(after)}`);
      }
      if (w.invocations[r]!.length !== invocationsBefore) w.fail(`E13: ${label} called the release() callback`);
    }
    w.reconcile(label);
  }
  toString(): string {
    return `release(r${this.r})`;
  }
}

class ScheduleRelease implements Command {
  constructor(readonly r: number) {}
  check = (): boolean => true;
  async run(w: World): Promise<void> {
    const { r } = this;
    const hold = w.hold[r]!;
    const allocation = w.allocation[r]!;
    const invocationsBefore = w.invocations[r]!.length;
    const label = `scheduleRelease(r${r}) while ${hold}/${allocation}`;
    let kind: ReleaseCall['kind'];
    if (hold === 'held') {
      kind = 'noop';
      w.scheduled[r] = 'yes';
    } else if (hold === 'getting') {
      kind = 'lenient'; // the contract does not say: release the idle allocation now, at the put() after this get(), or not at all
      w.scheduled[r] = 'maybe';
    } else if (allocation === 'allocated') {
      kind = 'real';
      if (w.lastEnd[r] === 'put') w.lastEnd[r] = 'unknown';
    } else {
      kind = allocation === 'none' ? 'noop' : 'lenient';
    }
    await w.release(label, r, kind, w.resources[r]!.scheduleRelease(), invocationsBefore);
    w.log(label);
    if (hold === 'held' && w.invocations[r]!.length !== invocationsBefore) w.fail(`${label}: released at once, not at its put()`);
    w.reconcile(label);
  }
  toString(): string {
    return `scheduleRelease(r${this.r})`;
  }
}

class Abort implements Command {
  constructor(readonly k: number) {}
  #candidates(w: World): GetRecord[] {
    return w.gets.filter((rec) => rec.controller !== undefined && !rec.controller.signal.aborted);
  }
  check = (w: Readonly<World>): boolean => this.#candidates(w as World).length > 0;
  async run(w: World): Promise<void> {
    const candidates = this.#candidates(w);
    const rec = candidates[this.k % candidates.length]!;
    const pending = w.pendingGets.has(rec);
    const waiting = pending && w.allocation[rec.r] !== 'allocating';
    const phase = !pending ? 'settled' : !waiting ? 'in allocate()' : w.allocation[rec.r] === 'releasing' ? 'waiting for its own release() to finish' : 'waiting';
    const label = `abort the signal of get#${rec.id} of r${rec.r} (${phase})`;
    rec.controller!.abort(rec.reason);
    await w.flush();
    w.log(`${label}: get ${rec.outcome}`);
    if (waiting) {
      const { outcome } = rec;
      if (!isError(outcome.error, ResourceLimitExceededError, 'ERR_RESOURCE_LIMIT_EXCEEDED') || (outcome.error as Error).cause !== rec.reason) {
        w.fail(`S2/E11: ${label} should reject it at once with ERR_RESOURCE_LIMIT_EXCEEDED (cause: the reason), but ${outcome}`);
      }
    }
    w.reconcile(label);
  }
  toString(): string {
    return `abort(#${this.k})`;
  }
}

class Settle implements Command {
  constructor(readonly k: number) {}
  check = (w: Readonly<World>): boolean => w.slow.length > 0;
  async run(w: World): Promise<void> {
    const [op] = w.slow.splice(this.k % w.slow.length, 1);
    op!.settle();
    await w.flush();
    w.log(op!.label);
    w.reconcile(op!.label);
  }
  toString(): string {
    return `settle(#${this.k})`;
  }
}

class Close implements Command {
  check = (w: Readonly<World>): boolean => !w.isClosed;
  async run(w: World): Promise<void> {
    const quiet = w.isQuiet();
    const waiters = [...w.pendingGets].filter((rec) => w.allocation[rec.r] !== 'allocating');
    w.isClosed = true;
    w.closes.push(new Outcome(w.pool.close()));
    await w.flush();
    w.log('pool.close()');
    if (quiet) {
      for (const rec of waiters) {
        if (!isError(rec.outcome.error, PoolClosedError, 'ERR_POOL_CLOSED')) {
          w.fail(`E7: close() should reject waiting get#${rec.id} of r${rec.r} with ERR_POOL_CLOSED, but ${rec.outcome}`);
        }
      }
    }
    w.reconcile('pool.close()');
  }
  toString(): string {
    return 'pool.close()';
  }
}

const resourceArb = fc.nat({ max: RESOURCES - 1 });
const signalArb = fc.constantFrom<SignalKind>('none', 'later', 'aborted');
const commandsArb = fc.commands<World, World, false>(
  [
    fc.oneof(
      { weight: 6, arbitrary: fc.record({ r: resourceArb, s: signalArb }).map(({ r, s }): Command => new Get(r, s)) },
      { weight: 3, arbitrary: resourceArb.map((r): Command => new Put(r)) },
      { weight: 1, arbitrary: resourceArb.map((r): Command => new Release(r)) },
      { weight: 1, arbitrary: resourceArb.map((r): Command => new ScheduleRelease(r)) },
      { weight: 2, arbitrary: fc.nat({ max: 7 }).map((k): Command => new Abort(k)) },
      { weight: 3, arbitrary: fc.nat({ max: 7 }).map((k): Command => new Settle(k)) },
      { weight: 1, arbitrary: fc.constant<Command>(new Close()) },
    ),
  ],
  { maxCommands: 40, size: 'medium' },
);
const modesArb = fc.array(fc.constantFrom(...MODES), { minLength: 1, maxLength: 3 });
const configArb: fc.Arbitrary<Config> = fc.record({
  max: fc.integer({ min: 1, max: 3 }),
  maxWaiting: fc.oneof(fc.constant(Number.POSITIVE_INFINITY), fc.integer({ min: 0, max: 2 })),
  modes: fc.array(fc.record({ allocate: modesArb, release: modesArb }), { minLength: RESOURCES, maxLength: RESOURCES }),
});

/** Shrunk counterexamples found before, replayed on every run: [changes to the all-sync config, commands]. */
function example(max: number, slow: { allocate?: Mode[]; release?: Mode[] }, commands: Command[]): [Config, Iterable<Command>] {
  const modes = Array.from({ length: RESOURCES }, (_, r): Config['modes'][number] => ({
    allocate: r === 0 ? (slow.allocate ?? ['sync']) : ['sync'],
    release: r === 0 ? (slow.release ?? ['sync']) : ['sync'],
  }));
  return [{ max, maxWaiting: Number.POSITIVE_INFINITY, modes }, commands];
}
const examples: [Config, Iterable<Command>][] = [
  // E13: release() during its own pending get() resolved (and put() returned) instead of ERR_CONN_RELEASED.
  example(1, { allocate: ['slow'] }, [new Get(0, 'none'), new Release(0)]),
  example(1, {}, [new Get(0, 'none'), new Release(0), new Get(1, 'none'), new Get(0, 'none'), new Put(0)]),
  // E13: allocate() ran while the same resource's release() was still in progress.
  example(2, { release: ['slow'] }, [new Get(0, 'none'), new Release(0), new Get(0, 'none')]),
  // E11: an abort while waiting for an eviction was ignored until the eviction ended.
  example(1, { release: ['slow'] }, [new Get(0, 'none'), new Put(0), new Get(1, 'later'), new Abort(0)]),
  // E11/E13: an abort while waiting for its own release() to finish was ignored.
  example(2, { release: ['slow'] }, [new Get(0, 'none'), new Release(0), new Get(0, 'later'), new Abort(0)]),
  // E11/E13: the same once its idle allocation was evicted while it waited (the E13 example).
  example(2, { release: ['slow'] }, [new Get(0, 'none'), new Put(0), new Get(1, 'none'), new Get(2, 'none'), new Get(0, 'later'), new Put(1), new Abort(0)]),
];

test(
  'S1/S2/E7/E8/E13: a model of ResourcePool and Resource holds after every step of any sequence of get, put, release, scheduleRelease, abort and close',
  async () => {
    await fc.assert(
      fc.asyncProperty(configArb, commandsArb, async (config, commands) => {
        let world: World | undefined;
        await fc.asyncModelRun(() => {
          world = new World({ ...config, modes: config.modes.map((m) => ({ ...m })) });
          return { model: world, real: world };
        }, commands);
        await world!.finish();
      }),
      { ...fuzzOptions<[Config, Iterable<Command>]>(1000), examples },
    );
  },
  fuzzTimeout,
);
