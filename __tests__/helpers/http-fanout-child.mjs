// The client of __tests__/http-emfile.test.ts, run under a low `ulimit -n`
// (the server runs in another process: http-fanout-server.mjs).
//
// argv: client port requests origins workload stallMs
//   client: http-agent (connpool's HttpAgent, global pool), dispatcher
//     (connpool's createDispatcher, with undici.request), stock-http
//     (new http.Agent({ keepAlive: true })), stock-http-capped (the same with
//     maxTotalSockets: 100), stock-undici (new undici.Agent()).
//   workload: burst: all requests at once, request i to origin i % origins;
//     warm: first one request to each of 100 other origins (counted apart,
//     in `warmup`), and once they are done (their sockets idle), the burst.
//   Origin k is http://127.0.x.y:port/ (127.0.1.1, 127.0.1.2, ..., 250 per x).
//
// Prints one JSON line: how many requests finished (200 and the whole body),
// failed with EMFILE, or failed otherwise (by code). If no request finished
// or failed for `stallMs` while some were pending (counted once all were
// issued), the run stops there with `stalled: true`. `longestPause`: the
// longest time (s) without progress, `seconds`: from the first request issued.
import http from 'node:http';
import { Agent, request } from 'undici';
import { connectionLimit, getResourcePool } from '../../dist/index.js';
import { HttpAgent } from '../../dist/http/index.js';
import { createDispatcher } from '../../dist/undici/index.js';

const [client, portText, requestsText, originsText, workload, stallText] = process.argv.slice(2);
const [port, requests, origins, stallMs] = [portText, requestsText, originsText, stallText].map(Number);

const host = (k) => `127.0.${1 + Math.floor(k / 250)}.${1 + (k % 250)}`;
const outcome = { client, workload, requests, origins, limit: connectionLimit(), done: 0, emfile: 0, other: {}, stalled: false, seconds: 0 };

let lastProgress = performance.now();
/** The longest time without progress while requests were pending, in ms. */
let longestPause = 0;
function progressed() {
  const now = performance.now();
  longestPause = Math.max(longestPause, now - lastProgress);
  lastProgress = now;
}
function succeeded() {
  progressed();
  outcome.done++;
}
function failed(error) {
  progressed();
  const code = error?.code ?? error?.cause?.code ?? error?.name ?? String(error);
  if (code === 'EMFILE') outcome.emfile++;
  else outcome.other[code] = (outcome.other[code] ?? 0) + 1;
}

/** One GET through Node's HTTP client; never rejects. */
const viaHttp = (agent) => (k, i) =>
  new Promise((resolve) => {
    const fail = (error) => {
      failed(error);
      resolve();
    };
    http
      .get({ host: host(k), port, path: `/${i}`, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk) => (body += chunk));
        res.on('end', () => {
          if (res.statusCode === 200 && body === 'ok') succeeded();
          else failed({ code: `HTTP ${res.statusCode} ${JSON.stringify(body)}` });
          resolve();
        });
        res.on('error', fail);
      })
      .on('error', fail);
  });

/** One GET through undici; never rejects. */
const viaUndici = (dispatcher) => (k, i) =>
  request(`http://${host(k)}:${port}/${i}`, { dispatcher }).then(async (res) => {
    const body = await res.body.text();
    if (res.statusCode === 200 && body === 'ok') succeeded();
    else failed({ code: `HTTP ${res.statusCode} ${JSON.stringify(body)}` });
  }, failed);

const clients = {
  'http-agent': () => {
    const agent = new HttpAgent({ keepAlive: true });
    return [viaHttp(agent), () => agent.destroy()];
  },
  dispatcher: () => {
    const dispatcher = createDispatcher();
    return [viaUndici(dispatcher), () => dispatcher.close()];
  },
  'stock-http': () => {
    const agent = new http.Agent({ keepAlive: true });
    return [viaHttp(agent), () => agent.destroy()];
  },
  'stock-http-capped': () => {
    const agent = new http.Agent({ keepAlive: true, maxTotalSockets: 100 });
    return [viaHttp(agent), () => agent.destroy()];
  },
  'stock-undici': () => {
    const dispatcher = new Agent();
    return [viaUndici(dispatcher), () => dispatcher.destroy()];
  },
};
if (!(client in clients)) throw new Error(`unknown client ${client}`);
const [send, close] = clients[client]();
const isPooled = client === 'http-agent' || client === 'dispatcher';

/** Requests [0, count) at once, request i to origin base + i % origins. */
const fire = (count, base, origins) => Promise.all(Array.from({ length: count }, (_, i) => send(base + (i % origins), i)));

const WARM_ORIGINS = 100;
if (workload === 'warm') {
  await fire(WARM_ORIGINS, origins, WARM_ORIGINS);
  outcome.warmup = { done: outcome.done, emfile: outcome.emfile, other: outcome.other };
  Object.assign(outcome, { done: 0, emfile: 0, other: {} });
} else if (workload !== 'burst') {
  throw new Error(`unknown workload ${workload}`);
}
const start = performance.now();
const run = fire(requests, 0, origins);
// Issuing them all takes a while on a busy machine: pauses count from then on.
lastProgress = performance.now();
longestPause = 0;
let lastCheck = performance.now();
await new Promise((resolve) => {
  const watch = setInterval(() => {
    // Right after the event loop was busy, the I/O it held back runs first: judge on the next check.
    const now = performance.now();
    const wasBusy = now - lastCheck > 500;
    lastCheck = now;
    if (wasBusy || now - lastProgress < stallMs) return;
    outcome.stalled = true;
    clearInterval(watch);
    resolve();
  }, 50);
  run.then(() => {
    clearInterval(watch);
    resolve();
  });
});
outcome.seconds = Math.round(performance.now() - start) / 1000;
outcome.longestPause = Math.round(Math.max(longestPause, outcome.stalled ? performance.now() - lastProgress : 0)) / 1000;

// Closing is bounded too: a client that does not close within 5 s is reported, not waited for.
const closing = (async () => {
  await close();
  if (isPooled) {
    // The dispatcher's close() resolves before its sockets' 'close' events: give them a moment.
    for (let turn = 0; turn < 100 && getResourcePool().stats().inUse > 0; turn++) await new Promise((resolve) => setTimeout(resolve, 10));
    outcome.stats = getResourcePool().stats();
    await getResourcePool().close();
  }
  return true;
})().catch((error) => `close failed: ${error?.stack ?? error}`);
const closed = await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 5_000, 'close did not finish within 5 s'))]);
if (closed !== true) outcome.closed = closed;
console.log(JSON.stringify(outcome));
// Stock clients after a stall or EMFILE may still hold sockets: end here.
process.exit(0);
