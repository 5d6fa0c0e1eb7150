// Runs undici's own tests of `Agent`, `fetch` and `request` twice: as they
// are, and with createDispatcher() in place of undici's `Agent` and of the
// global dispatcher. Reports, per file and in all, the tests that pass on the
// stock Agent and through createDispatcher, the regressions (with the error;
// the known ones, by design, are listed below with their reason), and the
// files whose process does not exit. Exits 1 on a regression not listed.
//
//   npm run build && node scripts/conformance-undici.mjs --tests <undici>/test [options]
//
//   --tests DIR      the `test` folder of an undici checkout of the installed
//                    version (undici's tests are not in its npm package: check
//                    out the tag matching node_modules/undici/package.json)
//   --files a,b      test files relative to DIR (default: node-test/agent.js,
//                    request*.js, issue-3410.js, fetch/*.js but http2*)
//   --timeout S      seconds a file may run (default 120)
//   --mode M         stock, pooled or both (default both)
//   --json FILE      writes the whole result as JSON
//
// It downloads nothing but the npm packages undici's tests import
// (@matteo.collina/tspl, @sinonjs/fake-timers, @metcoder95/https-pem,
// abort-controller), once, into a folder under the system's temp dir. The
// tests run in a scratch folder laid out as undici's repository: symbolic
// links to the installed undici's files (so that the tests, undici and
// connpool share one copy of undici's modules) and a copy of DIR as `test`.
//
// The swap is a preload (--import): `require('undici').Agent` becomes a
// class whose constructor returns createDispatcher(options) (instanceof the
// real Agent still holds, and a subclass's own methods are kept), and
// setGlobalDispatcher(createDispatcher()) runs first. Tests that use Client or Pool directly run the same in both modes.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    tests: { type: 'string' },
    files: { type: 'string' },
    timeout: { type: 'string', default: '120' },
    mode: { type: 'string', default: 'both' },
    json: { type: 'string' },
  },
});
if (args.tests === undefined || !existsSync(args.tests)) {
  console.error('usage: node scripts/conformance-undici.mjs --tests <undici checkout>/test [--files a,b] [--timeout S] [--mode stock|pooled|both] [--json FILE]');
  process.exit(2);
}
const testsDir = path.resolve(args.tests);
const timeoutMs = Number(args.timeout) * 1000;
const modes = args.mode === 'both' ? ['stock', 'pooled'] : [args.mode];
const dist = path.join(root, 'dist', 'undici', 'index.js');
if (!existsSync(dist)) {
  console.error('dist/ is missing: run npm run build first');
  process.exit(2);
}

const require = createRequire(path.join(root, 'package.json'));
const undiciDir = path.dirname(require.resolve('undici/package.json'));
const undiciVersion = JSON.parse(readFileSync(path.join(undiciDir, 'package.json'), 'utf8')).version;

// ---------------------------------------------------------------- the test dependencies, once

const DEPS = { '@matteo.collina/tspl': '^0.2.0', '@sinonjs/fake-timers': '^12.0.0', '@metcoder95/https-pem': '^1.0.0', 'abort-controller': '^3.0.0' };
const depsDir = path.join(os.tmpdir(), 'connpool-undici-conformance-deps');
if (!Object.keys(DEPS).every((name) => existsSync(path.join(depsDir, 'node_modules', name, 'package.json')))) {
  mkdirSync(depsDir, { recursive: true });
  writeFileSync(path.join(depsDir, 'package.json'), JSON.stringify({ private: true, dependencies: DEPS }, null, 2));
  console.error(`installing undici's test dependencies into ${depsDir}`);
  const npm = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock'], { cwd: depsDir, stdio: 'inherit' });
  if (npm.status !== 0) process.exit(npm.status ?? 1);
}

// ---------------------------------------------------------------- the scratch repository

