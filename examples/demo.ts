/**
 * Why connpool exists, in three measurements against local servers (run in
 * a child process, so that their sockets never count against ours):
 *
 * 1. Too many open files. Every socket is a file descriptor, and a process
 *    may only have so many (`ulimit -n`). The demo re-runs part of itself in
 *    a child process under `ulimit -n 256`: 2,000 tasks talking to 50
 *    servers, first with a new `net.connect()` socket per task, then through
 *    connpool's process-wide pool, whose cap (200 there) comes from that
 *    limit.
 * 2. Reusing connections. Tasks that talk to the same few servers again and
 *    again, through a pool, then with a new connection for every round trip.
 * 3. One budget for HTTP and raw TCP: `HttpAgent` from 'connpool/http' and
 *    raw round trips take their connections from the same pool.
 *
 * Every figure printed is measured while the demo runs. The process exits by
 * itself once everything is closed, with exit code 1 if a check failed.
 */
import { spawn } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { getResourcePool, New, ResourcePool } from 'connpool';
import { HttpAgent } from 'connpool/http';
import { roundTrip, socketFds, startServerProcess, type ServerProcess } from './support/servers.js';
import {
  countFailures,
  httpGet,
  n,
  pct,
  PlainSockets,
  printTable,
  runTasks,
  secs,
  watchMostOpen,
  type TaskResults,
} from './support/workloads.js';

// Part 1: many tasks, many servers, a low limit on open files.
const LOW_LIMIT = 256;
const TASKS = 2_000;
const SERVERS = 50;
const TRIPS_PER_TASK = 3; // on one connection
// Part 2: tasks that keep talking to the same few servers.
const REUSE_SERVERS = 20;
const REUSE_TASKS = 20;
const REUSE_TRIPS_PER_TASK = 150;
const REUSE_POOL_MAX = 100;
// Part 3: HTTP and raw TCP on one pool.
const SHARED_POOL_MAX = 20;
const SHARED_WORKERS = 10;
const SHARED_ROUNDS = 100; // each round: one HTTP request, then one raw round trip

const CHILD_FLAG = '--under-low-limit';
const problems: string[] = [];

if (process.argv[2] === CHILD_FLAG) {
  await partOneUnderLowLimit(process.argv.slice(3)); // in the child process of part 1 (see below)
} else {
  const startedAt = performance.now();
  const servers = await startServerProcess([...Array<'tcp'>(SERVERS).fill('tcp'), 'http']);
  try {
    console.log('connpool: a shared connection pool that keeps a program under its open-file limit');
    console.log('and reuses idle connections. Three measurements against local servers:\n');
    await partOne(servers);
    await partTwo(servers);
    await partThree(servers);
  } finally {
    await servers.close();
  }
  const leftOpen = socketFds();
  console.log(`All done in ${secs((performance.now() - startedAt) / 1_000)}; sockets still open: ${leftOpen ?? 'n/a (no /proc)'}.`);
  if (leftOpen !== undefined && leftOpen > 0) problems.push(`${leftOpen} sockets still open at the end`);
  if (problems.length > 0) {
    console.error(`\nFAILED: ${problems.join('; ')}`);
    process.exitCode = 1;
  }
}

/** Part 1, in this process: runs the child under the low limit and prints what it measured. */
async function partOne(servers: ServerProcess): Promise<void> {
  console.log(`1. Too many open files`);
  console.log(`   Every connection uses a file descriptor, and a process may only have so many open.`);
  console.log(`   A child process limited to ${LOW_LIMIT} (ulimit -n ${LOW_LIMIT}) starts ${n(TASKS)} tasks at once; each connects`);
  console.log(`   to one of ${SERVERS} echo servers and makes ${TRIPS_PER_TASK} round trips. First the plain way, net.connect(),`);
  console.log(`   then through connpool's shared pool.\n`);
  const report = await runChild(servers.addresses.slice(0, SERVERS));
  if (report === undefined) return;
  const { limit, plain, pooled } = report;
  const plainFailures = countFailures(plain, 'EMFILE');
  const pooledFailures = countFailures(pooled, 'EMFILE');
  printTable(
    ['plain net.connect()', 'through connpool'],
    [
      ['tasks finished', `${n(plain.done)} of ${n(TASKS)}`, `${n(pooled.done)} of ${n(TASKS)}`],
      ['tasks failed: too many open files (EMFILE)', plainFailures.withCode, pooledFailures.withCode],
      ['tasks failed: other errors', plainFailures.other, pooledFailures.other],
      ['most connections open at once', plain.mostOpen, pooled.mostOpen],
      ['time until every task ended', secs(plain.seconds), secs(pooled.seconds)],
    ],
  );
  console.log(`\n   The plain way opened a socket for every task at once and ran out of descriptors. connpool`);
  console.log(`   read the limit when it loaded and capped its connections at ${limit}, leaving room for everything`);
  console.log(`   else the process opens; tasks beyond the cap waited their turn${pooled.done === TASKS ? ' instead of failing' : ''}.`);
  if (plainFailures.withCode === 0) console.log(`   (The plain way hit no EMFILE this time.)`);
  console.log();
  if (pooled.done !== TASKS) problems.push(`part 1: ${TASKS - pooled.done} pooled tasks failed (${JSON.stringify(pooled.failed)})`);
  if (pooled.mostOpen > limit) problems.push(`part 1: ${pooled.mostOpen} connections open at once, over the cap of ${limit}`);
}

