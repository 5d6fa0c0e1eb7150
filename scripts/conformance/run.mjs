#!/usr/bin/env node
// Conformance: Node's own HTTP/HTTPS client and agent tests (test/parallel),
// each run twice: on the stock agents, and with connpool's HttpAgent and
// HttpsAgent swapped in for http.Agent, https.Agent and the global agents
// (shim.mjs). A test that passes stock and not adapted is a regression; the
// run fails on one not listed in conformance/expectations.json.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, mkdirSync, writeFileSync, mkdtempSync, rmSync, realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureNodeTests, sourceFor } from './node-tests.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const projectRoot = path.resolve(here, '..', '..');
const shim = path.join(here, 'shim.mjs');

const { values: opts } = parseArgs({
  options: {
    package: { type: 'string' },
    only: { type: 'string', multiple: true },
    jobs: { type: 'string' },
    timeout: { type: 'string', default: '30000' },
    expectations: { type: 'string' },
    results: { type: 'string' },
    'write-expectations': { type: 'boolean', default: false },
    verbose: { type: 'boolean', short: 'v', default: false },
    list: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

const USAGE = `Usage: node scripts/conformance/run.mjs [options]

Runs Node's HTTP/HTTPS client tests on the stock agents and with connpool's
agents swapped in, and compares the results with the expectations file.

  --package <dir>        the build to test: a checkout (its dist/) or a dist/ itself
                         (default: this checkout)
  --only <glob>[,<glob>] only these tests, e.g. 'test-http-agent*' (repeatable)
  --jobs <n>             tests at once (default 6, or CONFORMANCE_JOBS)
  --timeout <ms>         a test running longer is killed and counted as a hang
                         (default 30000)
  --expectations <file>  default: <package checkout>/conformance/expectations.json
                         if it exists, else this checkout's
  --write-expectations   rewrite the expectations from this run's regressions
  --results <file>       per-test results, with outputs
                         (default: conformance/results/<checkout>.json)
  --list                 print the selected tests and exit
  -v, --verbose          a line per test run

Environment: CONNPOOL_CONFORMANCE_CACHE (where Node's tests are unpacked,
default node_modules/.cache/connpool-conformance), CONNPOOL_CONFORMANCE_TARBALL
(a local copy of the source tarball; its sha256 is checked all the same).
`;

if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}

const source = sourceFor();
if (!source) {
  console.log(`conformance: Node ${process.versions.node} is not supported (Node's tests are fetched for Node 20 only); nothing run.`);
  process.exit(0);
}

// --package: a project root (with dist/) or a built dist/ directory itself.
function resolvePackage(dir) {
  const abs = path.resolve(dir);
  for (const [root, dist] of [[abs, path.join(abs, 'dist')], [path.dirname(abs), abs]]) {
    const entry = path.join(dist, 'http', 'index.js');
    if (existsSync(entry)) return { root, dist, entry };
  }
  throw new Error(`--package ${dir}: neither ${dir}/dist/http/index.js nor ${dir}/http/index.js exists (run npm run build there)`);
}

const pkg = resolvePackage(opts.package ?? projectRoot);
const jobs = Number(opts.jobs ?? process.env.CONFORMANCE_JOBS ?? 6);
const timeoutMs = Number(opts.timeout);
if (!(jobs >= 1) || !(timeoutMs > 0)) throw new RangeError(`--jobs and --timeout must be numbers > 0 (got ${opts.jobs}, ${opts.timeout})`);

const expectationsFile = path.resolve(opts.expectations ??
  [path.join(pkg.root, 'conformance', 'expectations.json'), path.join(projectRoot, 'conformance', 'expectations.json')]
    .find((f) => existsSync(f)) ?? path.join(projectRoot, 'conformance', 'expectations.json'));
const resultsFile = path.resolve(opts.results ??
  path.join(projectRoot, 'conformance', 'results', `${path.basename(pkg.root)}.json`));

// ---- selection -------------------------------------------------------------

// Every test-http*.js / test-https*.js of test/parallel (not test-http2-*)
// that can create a client request: its source names a client API at least
// once. A pure-server test (driven by net.connect(), or with no client at
// all) runs the same both ways and is left out.
const NAME = /^test-https?(-.*)?\.js$/;
const CLIENT_API = /\b(?:request|get|Agent|globalAgent|ClientRequest|agent)\b/;

function globToRegExp(glob) {
  const body = glob.replace(/\.js$/, '').replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}(\\.js)?$`);
}

function select(parallelDir) {
  const only = (opts.only ?? []).flatMap((o) => o.split(',')).filter(Boolean).map(globToRegExp);
  const files = readdirSync(parallelDir).filter((f) => NAME.test(f));
  const clients = files.filter((f) => CLIENT_API.test(readFileSync(path.join(parallelDir, f), 'utf8')));
  const selected = clients.filter((f) => only.length === 0 || only.some((re) => re.test(f))).sort();
  return { files: files.length, clients: clients.length, selected };
}

// The flags Node's harness would pass (tools/test.py reads the same comment).
function flagsOf(file) {
  const m = /^\/\/ Flags:\s+(.*)$/m.exec(readFileSync(file, 'utf8'));
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
}

// ---- running one test ------------------------------------------------------

const OUTPUT_CAP = 16_000;
const running = new Set();

// The start (where the first error is printed) and the end of an output.
function clip(s) {
  const half = OUTPUT_CAP / 2;
  return s.length > OUTPUT_CAP ? `${s.slice(0, half)}\n[... ${s.length - OUTPUT_CAP} chars cut ...]\n${s.slice(-half)}` : s;
}

// Bounds what a chatty test keeps in memory: its start and its latest output.
function keep(s) {
  return s.length > 8 * OUTPUT_CAP ? s.slice(0, OUTPUT_CAP) + s.slice(-4 * OUTPUT_CAP) : s;
}

function firstError(stderr) {
  const m = /^(Uncaught )?([A-Za-z_$][\w$]*(?:Error|Exception)|Error)(?: \[([A-Z0-9_]+)\])?(?::|$)(.*)$/m.exec(stderr);
  if (!m) return null;
  const frame = /^\s+at .*$/m.exec(stderr.slice(m.index))?.[0] ?? '';
  return { name: m[2], code: m[3], line: m[0].trim(), inTest: /[/\\]test[/\\](parallel|common)[/\\]/.test(frame) };
}

// pass; skip (common.skip()); hang (killed at the timeout); crash (a signal,
// or an uncaught error that is not an assertion and was not thrown by the
// test's own code: an exception out of the agent or Node, an unhandled
// 'error' event); fail (any other non-zero exit: assertions, mustCall
// counts, a TypeError in the test reading state that is not there).
function classify({ code, signal, timedOut, stdout, stderr }) {
  if (timedOut) return 'hang';
  if (signal || code > 128) return 'crash';
  if (code === 0) return /^1\.\.0 # Skipped/m.test(stdout) ? 'skip' : 'pass';
  const err = firstError(stderr);
  if (err && err.name !== 'AssertionError' && !err.inTest) return 'crash';
  return 'fail';
}

function killGroup(child, sig = 'SIGKILL') {
  try { process.kill(-child.pid, sig); } catch { /* already gone */ }
}

function runOne(testsRoot, name, mode, slot, runTmp) {
  const file = path.join(testsRoot, 'test', 'parallel', name);
  const flags = flagsOf(file);
  const args = [...flags, ...(mode === 'adapted' ? ['--import', pathToFileURL(shim).href] : []), file];
  const env = { ...process.env, NODE_TEST_DIR: runTmp, TEST_THREAD_ID: String(slot), NODE_COMMON_PORT: String(portBase + slot * 8) };
  delete env.NODE_OPTIONS;
  delete env.NODE_SKIP_FLAG_CHECK;
  if (mode === 'adapted') env.CONNPOOL_CONFORMANCE_HTTP = pathToFileURL(pkg.entry).href;
  else delete env.CONNPOOL_CONFORMANCE_HTTP;

  const started = Date.now();
  return new Promise((resolve) => {
    // Its own process group: common.js re-raises a child's signal with
    // process.kill(0, sig), and a hang is killed with whatever it started.
    const child = spawn(process.execPath, args, {
      cwd: path.dirname(file), env, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout = keep(stdout + d); });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr = keep(stderr + d); });
    const timer = setTimeout(() => { timedOut = true; killGroup(child); }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      killGroup(child);
      // A grandchild may hold the pipes open; do not wait for it.
      const done = () => {
        const r = { code, signal: timedOut ? null : signal, timedOut, stdout, stderr };
        resolve({ status: classify(r), code, signal: r.signal, ms: Date.now() - started, flags, error: firstError(stderr)?.line ?? null, stdout: clip(stdout), stderr: clip(stderr) });
      };
      let closed = 0;
      const onClose = () => { if (++closed === 2) { clearTimeout(t2); done(); } };
      const t2 = setTimeout(() => { closed = 2; done(); }, 2000);
      if (child.stdout.closed) closed++; else child.stdout.once('close', onClose);
      if (child.stderr.closed) closed++; else child.stderr.once('close', onClose);
      if (closed === 2) { clearTimeout(t2); done(); }
    });
  });
}

// common.PORT, for the few tests that use a fixed port: apart per run and per slot.
const portBase = 15000 + (process.pid % 900) * 16;

process.on('SIGINT', () => { for (const c of running) killGroup(c); process.exit(130); });
process.on('SIGTERM', () => { for (const c of running) killGroup(c); process.exit(143); });

// `jobs` workers, each with a slot number of its own (its tmpdir and ports).
async function runAll(tasks, testsRoot, runTmp, onDone) {
  let next = 0;
  const worker = async (slot) => {
    while (next < tasks.length) {
      const task = tasks[next++];
      onDone(task, await runOne(testsRoot, task.name, task.mode, slot, runTmp));
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, tasks.length) }, (_, i) => worker(i)));
}

// ---- expectations ----------------------------------------------------------

const DEFAULT_COMMENT = [
  'Node tests that pass on the stock agents and not with connpool\'s adapters swapped in (npm run conformance), each with its kind (fail | crash | hang) and reason.',
  'node scripts/conformance/run.mjs --write-expectations rewrites the list from a run: reasons of entries whose kind is unchanged are kept, new entries get "TODO: classify".',
];

function readExpectations() {
  if (!existsSync(expectationsFile)) return { expected: {} };
  const data = JSON.parse(readFileSync(expectationsFile, 'utf8'));
  return { ...data, expected: data.expected ?? {} };
}

// A listed test may regress as listed; a crash or hang where it was listed
// as another kind (or as a plain fail) is still an error, a fail where a
// crash or hang was listed is not.
function isAllowed(entry, kind) {
  return entry != null && (entry.kind === kind || kind === 'fail');
}

// ---- main ------------------------------------------------------------------

const wallStart = Date.now();
const cacheDir = process.env.CONNPOOL_CONFORMANCE_CACHE ?? path.join(projectRoot, 'node_modules', '.cache', 'connpool-conformance');
let testsRoot;
try {
  testsRoot = await ensureNodeTests(source, cacheDir);
} catch (err) {
  console.error(`conformance: cannot get Node's tests: ${err.message}`);
  process.exit(2);
}
const selection = select(path.join(testsRoot, 'test', 'parallel'));
const { selected } = selection;

if (opts.list) {
  for (const name of selected) console.log(name.replace(/\.js$/, ''));
  console.error(`${selected.length} tests`);
  process.exit(0);
}
if (selected.length === 0) {
  console.error(`conformance: no test matches --only ${opts.only}`);
  process.exit(2);
}

console.log(`conformance: ${selected.length} of Node ${source.version}'s HTTP/HTTPS tests (${selection.clients} of ${selection.files} test-http*/test-https* files can make a client request), on node ${process.version}, ${jobs} at once, ${timeoutMs} ms each`);
console.log(`package:      ${pkg.dist}`);
console.log(`expectations: ${expectationsFile}`);

const runTmp = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'connpool-conformance-')));
const tasks = selected.flatMap((name) => [{ name, mode: 'stock' }, { name, mode: 'adapted' }]);
let finished = 0;
const byTest = new Map(selected.map((n) => [n, {}]));
try {
  await runAll(tasks, testsRoot, runTmp, (task, r) => {
    finished++;
    const entry = byTest.get(task.name);
    entry[task.mode] = r;
    if (opts.verbose) console.log(`${task.mode.padEnd(7)} ${r.status.padEnd(5)} ${String(r.ms).padStart(6)} ms  ${task.name}`);
    else if (finished % 100 === 0) console.log(`  ${finished}/${tasks.length} runs done`);
  });

  // A second run for each stock failure and each regression: one that passes
  // then is reported as flaky; one that fails again keeps its first result.
  const again = selected.filter((n) => {
    const { stock, adapted } = byTest.get(n);
    return !ok(stock) || !ok(adapted);
  });
  if (again.length > 0) {
    console.log(`  running ${again.length} tests again that did not pass both ways`);
    await runAll(again.flatMap((name) => {
      const { stock, adapted } = byTest.get(name);
      return [...(ok(stock) ? [] : [{ name, mode: 'stock' }]), ...(ok(adapted) ? [] : [{ name, mode: 'adapted' }])];
    }), testsRoot, runTmp, (task, r) => {
      const entry = byTest.get(task.name);
      const first = entry[task.mode];
      entry[task.mode] = ok(r)
        ? { ...r, flaky: true, firstRun: { status: first.status, error: first.error, stderr: first.stderr } }
        : { ...first, secondRun: { status: r.status, error: r.error } };
    });
  }
} finally {
  rmSync(runTmp, { recursive: true, force: true });
}

