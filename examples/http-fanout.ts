/**
 * HTTP on the descriptor budget: 10,000 requests fired at once at 1,000
 * origins, by a process limited to 256 open files (`ulimit -n 256`).
 *
 * One local HTTP server (in its own process, with the ordinary limit)
 * listens on 0.0.0.0; each loopback address http://127.0.x.y:PORT/ is an
 * origin of its own for the client. Each client runs in a fresh process
 * that this script starts under `ulimit -n 256` (`/bin/sh -c 'ulimit -n 256
 * && exec node ...'`), fires every request at once (request i to origin
 * i % 1,000), and reports how many finished, failed with EMFILE or failed
 * otherwise:
 *
 * - Node's `new http.Agent({ keepAlive: true })` and undici's `new Agent()`
 *   open a socket per waiting request and run out of descriptors.
 * - `HttpAgent` ('connpool/http') and `createDispatcher()` ('connpool/undici')
 *   take their sockets from connpool's process-wide pool, capped at
 *   `connectionLimit()` (200 under `ulimit -n 256`): requests wait for a
 *   slot, idle sockets of other origins are closed to make room.
 *
 * Then a second workload: 100 requests to 100 other origins first, whose
 * sockets are left idle, then the same burst. `http.Agent`'s
 * `maxTotalSockets: 100` copes with the plain burst, but here every socket
 * it may open is idle and kept for another origin: the burst waits until
 * those expire (nodejs/node#31942; the server keeps idle connections 30 s).
 * A run counts as stalled when no request has finished for 5 s.
 *
 * Usage: node build/examples/http-fanout.js [requests] [origins]
 * (default 10000 1000). It takes about a minute on two cores; run-all.ts
 * runs it with 2000 200 (about 30 s). Exit code 1 if a connpool client did
 * not finish every request without error.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { Agent, request, type Dispatcher } from 'undici';
import { connectionLimit, getResourcePool } from 'connpool';
import { HttpAgent } from 'connpool/http';
import { createDispatcher } from 'connpool/undici';

const LOW_LIMIT = 256;
/** Requests to other origins made first in the second workload, their sockets then left idle. */
const WARM_ORIGINS = 100;
/** No request finished or failed for this long while some were pending: stalled. */
const STALL_MS = 5_000;

type ClientName = keyof typeof CLIENTS;
type Workload = 'burst' | 'warm';

/** What a client process reports. */
interface Outcome {
  limit: number;
  done: number;
  emfile: number;
  other: Record<string, number>;
  stalled: boolean;
  seconds: number;
  /** Connections connpool opened, for the connpool clients. */
  dials?: number;
  /** Whether the client (and for connpool's, the pool) closed within 5 s. */
  closed?: boolean;
}

/** Origin k: 127.0.1.1, 127.0.1.2, ..., 250 per third byte. */
const host = (k: number): string => `127.0.${1 + Math.floor(k / 250)}.${1 + (k % 250)}`;

/** A client: one GET (resolves on a 200 with the body 'ok', rejects otherwise), and how it closes. */
interface Client {
  get(origin: number, port: number): Promise<void>;
  close(): Promise<unknown> | void;
}