/** What the child process of part 1 measured. */
interface ChildReport {
  /** connpool's cap in the child: `getResourcePool().stats().max`. */
  limit: number;
  plain: TaskResults & { mostOpen: number };
  pooled: TaskResults & { mostOpen: number };
}

/** Re-runs this script under `ulimit -n 256` and reads its report from its stdout. */
async function runChild(addresses: string[]): Promise<ChildReport | undefined> {
  const script = fileURLToPath(import.meta.url);
  const command = `ulimit -n ${LOW_LIMIT} && exec "$0" "$@"`; // $0 = node, $@ = this script and its arguments
  const child = spawn('/bin/sh', ['-c', command, process.execPath, script, CHILD_FLAG, ...addresses], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (code !== 0) {
    problems.push(`part 1: the child process exited with code ${code}`);
    return undefined;
  }
  return JSON.parse(output) as ChildReport;
}

/** Part 1, in the child process under the low limit: the same tasks the plain way, then pooled. */
async function partOneUnderLowLimit(addresses: string[]): Promise<void> {
  const serverFor = (id: number): string => addresses[id % addresses.length]!;
  const exchange = async (conn: Duplex, id: number): Promise<void> => {
    for (let trip = 0; trip < TRIPS_PER_TASK; trip++) await roundTrip(conn, `task ${id} trip ${trip}\n`);
  };

  // The plain way: every task opens its own socket, all at once.
  const sockets = new PlainSockets();
  const plain = await runTasks(TASKS, (id) => sockets.use(serverFor(id), (socket) => exchange(socket, id)));

  // Through the process-wide pool, whose max is connectionLimit(), from `ulimit -n`.
  const pool = getResourcePool();
  const mostOpen = watchMostOpen(pool);
  const pooled = await runTasks(TASKS, (id) =>
    New('tcp', serverFor(id)).use((conn) => exchange(conn, id), AbortSignal.timeout(10_000)),
  );
  mostOpen.stop();
  const limit = pool.stats().max;
  await pool.close();

  const report: ChildReport = {
    limit,
    plain: { ...plain, mostOpen: sockets.mostOpen },
    pooled: { ...pooled, mostOpen: mostOpen.most },
  };
  process.stdout.write(JSON.stringify(report));
}

/** Part 2: the same few servers again and again, pooled, then with a new connection each time. */
async function partTwo(servers: ServerProcess): Promise<void> {
  const addresses = servers.addresses.slice(0, REUSE_SERVERS);
  /** Task `id` talks to these 3 servers, in turn. */
  const serversOf = (id: number): string[] => [0, 1, 2].map((k) => addresses[(id + k) % REUSE_SERVERS]!);
  const text = (id: number, trip: number): string => `task ${id} trip ${trip}\n`;
  console.log(`2. Reusing connections`);
  console.log(`   ${REUSE_TASKS} tasks each talk to the same 3 of ${REUSE_SERVERS} servers, ${REUSE_TRIPS_PER_TASK} round trips per task: through a`);
  console.log(`   pool of up to ${REUSE_POOL_MAX} connections, then with a new connection for every round trip.\n`);

  const pool = new ResourcePool({ max: REUSE_POOL_MAX, name: 'reuse' });
  let pooledTrips = 0;
  let before = await acceptedBy(servers, addresses);
  const pooled = await runTasks(REUSE_TASKS, async (id) => {
    const handles = serversOf(id).map((address) => New('tcp', address, { pool }));
    for (let trip = 0; trip < REUSE_TRIPS_PER_TASK; trip++) {
      await handles[trip % 3]!.use((conn) => roundTrip(conn, text(id, trip)), AbortSignal.timeout(5_000));
      pooledTrips++;
    }
  });
  const stats = pool.stats();
  await pool.close();
  const pooledAccepted = (await acceptedBy(servers, addresses)) - before;

  const sockets = new PlainSockets();
  let plainTrips = 0;
  before = await acceptedBy(servers, addresses);
  const plain = await runTasks(REUSE_TASKS, async (id) => {
    const mine = serversOf(id);
    for (let trip = 0; trip < REUSE_TRIPS_PER_TASK; trip++) {
      await sockets.use(mine[trip % 3]!, (socket) => roundTrip(socket, text(id, trip)));
      plainTrips++;
    }
  });
  const plainAccepted = (await acceptedBy(servers, addresses)) - before;

  printTable(
    ['through connpool', 'new connection each time'],
    [
      ['round trips made', pooledTrips, plainTrips],
      ['connections opened (dials)', stats.dials, sockets.opened],
      ['  ... as counted by the servers', pooledAccepted, plainAccepted],
      ['round trips on a reused connection (reuses)', `${n(stats.reuses)} (${pct(stats.reuses, pooledTrips)})`, plainTrips - sockets.opened],
      ['idle connections closed to make room (evictions)', stats.evictions, '-'],
      ['time', secs(pooled.seconds), secs(plain.seconds)],
    ],
  );
  console.log(`\n   ${pct(stats.reuses, pooledTrips)} of the pooled round trips skipped connection set-up: a connection put back after`);
  console.log(`   a round trip stayed open for the next task that wanted the same server.\n`);
  if (pooled.done !== REUSE_TASKS || plain.done !== REUSE_TASKS) {
    problems.push(`part 2: tasks failed (pooled ${JSON.stringify(pooled.failed)}, new connection each time ${JSON.stringify(plain.failed)})`);
  }
  if (stats.dials !== pooledAccepted) problems.push(`part 2: the pool dialed ${stats.dials} times but the servers accepted ${pooledAccepted}`);
  if (stats.dials + stats.reuses !== pooledTrips) problems.push(`part 2: dials + reuses = ${stats.dials + stats.reuses}, not ${pooledTrips}`);
}

/** Part 3: HTTP requests (HttpAgent) and raw TCP round trips, interleaved, on one pool. */
async function partThree(servers: ServerProcess): Promise<void> {
  const httpIndex = SERVERS; // the HTTP server comes after the echo servers
  const url = `http://${servers.addresses[httpIndex]}/`;
  console.log(`3. HTTP and raw TCP share one budget`);
  console.log(`   One pool of up to ${SHARED_POOL_MAX} connections serves an HTTP client (HttpAgent from connpool/http)`);
  console.log(`   and raw TCP: ${SHARED_WORKERS} workers each alternate an HTTP request and a round trip to their own`);
  console.log(`   echo server, ${SHARED_ROUNDS} times.\n`);

  const pool = new ResourcePool({ max: SHARED_POOL_MAX, name: 'shared' });
  const agent = new HttpAgent({ keepAlive: true, pool, acquireTimeout: 5_000 });
  const mostOpen = watchMostOpen(pool);
  const before = (await servers.counts()).accepted;
  let requests = 0;
  let rawTrips = 0;
  const workers = await runTasks(SHARED_WORKERS, async (id) => {
    const echo = New('tcp', servers.addresses[id]!, { pool });
    for (let round = 0; round < SHARED_ROUNDS; round++) {
      if ((await httpGet(url, agent)) !== 'ok') throw new Error('unexpected HTTP response body');
      requests++;
      await echo.use((conn) => roundTrip(conn, `worker ${id} round ${round}\n`), AbortSignal.timeout(5_000));
      rawTrips++;
    }
  });
  mostOpen.stop();
  const stats = pool.stats();
  agent.destroy();
  await pool.close();
  const after = (await servers.counts()).accepted;
  const httpConnections = after[httpIndex]! - before[httpIndex]!;
  let tcpConnections = 0;
  for (let i = 0; i < SHARED_WORKERS; i++) tcpConnections += after[i]! - before[i]!;

  printTable(
    ['HTTP', 'raw TCP'],
    [
      ['requests / round trips done', requests, rawTrips],
      ['connections the servers accepted', httpConnections, tcpConnections],
    ],
  );
  console.log();
  printTable(
    ['the pool'],
    [
      ['connections opened (dials)', stats.dials],
      ['requests and round trips on a reused connection (reuses)', `${n(stats.reuses)} (${pct(stats.reuses, requests + rawTrips)})`],
      ['idle connections closed to make room (evictions)', stats.evictions],
      ['most connections open at once (in use + idle + closing)', mostOpen.most],
      ['limit (max)', stats.max],
    ],
  );
  const withinLimit = mostOpen.most <= stats.max;
  console.log(`\n   ${n(requests)} HTTP requests took ${n(httpConnections)} connections, and HTTP and TCP together ${withinLimit ? 'never went over' : 'WENT OVER'} the`);
  console.log(`   limit of ${stats.max}: both count against the same budget.\n`);
  if (workers.done !== SHARED_WORKERS) problems.push(`part 3: workers failed ${JSON.stringify(workers.failed)}`);
  if (!withinLimit) problems.push(`part 3: ${mostOpen.most} connections open at once, over the limit of ${stats.max}`);
  if (stats.dials !== httpConnections + tcpConnections) {
    problems.push(`part 3: the pool dialed ${stats.dials} times but the servers accepted ${httpConnections + tcpConnections}`);
  }
  if (!(await drained(servers))) problems.push('the servers still hold connections that were closed');
}

/** Connections the servers at `addresses` have accepted so far. */
async function acceptedBy(servers: ServerProcess, addresses: string[]): Promise<number> {
  const { accepted } = await servers.counts();
  return addresses.reduce((sum, address) => sum + accepted[servers.addresses.indexOf(address)]!, 0);
}

/** Waits (up to 2 s) until the servers have seen every connection close: they hear of it a moment later. */
async function drained(servers: ServerProcess): Promise<boolean> {
  for (let waited = 0; waited < 2_000; waited += 5) {
    if ((await servers.counts()).open.every((open) => open === 0)) return true;
    await sleep(5);
  }
  return false;
}