const scratch = mkdtempSync(path.join(os.tmpdir(), 'connpool-undici-conformance-'));
for (const entry of readdirSync(undiciDir)) {
  if (entry === 'node_modules' || entry === 'package.json') continue;
  symlinkSync(path.join(undiciDir, entry), path.join(scratch, entry));
}
// A copy, not a link: nothing run here may write through to the installed package.
cpSync(path.join(undiciDir, 'package.json'), path.join(scratch, 'package.json'));
symlinkSync(path.join(depsDir, 'node_modules'), path.join(scratch, 'node_modules'));
cpSync(testsDir, path.join(scratch, 'test'), { recursive: true });
const swap = path.join(scratch, 'connpool-swap.mjs');
writeFileSync(
  swap,
  `// createDispatcher() in place of undici's Agent and of the global dispatcher.
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const undici = require('./index.js');
const { createDispatcher } = await import(${JSON.stringify(pathToFileURL(dist).href)});
const StockAgent = undici.Agent;
const probe = createDispatcher();
const pooled = Object.getPrototypeOf(probe);
await probe.close();
// A subclass of Agent (tests make some) keeps its own methods: the dispatcher
// gets the subclass's prototype, whose chain reaches createDispatcher()'s
// methods through this class.
class Agent extends StockAgent {
  constructor(options) {
    const dispatcher = createDispatcher(options);
    Object.setPrototypeOf(dispatcher, new.target.prototype);
    return dispatcher;
  }
  static [Symbol.hasInstance](value) {
    return value instanceof StockAgent;
  }
}
for (const name of Object.getOwnPropertyNames(pooled)) {
  if (name !== 'constructor') Object.defineProperty(Agent.prototype, name, Object.getOwnPropertyDescriptor(pooled, name));
}
undici.Agent = Agent;
undici.setGlobalDispatcher(createDispatcher());
`,
);

// ---------------------------------------------------------------- known differences

/** Tests that pass on the stock Agent and not through createDispatcher, by design, with the reason. */
const EXPECTED = {
  'node-test/agent.js > agent factory supports URL parameter': 'createDispatcher() refuses `factory`: it makes its own pools and clients, whose connects take pool slots',
  'node-test/agent.js > agent factory supports string parameter': 'the same: `factory` is refused',
  'node-test/agent.js > constructor validations': "the same: `factory: 'ASD'` is refused with connpool's ERR_INVALID_ARG_VALUE, not undici's InvalidArgumentError",
};

// ---------------------------------------------------------------- which files

function defaultFiles() {
  const files = ['node-test/agent.js', 'issue-3410.js'];
  for (const name of readdirSync(testsDir)) if (/^request.*\.js$/.test(name)) files.push(name);
  for (const name of readdirSync(path.join(testsDir, 'fetch'))) if (name.endsWith('.js') && !name.startsWith('http2')) files.push(`fetch/${name}`);
  return files.filter((file) => existsSync(path.join(testsDir, file))).sort();
}
const files = args.files ? args.files.split(',') : defaultFiles();

// ---------------------------------------------------------------- running one file

/** Parses node:test's TAP: every test's line (`ok`/`not ok`, nesting kept in the name), and the summary if printed. */
function parseTap(text) {
  const tests = new Map();
  const stack = [];
  const lines = text.split('\n');
  let summary;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const subtest = /^(\s*)# Subtest: (.*)$/.exec(line);
    if (subtest) {
      const depth = subtest[1].length / 4;
      stack.length = depth;
      stack[depth] = subtest[2];
      continue;
    }
    const result = /^(\s*)(not ok|ok) \d+ - (.*?)(\s+# (SKIP|TODO).*)?$/.exec(line);
    if (result) {
      const depth = result[1].length / 4;
      stack.length = depth;
      const name = [...stack, result[3]].join(' > ');
      let error = '';
      if (result[2] === 'not ok') {
        for (let j = i + 1; j < Math.min(lines.length, i + 40); j++) {
          const m = /^\s*(error|code|name|message): (.*)$/.exec(lines[j]);
          if (m) error += `${m[1]}: ${m[2].replace(/^\|-?$/, '').trim()} `;
          if (/^\s*\.\.\.$/.test(lines[j])) break;
        }
      }
      // A suite's own line follows its subtests' lines: keep leaves only.
      const isSuite = i + 1 < lines.length && /^\s*---$/.test(lines[i + 1]) && lines.slice(i + 1, i + 6).some((l) => /type: 'suite'/.test(l));
      if (!isSuite) tests.set(name, { ok: result[2] === 'ok', skipped: result[5] !== undefined, error: error.trim() });
      continue;
    }
    const count = /^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(line);
    if (count) (summary ??= {})[count[1]] = Number(count[2]);
  }
  return { tests, summary };
}

