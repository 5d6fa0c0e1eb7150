import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runScript } from './helpers/child.js';
import { reportFigure } from './helpers/figures.js';

/** What a client child saw (helpers/http-fanout-child.mjs). */
interface Outcome {
  client: string;
  workload: string;
  requests: number;
  origins: number;
  limit: number;
  done: number;
  emfile: number;
  other: Record<string, number>;
  /** No request finished or failed for STALL_MS (once all were issued) while some were pending: the run stopped there. */
  stalled: boolean;
  seconds: number;
  /** The longest time without progress once all requests were issued, in s. */
  longestPause: number;
  /** The 100 requests to other origins that the 'warm' workload makes first. */
  warmup?: { done: number; emfile: number; other: Record<string, number> };
  stats?: Record<string, number>;
  /** Set only if closing the client failed or did not finish. */
  closed?: string;
}

const ULIMIT = 256;
/**
 * The fan-out: REQUESTS requests at once over ORIGINS origins. The headline
 * figure is 10,000 over 1,000 (examples/http-fanout.ts, or here with
 * CONNPOOL_FANOUT=10000x1000); the suite runs 3,000 over 600 to stay quick
 * on two cores: still 15 times connpool's cap of 200 under `ulimit -n 256`.
 */
const [REQUESTS, ORIGINS] = (process.env.CONNPOOL_FANOUT ?? '3000x600').split('x').map(Number) as [number, number];
/**
 * No request finished or failed for this long after all were issued:
 * stalled. The server keeps idle connections 30 s, so a stall lasts longer;
 * connpool's clients never pause for more than a fraction of this.
 */
const STALL_MS = 3_000;

let server: ChildProcess;
let port: string;
/** The burst through each client, started in beforeAll. */
let burst: Promise<Outcome[]>;
/**
 * The capped stock agent on the 'warm' workload, started in beforeAll too:
 * it spends its time waiting out STALL_MS, which costs the burst nothing.
 */
let capped: Promise<Outcome>;
beforeAll(async () => {
  // The server needs a descriptor per connection: it runs in its own process with the ordinary limit.
  server = spawn(process.execPath, [fileURLToPath(new URL('./helpers/http-fanout-server.mjs', import.meta.url))], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  port = await new Promise<string>((resolve, reject) => {
    server.once('error', reject);
    server.stdout!.once('data', (data: Buffer) => resolve(String(data).trim()));
  });
  burst = Promise.all([run('http-agent', 'burst'), run('dispatcher', 'burst'), run('stock-http', 'burst'), run('stock-undici', 'burst')]);
  capped = run('stock-http-capped', 'warm');
  // Awaited by the tests; a failure before then is not an unhandled rejection.
  burst.catch(() => {});
  capped.catch(() => {});
});
afterAll(async () => {
  await Promise.allSettled([burst, capped]);
  await new Promise<void>((resolve) => {
    server.once('exit', () => resolve());
    server.kill();
  });
});

function run(client: string, workload: 'burst' | 'warm'): Promise<Outcome> {
  return runScript<Outcome>('http-fanout-child.mjs', [client, port, String(REQUESTS), String(ORIGINS), workload, String(STALL_MS)], {
    ulimit: ULIMIT,
  });
}

function summary(outcome: Outcome): string {
  const progress = outcome.stalled ? `stalled: ${outcome.done} of ${outcome.requests} done` : `done ${outcome.done}`;
  return `${outcome.client}: ${progress}, EMFILE ${outcome.emfile}, other ${JSON.stringify(outcome.other)}, ${outcome.seconds} s (longest pause ${outcome.longestPause} s)${outcome.stats ? `, stats ${JSON.stringify(outcome.stats)}` : ''}`;
}

test(`under ulimit -n ${ULIMIT}, ${REQUESTS} HTTP requests at once over ${ORIGINS} origins: HttpAgent and createDispatcher finish them all with no EMFILE; stock http.Agent (keepAlive) and undici Agent hit EMFILE`, async () => {
  const [httpAgent, dispatcher, stockHttp, stockUndici] = (await burst) as [Outcome, Outcome, Outcome, Outcome];
  reportFigure(`http-emfile: burst of ${REQUESTS} over ${ORIGINS} origins under ulimit -n ${ULIMIT}:\n  ${[httpAgent, dispatcher, stockHttp, stockUndici].map(summary).join('\n  ')}`);

  for (const pooled of [httpAgent, dispatcher]) {
    expect(pooled.limit).toBe(200);
    expect(pooled).toMatchObject({ done: REQUESTS, emfile: 0, other: {}, stalled: false });
    expect(pooled.closed).toBeUndefined();
    expect(pooled.stats).toMatchObject({ max: 200, inUse: 0, waiting: 0 });
  }
  for (const stock of [stockHttp, stockUndici]) {
    expect(stock.limit).toBe(200);
    expect(stock.emfile).toBeGreaterThan(0);
    expect(stock.done).toBeLessThan(REQUESTS);
  }
}, 120_000);

test(`nodejs/node#31942: after 100 requests to other origins, http.Agent with maxTotalSockets: 100 stalls on the burst (its sockets sit idle for those origins); HttpAgent evicts them and finishes`, async () => {
  // After the burst: the two do not compete for the CPU.
  const [stock, httpAgent] = [await capped, await run('http-agent', 'warm')];
  reportFigure(`http-emfile: 100 requests to 100 origins, then ${REQUESTS} over ${ORIGINS} others, under ulimit -n ${ULIMIT}:\n  ${[stock, httpAgent].map(summary).join('\n  ')}`);

  for (const outcome of [stock, httpAgent]) expect(outcome.warmup).toEqual({ done: 100, emfile: 0, other: {} });
  expect(stock.stalled).toBe(true);
  expect(stock.done).toBeLessThan(REQUESTS);
  expect(stock.emfile).toBe(0);
  expect(httpAgent).toMatchObject({ done: REQUESTS, emfile: 0, other: {}, stalled: false });
  expect(httpAgent.closed).toBeUndefined();
  expect(httpAgent.stats).toMatchObject({ max: 200, inUse: 0, waiting: 0 });
}, 120_000);
