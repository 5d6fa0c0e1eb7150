// One seed of the HTTP adapters' random workload (__tests__/http-workload.test.ts):
// requests through HttpAgent and HttpsAgent to the servers of
// http-server-child.mjs (another process), each let go of in a way drawn at
// random: read to the end, destroyed at once, after a delay, on its 'socket',
// on its response, after the first chunk of the body, by its `signal`
// (aborted before or during the request), by its `timeout`, or left to a route
// that never answers. Some seeds also destroy the agent mid-run.
//
// argv: seed httpPort httpsPort caPath
//
// Checked, printed as one JSON line { seed, failures, summary }:
//  - every request emits 'close' exactly once, and 'error' at most once;
//  - nothing escapes to the process (uncaughtException, unhandledRejection);
//  - at every sample and at rest, in use + idle + releasing <= max;
//  - at rest nothing is in use or waiting; once the agents are destroyed and
//    the pool closed, no socket of the pool is open.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { mulberry32, openSocketFds } from './child-tools.mjs';
import { ResourcePool } from '../../dist/index.js';
import { HttpAgent, HttpsAgent } from '../../dist/http/index.js';

const [seedText, httpPortText, httpsPortText, caPath] = process.argv.slice(2);
const seed = Number(seedText);
const random = mulberry32(seed);
const pick = (items) => items[Math.floor(random() * items.length)];
const between = (low, high) => low + Math.floor(random() * (high - low + 1));

const failures = [];
const fail = (message) => {
  if (failures.length < 50) failures.push(message);
};
process.on('uncaughtException', (error) => fail(`uncaught exception: ${error?.code ?? ''} ${error?.stack ?? error}`));
process.on('unhandledRejection', (error) => fail(`unhandled rejection: ${error?.code ?? ''} ${error?.stack ?? error}`));

const baselineSockets = openSocketFds();
const max = between(1, 6);
const pool = new ResourcePool({ max, name: `http-workload-${seed}` });
const agentOptions = () => ({
  pool,
  keepAlive: random() < 0.8,
  ...(random() < 0.4 ? { maxSockets: between(1, 3) } : {}),
  ...(random() < 0.3 ? { acquireTimeout: between(5, 200) } : {}),
});
const ca = readFileSync(caPath);
// STOCK=1: the same requests through Node's own agents (no pool), to check the workload itself.
const isStock = process.env.STOCK === '1';
const agents = isStock
  ? [new http.Agent({ keepAlive: true }), new https.Agent({ keepAlive: true, ca })]
  : [new HttpAgent(agentOptions()), new HttpsAgent({ keepAlive: true, ...agentOptions(), ca })];
// The server's certificate names localhost and 127.0.0.1; plain HTTP has an origin per loopback address.
const targets = [
  { agent: agents[0], module: http, port: Number(httpPortText), hosts: ['127.0.0.1', '127.0.0.2', '127.0.0.3', 'localhost'] },
  { agent: agents[1], module: https, port: Number(httpsPortText), hosts: ['127.0.0.1', 'localhost'] },
];

/** Routes that answer, and ones that never finish (only with a fate that lets go). */
const finishing = ['/hello', '/chunked', '/echo', '/digest', '/close', '/short', '/204', '/end-after'];
const unfinished = ['/stall', '/partial'];
const fates = ['read', 'read', 'read', 'destroy-now', 'destroy-later', 'destroy-on-socket', 'destroy-on-response',
  'destroy-mid-body', 'abort-before', 'abort-later', 'timeout', 'dump'];
const letsGo = new Set(['destroy-now', 'destroy-later', 'destroy-on-socket', 'destroy-on-response', 'destroy-mid-body', 'abort-before', 'abort-later', 'timeout']);

const tally = {};
const count = (key) => void (tally[key] = (tally[key] ?? 0) + 1);
let sampledOver = 0;

function checkStats(when) {
  if (isStock) return;
  const { inUse, idle, releasing } = pool.stats();
  if (inUse + idle + releasing > max) {
    sampledOver++;
    fail(`${when}: in use ${inUse} + idle ${idle} + releasing ${releasing} > max ${max}`);
  }
}