function runFile(file, mode) {
  return new Promise((resolve) => {
    const argv = ['--expose-gc', ...(mode === 'pooled' ? ['--import', pathToFileURL(swap).href] : []), '--test-reporter=tap', path.join('test', file)];
    const child = spawn(process.execPath, argv, { cwd: scratch, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data) => (stdout += data));
    child.stderr.on('data', (data) => (stderr += data));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      const { tests, summary } = parseTap(stdout);
      resolve({ code, timedOut, tests, summary, stderr: stderr.slice(-2_000) });
    });
  });
}

// ---------------------------------------------------------------- the run

console.error(`undici ${undiciVersion}; tests from ${testsDir}; ${files.length} files; scratch ${scratch}`);
const results = [];
for (const file of files) {
  const row = { file };
  for (const mode of modes) {
    const run = await runFile(file, mode);
    const all = [...run.tests.values()].filter((t) => !t.skipped);
    row[mode] = {
      tests: all.length,
      pass: all.filter((t) => t.ok).length,
      exit: run.timedOut ? (run.summary ? 'left running' : 'timed out') : run.code === 0 ? 'ok' : `exit ${run.code}`,
      results: Object.fromEntries([...run.tests].map(([name, t]) => [name, t.ok ? 'ok' : t.skipped ? 'skip' : `FAIL ${t.error}`])),
      stderr: run.code !== 0 && run.tests.size === 0 ? run.stderr : undefined,
    };
  }
  if (row.stock && row.pooled) {
    row.regressions = Object.entries(row.stock.results)
      .filter(([name, outcome]) => outcome === 'ok' && row.pooled.results[name] !== 'ok')
      .map(([name]) => ({
        name,
        pooled: row.pooled.results[name] ?? 'not run (the process ended or hung first)',
        expected: EXPECTED[`${file} > ${name}`],
      }));
  }
  results.push(row);
  const cell = (m) => (row[m] ? `${m} ${row[m].pass}/${row[m].tests} ${row[m].exit}` : '');
  console.log(`${file.padEnd(48)} ${modes.map(cell).join('   ')}${row.regressions?.length ? `   REGRESSIONS ${row.regressions.length}` : ''}`);
}

const totals = {
  undici: undiciVersion,
  files: files.length,
  ...Object.fromEntries(
    modes.map((mode) => [
      mode,
      {
        tests: results.reduce((n, r) => n + r[mode].tests, 0),
        pass: results.reduce((n, r) => n + r[mode].pass, 0),
        filesNotExiting: results.filter((r) => r[mode].exit === 'left running' || r[mode].exit === 'timed out').map((r) => r.file),
        filesNotLoading: results.filter((r) => r[mode].tests === 0).map((r) => r.file),
      },
    ]),
  ),
  regressions: results.flatMap((r) => (r.regressions ?? []).map((g) => ({ file: r.file, ...g }))),
};
console.log('\nregressions (pass on the stock Agent, not through createDispatcher):');
for (const g of totals.regressions) {
  console.log(`  ${g.expected ? 'known' : 'NEW  '} ${g.file} > ${g.name}\n      ${g.expected ?? String(g.pooled).slice(0, 300)}`);
}
const unexpected = totals.regressions.filter((g) => !g.expected).length;
console.log(`\n${JSON.stringify({ ...totals, regressions: totals.regressions.length, unexpected })}`);
if (args.json) writeFileSync(args.json, JSON.stringify({ totals, results }, null, 2));
rmSync(scratch, { recursive: true, force: true });
process.exitCode = unexpected > 0 ? 1 : 0;
