// Runs the property tests with a fuzzing budget instead of the small one `npm test` uses:
//
//   npm run fuzz -- --runs 100000 [--seed N] [--no-build] [more jest options]
//
// The models (__tests__/model.test.ts, __tests__/budget.test.ts), the scheduler interleavings
// (__tests__/schedule.test.ts) and the seeded socket workloads (__tests__/workload.test.ts, one thread;
// __tests__/threads-workload.test.ts, worker threads; __tests__/http-workload.test.ts, requests
// destroyed at random through the HTTP agents; __tests__/undici-workload.test.ts, random
// aborts through createDispatcher()) read the budget from FUZZ_RUNS and
// the seed from FUZZ_SEED; without them they run their small CI budget. dist/ is rebuilt first
// (the workload's child processes import dist/index.js) unless --no-build is given. A failing
// property prints its seed and shrunk counterexample; rerun with that --seed to replay it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const files = [
  '__tests__/model.test.ts',
  '__tests__/schedule.test.ts',
  '__tests__/budget.test.ts',
  '__tests__/workload.test.ts',
  '__tests__/threads-workload.test.ts',
  '__tests__/http-workload.test.ts',
  '__tests__/undici-workload.test.ts',
];
const usage = 'usage: npm run fuzz -- --runs N [--seed S] [--no-build] [jest options]';

let runs = '1000';
let seed;
let build = true;
const jestArgs = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const [name, inline] = args[i].split(/=(.*)/s, 2);
  const value = () => inline ?? args[++i];
  if (name === '--runs') runs = value();
  else if (name === '--seed') seed = value();
  else if (name === '--no-build') build = false;
  else if (name === '--help' || name === '-h') {
    console.log(usage);
    process.exit(0);
  } else jestArgs.push(args[i]);
}
if (!/^[1-9][0-9]*$/.test(runs ?? '')) {
  console.error(`--runs must be a positive integer, received ${runs}\n${usage}`);
  process.exit(2);
}
if (seed !== undefined && !/^-?[0-9]+$/.test(seed)) {
  console.error(`--seed must be an integer, received ${seed}\n${usage}`);
  process.exit(2);
}

const present = files.filter((file) => existsSync(path.join(root, file)));
for (const file of files) if (!present.includes(file)) console.error(`fuzz: ${file} not found, skipped`);

const run = (args, env = process.env) => spawnSync(process.execPath, args, { cwd: root, env, stdio: 'inherit' }).status ?? 1;

if (build) {
  const status = run([path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json']);
  if (status !== 0) process.exit(status);
}
const env = { ...process.env, FUZZ_RUNS: runs, ...(seed === undefined ? {} : { FUZZ_SEED: seed }) };
console.error(`fuzz: ${runs} runs per property${seed === undefined ? '' : `, seed ${seed}`}: ${present.join(' ')}`);
process.exit(
  run(
    ['--experimental-vm-modules', '--no-warnings=ExperimentalWarning', 'node_modules/jest/bin/jest.js', '--runTestsByPath', ...present, ...jestArgs],
    env,
  ),
);