function ok(r) { return r.status === 'pass' || r.status === 'skip'; }

const expectations = readExpectations();
const rows = selected.map((file) => {
  const name = file.replace(/\.js$/, '');
  const { stock, adapted } = byTest.get(file);
  const regression = ok(stock) && !ok(adapted) ? adapted.status : null;
  return { name, stock, adapted, regression, expected: expectations.expected[name] ?? null };
});

const passStock = rows.filter((r) => ok(r.stock));
const passAdapted = rows.filter((r) => ok(r.adapted));
const regressions = rows.filter((r) => r.regression);
const errors = regressions.filter((r) => !isAllowed(r.expected, r.regression));
const nowPassing = rows.filter((r) => r.expected && ok(r.stock) && ok(r.adapted));
const stockFailures = rows.filter((r) => !ok(r.stock));
const flaky = rows.filter((r) => r.stock.flaky || r.adapted.flaky);
const wallMs = Date.now() - wallStart;

console.log('');
console.log(`tests run:        ${rows.length} (skipped by the test itself: stock ${rows.filter((r) => r.stock.status === 'skip').length}, adapted ${rows.filter((r) => r.adapted.status === 'skip').length})`);
console.log(`pass stock:       ${passStock.length}`);
console.log(`pass adapted:     ${passAdapted.length}`);
const kinds = ['crash', 'hang', 'fail'];
console.log(`regressions:      ${regressions.length} (${kinds.map((k) => `${k} ${regressions.filter((r) => r.regression === k).length}`).join(', ')})`);
for (const kind of kinds) {
  for (const r of regressions.filter((x) => x.regression === kind)) {
    const mark = !r.expected ? 'NEW'
      : !isAllowed(r.expected, kind) ? `NEW ${kind.toUpperCase()} (listed as ${r.expected.kind})`
        : r.expected.kind === kind ? 'listed' : `listed (as ${r.expected.kind})`;
    console.log(`  ${kind.padEnd(5)} ${r.name.padEnd(58)} ${mark}${r.adapted.error ? `  ${r.adapted.error.slice(0, 100)}` : ''}`);
  }
}
if (stockFailures.length > 0) {
  console.log(`not compared (fail stock on this node): ${stockFailures.length}`);
  for (const r of stockFailures) console.log(`  ${r.stock.status.padEnd(5)} ${r.name}${r.stock.error ? `  ${r.stock.error.slice(0, 100)}` : ''}`);
}
if (flaky.length > 0) {
  console.log(`flaky (passed on the second run): ${flaky.map((r) => `${r.name} (${r.stock.flaky ? 'stock' : 'adapted'})`).join(', ')}`);
}
if (nowPassing.length > 0) {
  console.log(`listed in ${path.relative(process.cwd(), expectationsFile) || expectationsFile} but passing now (remove them): ${nowPassing.map((r) => r.name).join(', ')}`);
}
console.log(`wall time:        ${(wallMs / 1000).toFixed(1)} s`);