/** One request, let go of as `fate` says; resolves once it has closed (or fails the seed if it never does). */
function one(index) {
  const target = pick(targets);
  const fate = pick(fates);
  const path = pick(letsGo.has(fate) && random() < 0.3 ? unfinished : finishing);
  const method = path === '/echo' || path === '/digest' ? 'POST' : 'GET';
  const controller = fate === 'abort-before' || fate === 'abort-later' ? new AbortController() : undefined;
  if (fate === 'abort-before') controller.abort();
  count(`fate ${fate}`);
  return new Promise((resolve) => {
    let closes = 0;
    let errors = 0;
    const req = target.module.request({
      host: pick(target.hosts),
      port: target.port,
      path: `${path}?${index}`,
      method,
      agent: target.agent,
      ...(controller ? { signal: controller.signal } : {}),
      ...(fate === 'timeout' ? { timeout: between(1, 30) } : {}),
    });
    const watchdog = setTimeout(() => {
      fail(`request ${index} (${fate} ${method} ${path} via ${target.agent.constructor.name}) did not close within 10 s`);
      resolve();
    }, 10_000);
    req.on('error', (error) => {
      if (++errors > 1) fail(`request ${index} emitted 'error' twice (${error.code})`);
      count(`error ${error.code ?? error.name}`);
    });
    req.on('close', () => {
      if (++closes > 1) return fail(`request ${index} emitted 'close' twice`);
      clearTimeout(watchdog);
      setImmediate(resolve);
    });
    if (fate === 'timeout') req.on('timeout', () => req.destroy());
    if (fate === 'destroy-on-socket') req.on('socket', () => req.destroy());
    req.on('response', (res) => {
      count(`status ${res.statusCode}`);
      res.on('error', () => {});
      if (fate === 'destroy-on-response') return void req.destroy();
      if (fate === 'destroy-mid-body') return void res.once('data', () => req.destroy());
      if (fate === 'dump') return void res.resume();
      res.on('data', () => {});
    });
    if (method === 'POST') req.write(Buffer.alloc(between(0, 64 * 1024), index & 0xff));
    req.end();
    if (fate === 'destroy-now') req.destroy();
    else if (fate === 'destroy-later') setTimeout(() => req.destroy(), between(0, 20));
    else if (fate === 'abort-later') setTimeout(() => controller.abort(), between(0, 20));
    // Routes that never finish, with a fate that may never fire (a response that never comes): bounded here.
    if (unfinished.includes(path)) setTimeout(() => req.destroy(), 200);
  });
}

const sampler = setInterval(() => checkStats('sample'), 2);
const total = between(60, 160);
const concurrency = between(1, 24);
const destroyAgentAt = random() < 0.2 ? between(0, total - 1) : -1;
let next = 0;
async function worker() {
  while (next < total) {
    const index = next++;
    if (index === destroyAgentAt) {
      count('agent destroyed');
      pick(agents).destroy();
    }
    await one(index);
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
clearInterval(sampler);
// Let sockets closing after the last request finish closing.
await new Promise((resolve) => setTimeout(resolve, 50));
checkStats('at rest');
const rest = pool.stats();
if (isStock) rest.inUse = rest.waiting = 0;
if (rest.inUse !== 0) fail(`at rest: ${rest.inUse} in use`);
if (rest.waiting !== 0) fail(`at rest: ${rest.waiting} waiting`);
for (const agent of agents) agent.destroy();
await pool.close();
await new Promise((resolve) => setTimeout(resolve, 20));
const after = pool.stats();
const open = openSocketFds() - baselineSockets;
if (after.inUse + after.idle + after.releasing !== 0) fail(`after close: ${JSON.stringify(after)}`);
if (open > 0) fail(`after close: ${open} socket(s) still open`);

console.log(JSON.stringify({ seed, failures, summary: { max, total, concurrency, destroyAgentAt, rest, tally } }));
process.exit(0);
