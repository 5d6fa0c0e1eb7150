// connpool benchmarks: `npm run bench` (builds first) or `node bench/run.mjs`.
//
//   --smoke (or BENCH_SMOKE=1)  tiny sizes, one repetition, no targets asserted
//   --reps N                    repetitions per subject (default 7; smoke 1)
//   --only a,b                  figures to run: checkout, contended, contended-await, roundtrip, tlsdials, throughput, scale,
//                               http, fanout, dials, threads
//   --write                     update the committed BENCHMARKS.md and bench/results.svg
//   --out DIR                   where to write BENCHMARKS.md (results.svg goes to DIR/bench)
//
// Without --write or --out, BENCHMARKS.md and results.svg go to a new temp
// directory (its path is printed): a run never rewrites committed files unless asked.
//
// stdout: the table, then one JSON line per figure. Progress goes to stderr.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeCertificates } from './certs.mjs';
import * as figures from './figures.mjs';
import { log } from './harness.mjs';
import { census, startServers, stopServers } from './peer.mjs';
import { jsonLines, markdown, svgChart, tableRows, textTable } from './report.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

const { values: args } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    reps: { type: 'string' },
    only: { type: 'string' },
    out: { type: 'string' },
    write: { type: 'boolean', default: false },
  },
});
const smoke = args.smoke || ['1', 'true'].includes(process.env.BENCH_SMOKE ?? '');

const FULL = {
  checkout: { ops: 500_000, warmupOps: 50_000 },
  contended: { ops: 100_000, warmupOps: 20_000, callers: 1_000 },
  contendedAwait: { ops: 100_000, warmupOps: 20_000, callers: 1_000 },
  roundTrip: { kept: 15_000, keptWarmup: 2_000, fresh: 1_000, freshWarmup: 200, tlsKept: 15_000, tlsFresh: 200, tlsResumed: 300, tlsFreshWarmup: 50, slices: 10 },
  throughput: { bytes: 512 * 1024 * 1024, warmupBytes: 64 * 1024 * 1024, chunk: 64 * 1024, slices: 8 },
  scale: { ops: 100_000, warmupOps: 20_000, handles: [10, 100_000], keys: [1, 10_000], waiters: [0, 100_000], idle: [0, 10_000] },
  http: { sequential: 2_000, sequentialWarmup: 300, concurrent: 6_000, concurrentWarmup: 1_000, callers: 50, slices: 10 },
  fanout: { requests: 10_000, warmupRequests: 2_000, origins: 1_000, cap: 100 },
  dials: { sequential: 1_600, sequentialWarmup: 200, slices: 16, roundRobin: 6_000, roundRobinWarmup: 1_000, roundRobinSlices: 6, servers: 300, cap: 200, callers: 200 },
  threads: { ops: 500_000, warmupOps: 50_000, contended: { ops: 200_000, warmupOps: 40_000, threads: 4, callers: 100, timeoutMs: 300_000 } },
};
const SMOKE = {
  checkout: { ops: 300, warmupOps: 50 },
  contended: { ops: 500, warmupOps: 100, callers: 100 },
  contendedAwait: { ops: 500, warmupOps: 100, callers: 100 },
  roundTrip: { kept: 200, keptWarmup: 20, fresh: 20, freshWarmup: 5, tlsKept: 100, tlsFresh: 10, tlsResumed: 10, tlsFreshWarmup: 3, slices: 2 },
  throughput: { bytes: 4 * 1024 * 1024, warmupBytes: 1024 * 1024, chunk: 64 * 1024, slices: 2 },
  scale: { ops: 300, warmupOps: 50, handles: [10, 1_000], keys: [1, 100], waiters: [0, 1_000], idle: [0, 100] },
  http: { sequential: 30, sequentialWarmup: 5, concurrent: 100, concurrentWarmup: 20, callers: 10, slices: 2 },
  fanout: { requests: 200, warmupRequests: 50, origins: 20, cap: 10 },
  dials: { sequential: 20, sequentialWarmup: 5, slices: 2, roundRobin: 100, roundRobinWarmup: 30, roundRobinSlices: 2, servers: 30, cap: 20, callers: 20 },
  threads: { ops: 300, warmupOps: 50, contended: { ops: 2_000, warmupOps: 800, threads: 4, callers: 100, timeoutMs: 60_000 } },
};
const FIGURES = {
  checkout: figures.checkout,
  contended: figures.contended,
  'contended-await': figures.contendedAwait,
  roundtrip: figures.roundTrips,
  tlsdials: figures.tlsDials,
  throughput: figures.throughput,
  scale: figures.scale,
  http: figures.httpRequests,
  fanout: figures.httpFanout,
  dials: figures.freshDials,
  threads: figures.threads,
};