mkdirSync(path.dirname(resultsFile), { recursive: true });
writeFileSync(resultsFile, `${JSON.stringify({
  node: process.version, tests: `nodejs ${source.version} (${source.url})`, package: pkg.dist, jobs, timeoutMs,
  startedAt: new Date(wallStart).toISOString(), wallMs,
  summary: { selected: rows.length, passStock: passStock.length, passAdapted: passAdapted.length, regressions: Object.fromEntries(kinds.map((k) => [k, regressions.filter((r) => r.regression === k).map((r) => r.name)])) },
  results: rows,
}, null, 2)}\n`);
console.log(`results:          ${resultsFile}`);

if (opts['write-expectations']) {
  const scope = new Set(rows.map((r) => r.name));
  const tests = {};
  for (const [name, entry] of Object.entries(expectations.expected)) if (!scope.has(name)) tests[name] = entry;
  for (const r of regressions) {
    const old = r.expected;
    tests[r.name] = { kind: r.regression, reason: old && old.kind === r.regression ? old.reason : old ? `TODO: classify (was ${old.kind}: ${old.reason})` : 'TODO: classify' };
  }
  const out = {
    $comment: expectations.$comment ?? DEFAULT_COMMENT,
    source: `nodejs ${source.version}`,
    expected: Object.fromEntries(Object.entries(tests).sort(([a], [b]) => a.localeCompare(b))),
  };
  writeFileSync(expectationsFile, `${JSON.stringify(out, null, 2)}\n`);
  const todo = Object.values(out.expected).filter((e) => e.reason.startsWith('TODO')).length;
  console.log(`wrote ${Object.keys(out.expected).length} expectations to ${expectationsFile}${todo ? ` (${todo} to classify: reason "TODO: classify")` : ''}`);
  process.exit(0);
}

if (errors.length > 0) {
  console.log(`\nFAILED: ${errors.length} regression(s) not in ${expectationsFile}: ${errors.map((r) => r.name).join(', ')}`);
  process.exit(1);
}
console.log('\nOK: every regression is listed');