function nodeClient(agent: http.Agent): Client {
  return {
    get: (origin, port) =>
      new Promise<void>((resolve, reject) => {
        http
          .get({ host: host(origin), port, path: '/', agent }, (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
            res.on('end', () => (res.statusCode === 200 && body === 'ok' ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
            res.on('error', reject);
          })
          .on('error', reject);
      }),
    close: () => agent.destroy(),
  };
}

function undiciClient(dispatcher: Dispatcher, close: () => Promise<unknown>): Client {
  return {
    get: async (origin, port) => {
      const res = await request(`http://${host(origin)}:${port}/`, { dispatcher });
      const body = await res.body.text();
      if (res.statusCode !== 200 || body !== 'ok') throw new Error(`HTTP ${res.statusCode}`);
    },
    close,
  };
}

const CLIENTS = {
  'http.Agent({ keepAlive: true })': () => nodeClient(new http.Agent({ keepAlive: true })),
  'http.Agent({ keepAlive: true, maxTotalSockets: 100 })': () => nodeClient(new http.Agent({ keepAlive: true, maxTotalSockets: 100 })),
  'HttpAgent() (connpool/http)': () => nodeClient(new HttpAgent({ keepAlive: true })),
  'undici new Agent()': () => {
    const agent = new Agent();
    return undiciClient(agent, () => agent.destroy());
  },
  'createDispatcher() (connpool/undici)': () => {
    const dispatcher = createDispatcher();
    return undiciClient(dispatcher, () => dispatcher.close());
  },
} satisfies Record<string, () => Client>;

const isConnpool = (name: ClientName): boolean => name.includes('connpool');

const [role, ...args] = process.argv.slice(2);
if (role === '--server') await serve();
else if (role === '--client') await runClient(args[0] as ClientName, args[1] as Workload, Number(args[2]), Number(args[3]), Number(args[4]));
else await main(Number(role ?? 10_000), Number(args[0] ?? 1_000));

/** Starts the server process, runs each client in its own process under the low limit, prints the tables. */
async function main(requests: number, origins: number): Promise<void> {
  if (!(requests > 0 && origins > 0 && origins + WARM_ORIGINS <= 250 * 254)) throw new RangeError('usage: http-fanout.js [requests] [origins]');
  const server = spawn(process.execPath, [fileURLToPath(import.meta.url), '--server'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const problems: string[] = [];
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject).once('exit', () => reject(new Error('the server exited')));
      server.stdout!.once('data', (data: Buffer) => resolve(Number(String(data).trim())));
    });
    const n = (value: number): string => value.toLocaleString('en-US');
    console.log(`${n(requests)} HTTP requests at once over ${n(origins)} origins (http://127.0.x.y:${port}/),`);
    console.log(`each client in its own process under ulimit -n ${LOW_LIMIT}.\n`);

    const table = async (workload: Workload, names: ClientName[]): Promise<void> => {
      const rows: string[][] = [['client', 'done', 'EMFILE', 'other', 'seconds', 'connpool dials']];
      for (const name of names) {
        const outcome = await runUnderLowLimit(name, workload, port, requests, origins);
        const other = Object.values(outcome.other).reduce((sum, count) => sum + count, 0);
        const done = outcome.stalled ? `stalled: ${n(outcome.done)} of ${n(requests)} done` : n(outcome.done);
        rows.push([name, done, n(outcome.emfile), n(other), outcome.stalled ? '-' : outcome.seconds.toFixed(2), outcome.dials === undefined ? '' : n(outcome.dials)]);
        if (isConnpool(name) && (outcome.done !== requests || outcome.emfile !== 0 || other !== 0 || outcome.stalled || !outcome.closed))
          problems.push(`${name} (${workload}): ${JSON.stringify(outcome)}`);
        if (isConnpool(name) && outcome.limit !== 200) console.log(`(connectionLimit() is ${outcome.limit} under ulimit -n ${LOW_LIMIT} here)`);
      }
      printTable(rows);
    };

    await table('burst', [
      'http.Agent({ keepAlive: true })',
      'HttpAgent() (connpool/http)',
      'undici new Agent()',
      'createDispatcher() (connpool/undici)',
      'http.Agent({ keepAlive: true, maxTotalSockets: 100 })',
    ]);
    console.log(`\nThe same burst after ${WARM_ORIGINS} requests to ${WARM_ORIGINS} other origins, whose sockets are left idle:\n`);
    await table('warm', ['http.Agent({ keepAlive: true, maxTotalSockets: 100 })', 'HttpAgent() (connpool/http)', 'createDispatcher() (connpool/undici)']);
    console.log(`\n("stalled": no request finished for ${STALL_MS / 1_000} s; the run was stopped there.)`);
  } finally {
    server.kill();
  }
  if (problems.length > 0) {
    console.error(`\nFAILED: ${problems.join('\n')}`);
    process.exitCode = 1;
  }
}

