/**
 * A seeded random workload over real sockets: many callers, several servers
 * that misbehave at random, dialers that fail, hang or are slow, signals that
 * abort at random moments, every way of letting go of a connection, the pool
 * closed mid-run in some seeds and connections dropped for the leak reclaim in
 * others. See helpers/workload-child.mjs for what one seed does and checks.
 *
 * Each seed runs in a child process (on dist/, like load.test.ts): its
 * /proc/self/fd holds client sockets only (the servers are in a process of
 * their own, helpers/workload-server.mjs), and jest's instrumentation stays
 * out of the way.
 *
 * Seeds: FUZZ_SEED (default 1) and the FUZZ_RUNS seeds from it (default 4
 * with no FUZZ_SEED, 1 with one). Replay a failing seed with
 *   FUZZ_SEED=<seed> npm test -- __tests__/workload.test.ts
 * or, without jest, `node --expose-gc __tests__/helpers/workload-child.mjs <seed>`.
 */
import { runWorkloadSeed } from './helpers/child.js';
import { fuzzSeeds } from './helpers/fuzz-options.js';

const seeds = fuzzSeeds();

test.each(seeds)(
  'S1 S2 S5 S7 S9 E1 E2 E3 E7 E9 E10 E11 E12: seeded workload %i: no byte crosses users or goes missing, never more than max sockets, every slot comes back',
  (seed) => runWorkloadSeed('workload-child.mjs', seed, '__tests__/workload.test.ts', [], { nodeFlags: ['--expose-gc'] }),
  90_000,
);
