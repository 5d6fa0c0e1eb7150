/**
 * Runs every example in its own Node process, in turn, and fails (exit code
 * 1) if any of them exits with another code or does not exit by itself
 * in time (a minute, unless said otherwise): each example must close what it opens.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Each example, with its arguments and how long it may take. */
const EXAMPLES: { name: string; args?: string[]; timeoutMs?: number }[] = [
  { name: 'echo-client' },
  { name: 'tls-custom-ca' },
  { name: 'shared-budget' },
  { name: 'worker-threads' },
  { name: 'demo' },
  // A tenth of its default load (about 30 s on two cores instead of a minute): still far past ulimit -n 256.
  { name: 'http-fanout', args: ['2000', '200'], timeoutMs: 120_000 },
];
const failed: string[] = [];

for (const { name, args = [], timeoutMs = 60_000 } of EXAMPLES) {
  console.log(`\n=== ${[name, ...args].join(' ')}`);
  const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  const result = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit', timeout: timeoutMs });
  if (result.status !== 0) {
    const why = result.error?.message ?? (result.signal !== null ? `killed by ${result.signal}` : `exit code ${result.status}`);
    console.error(`=== ${name} FAILED (${why})`);
    failed.push(name);
  }
}

console.log(`\n${EXAMPLES.length - failed.length}/${EXAMPLES.length} examples passed${failed.length > 0 ? `; failed: ${failed.join(', ')}` : ''}`);
if (failed.length > 0) process.exitCode = 1;
