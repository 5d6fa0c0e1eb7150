/**
 * A model-based test of the shared budget (lib/budget.ts): three parties, as
 * three threads would have, each a ResourcePool with its own entry in one
 * shared memory, here in one thread so that fast-check can drive them.
 * fast-check draws sequences of get (no signal, a pre-aborted one, or one
 * aborted later), put, release and abort over a few resources of each
 * party, whose allocate() and release() are sync or async; the bells between
 * parties are the real ones (Atomics.waitAsync).
 *
 * After every step, once everything has gone quiet: at most max resources
 * open (counted by the callbacks themselves, at every call), every party's
 * stats() the same process-wide counts and equal to what the callbacks say
 * is open, and no waiter left while a slot is free or an idle resource of
 * any party could be evicted for it. At the end: every get() settled, the
 * counts back to rest, every party closed.
 */
import fc from 'fast-check';
import { Memory, SharedBudget } from '../lib/budget.js';
import { ResourceLimitExceededError, ResourcePool, type PoolStats, type Resource } from '../lib/index.js';
import { fuzzOptions, fuzzTimeout } from './helpers/fuzz-options.js';

const PARTIES = 3;
const RESOURCES = 3;

type SignalKind = 'none' | 'aborted' | 'later';
type Hold = 'free' | 'getting' | 'held';

/** Lets every promise, immediate and bell (a waitAsync resolution is a task) run. */
async function quiet(): Promise<void> {
  for (let i = 0; i < 6; i++) await new Promise((resolve) => setImmediate(resolve));
}

const show = (s: PoolStats): string => `{inUse ${s.inUse}, idle ${s.idle}, releasing ${s.releasing}, waiting ${s.waiting}}`;

class World {
  readonly pools: ResourcePool[] = [];
  readonly resources: Resource[][] = [];
  readonly hold: Hold[][] = [];
  readonly controllers: (AbortController | undefined)[][] = [];
  /** Resources open, by the callbacks: allocate() called and release() not yet done. */
  open = 0;
  readonly pending = new Set<Promise<unknown>>();
  readonly violations: string[] = [];
  readonly trace: string[] = [];

  constructor(
    readonly max: number,
    readonly asyncRelease: boolean,
  ) {
    const memory = Memory.create(max);
    for (let p = 0; p < PARTIES; p++) {
      const budget = SharedBudget.join(memory, 0);
      if (budget === undefined) throw new Error(`party ${p} found no free seat in the shared budget`);
      const pool = new ResourcePool({ max, name: `party ${p}` }, budget);
      this.pools.push(pool);
      this.hold.push(Array.from({ length: RESOURCES }, () => 'free'));
      this.controllers.push(Array.from({ length: RESOURCES }, () => undefined));
      this.resources.push(
        Array.from({ length: RESOURCES }, () =>
          pool.create({
            allocate: () => {
              if (++this.open > max) this.violations.push(`S1: ${this.open} resources open, max ${max}`);
            },
            release: () => {
              if (!this.asyncRelease) return void this.open--;
              return Promise.resolve().then(() => void this.open--);
            },
          }),
        ),
      );
    }
  }

  get(p: number, r: number, kind: SignalKind): void {
    if (this.hold[p]![r] !== 'free') return;
    this.hold[p]![r] = 'getting';
    const controller = kind === 'later' ? new AbortController() : undefined;
    this.controllers[p]![r] = controller;
    const signal = kind === 'aborted' ? AbortSignal.abort() : controller?.signal;
    const got = this.resources[p]![r]!.get(signal).then(
      () => {
        this.hold[p]![r] = 'held';
      },
      (error: unknown) => {
        this.hold[p]![r] = 'free';
        if (!(error instanceof ResourceLimitExceededError) || kind === 'none') this.violations.push(`get() of p${p} r${r} (${kind}) rejected with ${String(error)}`);
      },
    );
    this.pending.add(got);
    void got.then(() => this.pending.delete(got));
  }

  put(p: number, r: number): void {
    if (this.hold[p]![r] !== 'held') return;
    this.hold[p]![r] = 'free';
    this.resources[p]![r]!.put();
  }

