// npm's `prepare`: builds dist/ with TypeScript when it is installed here.
//
// npm runs `prepare` after `npm install` / `npm ci` in a clone (dev
// dependencies present: build), when it installs from a git URL (it installs
// the dev dependencies first: build), and when another project installs this
// folder (`npm install ../connpool`), where the dev dependencies are whatever
// the folder has. In that last case, a folder already built keeps its dist/;
// one never built gets a message saying what to run instead of `tsc: not found`.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

let tsc;
try {
  tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  tsc = undefined;
}

if (tsc !== undefined) {
  const { status } = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
  process.exit(status ?? 1);
}
if (existsSync(join(root, 'dist', 'index.js'))) {
  console.error('connpool: TypeScript is not installed in this folder; using the dist/ already built.');
  process.exit(0);
}
console.error(
  [
    `connpool: cannot build ${root}: dist/ is missing and TypeScript is not installed there.`,
    'Run `npm ci` in that folder first (it installs the dev dependencies and builds dist/),',
    'or run `npm pack` there and install the .tgz it writes.',
  ].join('\n'),
);
process.exit(1);
