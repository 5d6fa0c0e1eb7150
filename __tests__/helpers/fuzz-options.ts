import type { Parameters } from 'fast-check';

/**
 * Run options for the property tests: a small budget in `npm test`, or what
 * `npm run fuzz -- --runs N [--seed S]` passes through FUZZ_RUNS and FUZZ_SEED.
 */
export function fuzzOptions<T>(ciRuns: number): Parameters<T> {
  const runs = Number.parseInt(process.env.FUZZ_RUNS ?? '', 10);
  const seed = Number.parseInt(process.env.FUZZ_SEED ?? '', 10);
  return {
    numRuns: Number.isInteger(runs) && runs > 0 ? runs : ciRuns,
    ...(Number.isInteger(seed) ? { seed } : {}),
  };
}

/** Jest's timeout for a property test: 30 s in CI, no practical limit while fuzzing. */
export const fuzzTimeout = process.env.FUZZ_RUNS === undefined ? 30_000 : 2 ** 31 - 1;
