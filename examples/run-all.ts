/**
 * Runs every example in its own Node process, in turn, and fails (exit code
 * 1) if any of them exits with another code or does not exit by itself
 * within a minute: each example must close what it opens.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const EXAMPLES = ['echo-client', 'tls-custom-ca', 'shared-budget', 'worker-threads', 'demo'];
const failed: string[] = [];

for (const name of EXAMPLES) {
  console.log(`\n=== ${name}`);
  const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  const result = spawnSync(process.execPath, [script], { stdio: 'inherit', timeout: 60_000 });
  if (result.status !== 0) {
    const why = result.error?.message ?? (result.signal !== null ? `killed by ${result.signal}` : `exit code ${result.status}`);
    console.error(`=== ${name} FAILED (${why})`);
    failed.push(name);
  }
}

console.log(`\n${EXAMPLES.length - failed.length}/${EXAMPLES.length} examples passed${failed.length > 0 ? `; failed: ${failed.join(', ')}` : ''}`);
if (failed.length > 0) process.exitCode = 1;