  release(p: number, r: number): void {
    if (this.hold[p]![r] !== 'held') return;
    this.hold[p]![r] = 'free';
    const released = this.resources[p]![r]!.release();
    this.pending.add(released);
    void released.then(() => this.pending.delete(released));
  }

  abort(p: number, r: number): void {
    this.controllers[p]![r]?.abort(new Error('given up'));
  }

  /** The invariants, once quiet. */
  check(step: string): void {
    const all = this.pools.map((pool) => pool.stats());
    const stats = all[0]!;
    for (const other of all) {
      if (show(other) !== show(stats)) this.violations.push(`after ${step}: parties disagree: ${all.map(show).join(' ')}`);
    }
    if (stats.inUse + stats.idle + stats.releasing > this.max) this.violations.push(`after ${step}: S1: ${show(stats)} over max ${this.max}`);
    if (stats.releasing !== 0) this.violations.push(`after ${step}: releasing at rest: ${show(stats)}`);
    if (stats.inUse + stats.idle !== this.open) this.violations.push(`after ${step}: stats ${show(stats)} but ${this.open} open by the callbacks`);
    // A waiter is left only when every slot is in use by a caller: a free slot or an idle resource is room for it.
    if (stats.waiting > 0 && stats.inUse !== this.max) this.violations.push(`after ${step}: a waiter left with room: ${show(stats)}, max ${this.max}`);
    const getting = this.hold.flat().filter((hold) => hold === 'getting').length;
    if (getting !== stats.waiting) this.violations.push(`after ${step}: ${getting} get() pending but ${stats.waiting} waiting`);
  }

  async finish(): Promise<void> {
    for (let p = 0; p < PARTIES; p++) for (let r = 0; r < RESOURCES; r++) this.abort(p, r);
    await quiet();
    for (let round = 0; round < PARTIES * RESOURCES + 1; round++) {
      for (let p = 0; p < PARTIES; p++) for (let r = 0; r < RESOURCES; r++) this.put(p, r);
      await quiet();
    }
    if (this.pending.size !== 0) this.violations.push(`at the end: ${this.pending.size} get() or release() unsettled`);
    this.check('putting everything back');
    await Promise.all(this.pools.map((pool) => pool.close()));
    const stats = this.pools[0]!.stats();
    if (stats.inUse + stats.idle + stats.releasing + stats.waiting !== 0 || this.open !== 0) {
      this.violations.push(`after close(): ${show(stats)}, ${this.open} open by the callbacks`);
    }
  }
}

type Command = fc.AsyncCommand<World, World, false>;

const party = fc.integer({ min: 0, max: PARTIES - 1 });
const resource = fc.integer({ min: 0, max: RESOURCES - 1 });

function step(name: string, act: (world: World) => void): Command {
  return {
    check: () => true,
    async run(_model, world) {
      act(world);
      await quiet();
      world.trace.push(name);
      world.check(name);
      if (world.violations.length > 0) throw new Error(`${world.violations.join('\n')}\ntrace: ${world.trace.join(', ')}`);
    },
    toString: () => name,
  };
}

const commands = fc.commands(
  [
    fc
      .tuple(party, resource, fc.constantFrom<SignalKind>('none', 'aborted', 'later'))
      .map(([p, r, kind]) => step(`get p${p} r${r} ${kind}`, (world) => world.get(p, r, kind))),
    fc.tuple(party, resource).map(([p, r]) => step(`put p${p} r${r}`, (world) => world.put(p, r))),
    fc.tuple(party, resource).map(([p, r]) => step(`release p${p} r${r}`, (world) => world.release(p, r))),
    fc.tuple(party, resource).map(([p, r]) => step(`abort p${p} r${r}`, (world) => world.abort(p, r))),
  ],
  { maxCommands: 40 },
);

test(
  'the shared budget: three parties never open more than max between them, agree on stats(), and leave no waiter while room exists',
  async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.boolean(), commands, async (max, asyncRelease, sequence) => {
        const world = new World(max, asyncRelease);
        await fc.asyncModelRun(() => ({ model: world, real: world }), sequence);
        await world.finish();
        if (world.violations.length > 0) throw new Error(`${world.violations.join('\n')}\ntrace: ${world.trace.join(', ')}`);
      }),
      fuzzOptions(150),
    );
  },
  fuzzTimeout,
);
