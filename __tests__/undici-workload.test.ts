/**
 * A seeded random workload through createDispatcher(): requests (undici's
 * request() and fetch()) to servers that answer at once, in chunks, late,
 * never, or cut the response short, aborted at random moments (before they
 * are sent, waiting for a slot, connecting, waiting for headers, mid-body),
 * bodies destroyed or dumped, raw connections sharing the pool, and the
 * dispatcher closed or destroyed mid-run in some seeds. See
 * helpers/undici-workload-child.mjs for what one seed does and checks.
 *
 * Each seed runs in a child process (on dist/): its /proc/self/fd holds
 * client sockets only (the servers are in helpers/undici-workload-server.mjs).
 *
 * Seeds: FUZZ_SEED (default 1) and the FUZZ_RUNS seeds from it (default 4
 * with no FUZZ_SEED, 1 with one). Replay a failing seed with
 *   FUZZ_SEED=<seed> npm test -- __tests__/undici-workload.test.ts
 * or, without jest, `node __tests__/helpers/undici-workload-child.mjs <seed>`
 * (STOCK=1 sends the same requests through undici's own Agent).
 */
import { runWorkloadSeed } from './helpers/child.js';
import { fuzzSeeds } from './helpers/fuzz-options.js';

const seeds = fuzzSeeds();

test.each(seeds)(
  'S1 SPEC(createDispatcher): seeded random-abort workload %i: every request settles with an outcome its fate allows, no body crosses requests, never more than max sockets, no slot or waiter left at quiescence',
  (seed) => runWorkloadSeed('undici-workload-child.mjs', seed, '__tests__/undici-workload.test.ts'),
  90_000,
);
