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