/** Re-runs this script as one client under `ulimit -n 256` and reads the JSON line it prints. */
async function runUnderLowLimit(name: ClientName, workload: Workload, port: number, requests: number, origins: number): Promise<Outcome> {
  const node = [process.execPath, fileURLToPath(import.meta.url), '--client', name, workload, String(port), String(requests), String(origins)];
  const child: ChildProcess = spawn('/bin/sh', ['-c', `ulimit -n ${LOW_LIMIT} && exec "$0" "$@"`, ...node], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (code !== 0) throw new Error(`the ${name} process exited with code ${code}`);
  return JSON.parse(output.trim().split('\n').pop()!) as Outcome;
}

/** In a client process, under the low limit: fires the requests, prints one JSON line, exits. */
async function runClient(name: ClientName, workload: Workload, port: number, requests: number, origins: number): Promise<void> {
  const client = CLIENTS[name]();
  const outcome: Outcome = { limit: connectionLimit(), done: 0, emfile: 0, other: {}, stalled: false, seconds: 0 };
  let lastProgress = performance.now();
  const fire = (count: number, base: number, spread: number): Promise<unknown> =>
    Promise.all(
      Array.from({ length: count }, (_, i) =>
        client.get(base + (i % spread), port).then(
          () => {
            lastProgress = performance.now();
            outcome.done++;
          },
          (error: { code?: string; cause?: { code?: string }; name?: string }) => {
            lastProgress = performance.now();
            const code = error.code ?? error.cause?.code ?? error.name ?? 'unknown';
            if (code === 'EMFILE') outcome.emfile++;
            else outcome.other[code] = (outcome.other[code] ?? 0) + 1;
          },
        ),
      ),
    );

  if (workload === 'warm') {
    await fire(WARM_ORIGINS, origins, WARM_ORIGINS); // origins [origins, origins + 100)
    Object.assign(outcome, { done: 0, emfile: 0, other: {} });
  }
  const start = performance.now();
  const finished = fire(requests, 0, origins);
  lastProgress = performance.now(); // issuing them all takes a moment: the stall watch starts then
  let lastCheck = performance.now();
  outcome.stalled = await new Promise<boolean>((resolve) => {
    const watch = setInterval(() => {
      // Right after the event loop was busy, the I/O it held back runs first: judge on the next check.
      const now = performance.now();
      const wasBusy = now - lastCheck > 500;
      lastCheck = now;
      if (wasBusy || now - lastProgress < STALL_MS) return;
      clearInterval(watch);
      resolve(true);
    }, 50);
    void finished.then(() => {
      clearInterval(watch);
      resolve(false);
    });
  });
  outcome.seconds = (performance.now() - start) / 1_000;
  if (isConnpool(name)) outcome.dials = getResourcePool().stats().dials;
  // Closing is bounded too; a stalled stock client may still hold sockets and queued requests.
  const closing = (async () => {
    await client.close();
    if (isConnpool(name)) await getResourcePool().close();
    return true;
  })();
  outcome.closed = await Promise.race([closing.catch(() => false), new Promise<false>((resolve) => setTimeout(resolve, 5_000, false))]);
  console.log(JSON.stringify(outcome));
  process.exit(0);
}

/** The server process: 'ok' to every request, keep-alive on, idle connections kept 30 s. */
async function serve(): Promise<void> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.end('ok');
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket) => socket.on('error', () => {}));
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '0.0.0.0', backlog: 4096 }, resolve));
  console.log(String((server.address() as { port: number }).port));
  process.stdin.resume().on('end', () => process.exit(0));
}

/** Prints rows as a table: the first column left-aligned, the others right-aligned. */
function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  for (const row of rows) console.log(row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('   '));
}