/** The commit the library was built from, and whether lib/ had uncommitted changes (read-only git calls). */
function libRevision() {
  try {
    const git = (...argv) => execFileSync('git', argv, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const commit = git('rev-parse', '--short', 'HEAD');
    return git('status', '--porcelain', '--', 'lib') === '' ? commit : `${commit} + uncommitted changes in lib/`;
  } catch {
    return 'unknown revision';
  }
}

function versionOf(name) {
  return JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
}

async function main() {
  const started = performance.now();
  const distEntry = join(root, 'dist', 'index.js');
  if (!existsSync(distEntry)) throw new Error('dist/index.js is missing: run `npm run build` (or `npm run bench`) first');
  const lib = await import('../dist/index.js');
  const reps = args.reps !== undefined ? Number(args.reps) : smoke ? 1 : 7;
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps must be an integer >= 1, received ${args.reps}`);
  const selected = args.only ? args.only.split(',').map((s) => s.trim()) : Object.keys(FIGURES);
  for (const name of selected) if (!(name in FIGURES)) throw new Error(`unknown figure ${name}: expected one of ${Object.keys(FIGURES).join(', ')}`);

  log(`connpool bench: ${smoke ? 'smoke' : 'full'} run, ${reps} repetition(s), figures ${selected.join(', ')}`);
  const credentials = makeCertificates();
  const { child, ready } = startServers(credentials);
  const results = [];
  try {
    const ports = await ready;
    const env = { lib, ports, credentials, sizes: smoke ? SMOKE : FULL, reps, smoke, census: () => census(child) };
    for (const name of selected) {
      log(`figure ${name}`);
      results.push(...(await FIGURES[name](env)));
    }
  } finally {
    await stopServers(child);
  }
  const seconds = (performance.now() - started) / 1000;

  const rows = tableRows(results, { smoke });
  const lines = jsonLines(results, { smoke });
  process.stdout.write(`${textTable(rows)}\n\n${lines.join('\n')}\n`);

  const outDir = args.out ?? (args.write ? root : mkdtempSync(join(os.tmpdir(), `connpool-bench-${smoke ? 'smoke-' : ''}`)));
  mkdirSync(join(outDir, 'bench'), { recursive: true });
  const svgPath = join(outDir, 'bench', 'results.svg');
  const mdPath = join(outDir, 'BENCHMARKS.md');
  const cpus = os.cpus();
  const machine = {
    cpu: cpus[0]?.model?.trim() ?? 'unknown CPU',
    cores: cpus.length,
    memoryGiB: (os.totalmem() / 2 ** 30).toFixed(0),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    versions: { 'generic-pool': versionOf('generic-pool'), tarn: versionOf('tarn'), 'p-limit': versionOf('p-limit'), undici: versionOf('undici') },
    connpool: `${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version} @ ${libRevision()}`,
  };
  const argv = process.argv.slice(2).join(' ');
  const command = `node bench/run.mjs${argv ? ` ${argv}` : ''}${process.env.BENCH_SMOKE && !args.smoke ? ' (BENCH_SMOKE=1)' : ''}`;
  const subtitle = `${machine.cpu} × ${machine.cores}, Node ${machine.node}, ${machine.date}${smoke ? ', smoke' : ''}`;
  writeFileSync(svgPath, svgChart(results, { smoke, subtitle }));
  writeFileSync(
    mdPath,
    markdown({ results, smoke, machine, command, reps, seconds, jsonText: lines.join('\n'), chartPath: relative(outDir, svgPath).split('\\').join('/') }),
  );
  log(`wrote ${mdPath} and ${svgPath} (${seconds.toFixed(0)} s)${args.write || args.out ? '' : '; pass --write to update the committed ones'}`);
}

process.on('unhandledRejection', (error) => {
  console.error('unhandled rejection:', error);
  process.exitCode = 1;
});

main().catch((error) => {
  console.error(error);
  // Whatever the failed figure left open must not keep the process alive.
  process.exit(1);
});
