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

function integerFromEnv(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`${name} must be an integer, received ${JSON.stringify(text)}`);
  return value;
}

/**
 * The seeds of a seeded workload: FUZZ_SEED (default 1) and the FUZZ_RUNS
 * seeds from it (default `ciRuns` with no FUZZ_SEED, 1 with one).
 */
export function fuzzSeeds(ciRuns = 4): number[] {
  const firstSeed = integerFromEnv('FUZZ_SEED');
  const runs = integerFromEnv('FUZZ_RUNS') ?? (firstSeed === undefined ? ciRuns : 1);
  if (runs < 1) throw new Error(`FUZZ_RUNS must be at least 1, received ${runs}`);
  return Array.from({ length: runs }, (_, i) => (firstSeed ?? 1) + i);
}
