import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ChildOptions {
  /** Runs the child under `ulimit -n` this many file descriptors. */
  ulimit?: number;
  /** Extra flags for node, e.g. `--expose-gc`. */
  nodeFlags?: string[];
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs `script` as an ES module in a fresh node process with `args`
 * (`process.argv[1]` on) and parses the last line it prints as JSON.
 */
export function runModule<T>(script: string, args: string[] = [], options: ChildOptions = {}): Promise<T> {
  return run<T>([...(options.nodeFlags ?? []), '--input-type=module', '-e', script, ...args], options);
}

/**
 * Runs one of the `.mjs` scripts in this folder (they import the built
 * dist/index.js) with `args` (`process.argv[2]` on) and parses the last line
 * it prints as JSON. Work runs there rather than in jest when jest's own
 * instrumentation (`--detectOpenHandles` hooks every async resource) would
 * make it many times slower, or would add allocations to what is measured.
 */
export function runScript<T>(name: string, args: string[] = [], options: ChildOptions = {}): Promise<T> {
  const path = fileURLToPath(new URL(name, import.meta.url));
  return run<T>([...(options.nodeFlags ?? []), path, ...args], options);
}

function run<T>(node: string[], options: ChildOptions): Promise<T> {
  const [file, argv] =
    options.ulimit === undefined
      ? [process.execPath, node]
      : ['/bin/sh', ['-c', `ulimit -n ${options.ulimit} && exec "$@"`, 'sh', process.execPath, ...node]];
  return new Promise<T>((resolve, reject) => {
    const env = { ...process.env, ...options.env };
    execFile(file, argv, { encoding: 'utf8', env, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null) return reject(Object.assign(error, { stdout, stderr }));
      const lines = stdout.trim().split('\n');
      try {
        resolve(JSON.parse(lines[lines.length - 1]!) as T);
      } catch {
        reject(new Error(`child printed no JSON:\n${stdout}\n${stderr}`));
      }
    });
  });
}

/** What a seeded workload's child script prints: its seed, what broke, and figures to show if anything did. */
export interface WorkloadOutcome {
  seed: number;
  failures: string[];
  summary: Record<string, unknown>;
}

/**
 * Runs one seed of a workload child script (`<script> <seed> ...args`) and
 * throws, with how to replay it from `testFile`, if it crashed or reported failures.
 */
export async function runWorkloadSeed(script: string, seed: number, testFile: string, args: string[] = [], options: ChildOptions = {}): Promise<void> {
  const what = `${script.replace(/-child\.mjs$/, '')} seed ${seed}`;
  const replay = `replay with FUZZ_SEED=${seed} npm test -- ${testFile}`;
  let outcome: WorkloadOutcome;
  try {
    outcome = await runScript<WorkloadOutcome>(script, [String(seed), ...args], options);
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(
      `${what} crashed (${replay}): ${(error as Error).message}\n` +
        `stdout: ${stdout?.slice(-2_000) ?? ''}\nstderr: ${stderr?.slice(-4_000) ?? ''}`,
    );
  }
  if (outcome.failures.length > 0) {
    throw new Error(`${what} failed (${replay}):\n- ${outcome.failures.join('\n- ')}\nsummary: ${JSON.stringify(outcome.summary)}`);
  }
}
