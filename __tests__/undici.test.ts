/**
 * connpool/undici: createDispatcher() against real servers, node's in a child
 * process (helpers/http-server-child.mjs) and nginx, so that every socket of
 * this process past the IPC channel is a client's.
 *
 * jest fails the running test on any uncaught exception or unhandled
 * rejection of this process (listeners added with process.on() here would not
 * hear them: jest gives each test file its own copy of `process`).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { request, type Dispatcher } from 'undici';
import { New, ResourceLimitExceededError, ResourcePool } from '../lib/index.js';
import { createDispatcher } from '../lib/undici/index.js';
import { runModule } from './helpers/child.js';
import { distIndex } from './helpers/dist.js';
import { startHttpServers, startNginx, total, type HttpServers, type Nginx } from './helpers/http-servers.js';
import { makeCerts, openSocketFds, roundTrip, type Certs } from './helpers/servers.js';

const MiB = 1024 * 1024;

let certs: Certs;
let servers: HttpServers;
let pool: ResourcePool;
/** Dispatchers made by a test, closed after it. */
let dispatchers: Dispatcher[] = [];

beforeAll(async () => {
  certs = makeCerts();
  servers = await startHttpServers(certs);
});

afterAll(async () => {
  await servers?.close();
});

beforeEach(() => {
  pool = new ResourcePool({ max: 16 });
});

afterEach(async () => {
  await Promise.all(dispatchers.map((dispatcher) => dispatcher.close()));
  dispatchers = [];
  await eventually(() => pool.stats().inUse === 0 && pool.stats().releasing === 0, 'the pool to have nothing in use');
  expect(pool.stats()).toMatchObject({ inUse: 0, waiting: 0 });
  await pool.close();
});

/** createDispatcher(), closed after the test. */
function dispatcherFor(options: Parameters<typeof createDispatcher>[0] = {}): Dispatcher {
  const dispatcher = createDispatcher({ pool, ...options });
  dispatchers.push(dispatcher);
  return dispatcher;
}

/**
 * For tests of what crosses one connection: undici keeps its socket between
 * requests (no handoff to the pool), whatever the pace of the test.
 */
const KEEP = { idleHandoff: 60_000 };

/** Resolves when `predicate` holds; throws after `turns` turns of about 2 ms. */
async function eventually(predicate: () => boolean, what: string, turns = 2_500): Promise<void> {
  for (let turn = 0; turn < turns; turn++) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Resolves once undici has handed its idle sockets back to `of` (after `idleHandoff` ms without a request), leaving `inUse`. */
function handedBack(of: ResourcePool = pool, inUse = 0): Promise<void> {
  return eventually(() => of.stats().inUse === inUse && of.stats().releasing === 0, 'undici to hand its sockets back to the pool');
}

/** Resolves once the server has seen connection `conn` (its X-Conn) close: it learns of a client's close a little later. */
async function closedAtServer(conn: string): Promise<void> {
  for (let turn = 0; turn < 2_500; turn++) {
    if (!(await servers.counts()).openConns.includes(conn)) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`gave up waiting for the server to see connection ${conn} close`);
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The server's serial number of the connection that served the request. */
  conn: string | undefined;
}

/**
 * undici.request(), the whole response, then one turn of the event loop:
 * undici reuses a socket only a full turn after its response (client-h1's
 * `setImmediate(resume)`), and a request sent before that gets a second
 * connection, with or without connpool.
 */
async function send(url: string, options: Parameters<typeof request>[1] = {}): Promise<Reply> {
  const res = await request(url, options);
  const body = Buffer.from(await res.body.arrayBuffer());
  await new Promise((resolve) => setImmediate(resolve));
  return { status: res.statusCode, headers: res.headers, body, conn: res.headers['x-conn'] as string | undefined };
}

/** A request whose response or error is collected, for tests that act while it runs. */
function start(url: string, options: Parameters<typeof request>[1] = {}): Promise<Reply | Error> {
  return send(url, options).catch((error: Error) => error);
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

function payload(bytes: number): Buffer {
  const buffer = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) buffer[i] = (i * 31 + (i >> 12)) & 0xff;
  return buffer;
}

const httpUrl = (path: string, host = '127.0.0.1'): string => `http://${host}:${servers.ports.http}${path}`;
const httpsUrl = (path: string): string => `https://127.0.0.1:${servers.ports.https}${path}`;
const loopback = (i: number): string => `127.0.0.${i + 2}`;

async function accepted(key: string): Promise<number> {
  return (await servers.counts()).accepted[key] ?? 0;
}

describe('createDispatcher: requests and responses', () => {
  test('a GET gets the body; after idleHandoff the socket is idle in the pool, not in use', async () => {
    const dispatcher = dispatcherFor();
    const reply = await send(httpUrl('/hello'), { dispatcher });
    expect([reply.status, reply.body.toString()]).toEqual([200, 'hello']);
    await handedBack();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
  });

  test('N sequential requests use exactly one server connection; in between the pool has 1 idle, 0 in use', async () => {
    const dispatcher = dispatcherFor();
    const before = await accepted('http|127.0.0.1');
    const conns = new Set<string | undefined>();
    for (let i = 0; i < 5; i++) {
      const reply = await send(httpUrl(`/hello?${i}`), { dispatcher });
      expect(reply.body.toString()).toBe('hello');
      conns.add(reply.conn);
      await handedBack();
      expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
    }
    expect(conns.size).toBe(1);
    expect((await accepted('http|127.0.0.1')) - before).toBe(1);
  });

  test('sequential requests spaced around idleHandoff all reuse one connection: a handed-back socket is never closed for it', async () => {
    const dispatcher = dispatcherFor({ idleHandoff: 10 });
    const before = await accepted('http|127.0.0.1');
    const conns = new Set<string | undefined>();
    for (let pass = 0; pass < 8; pass++) {
      for (let gap = 6; gap <= 16; gap++) {
        conns.add((await send(httpUrl(`/hello?gap=${gap}`), { dispatcher })).conn);
        await new Promise((resolve) => setTimeout(resolve, gap));
      }
    }
    expect({ connections: (await accepted('http|127.0.0.1')) - before, distinct: conns.size }).toEqual({ connections: 1, distinct: 1 });
  });

  test('a POST of 4 MiB, a streamed POST and a 4 MiB echo arrive whole, on one connection', async () => {
    const dispatcher = dispatcherFor(KEEP);
    const body = payload(4 * MiB);
    const digest = await send(httpUrl('/digest'), { dispatcher, method: 'POST', body });
    expect(JSON.parse(digest.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) });
    const pieces = Readable.from(
      (function* () {
        for (let offset = 0; offset < body.length; offset += 64 * 1024) yield body.subarray(offset, offset + 64 * 1024);
      })(),
    );
    const streamed = await send(httpUrl('/digest'), { dispatcher, method: 'POST', body: pieces });
    expect(JSON.parse(streamed.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) });
    const echo = await send(httpUrl('/echo'), { dispatcher, method: 'POST', body });
    expect(echo.headers['transfer-encoding']).toBe('chunked');
    expect(echo.body.equals(body)).toBe(true);
    expect([digest.conn, streamed.conn, echo.conn]).toEqual(Array(3).fill(digest.conn));
  });

  test('a chunked response arrives whole and in order; 204 and 304 have no body; all on one connection', async () => {
    const dispatcher = dispatcherFor(KEEP);
    const chunked = await send(httpUrl('/chunked'), { dispatcher });
    expect(chunked.headers['transfer-encoding']).toBe('chunked');
    expect(chunked.body.length).toBe(64 * 1024);
    for (let i = 0; i < 64; i++) expect(chunked.body.subarray(i * 1024, (i + 1) * 1024).equals(Buffer.alloc(1024, i))).toBe(true);
    const empty = await send(httpUrl('/204'), { dispatcher });
    expect([empty.status, empty.body.length]).toEqual([204, 0]);
    const fresh = await send(httpUrl('/304'), { dispatcher });
    const cached = await send(httpUrl('/304'), { dispatcher, headers: { 'if-none-match': fresh.headers.etag as string } });
    expect([cached.status, cached.body.length]).toEqual([304, 0]);
    const after = await send(httpUrl('/hello'), { dispatcher });
    expect(after.body.toString()).toBe('hello');
    expect([chunked.conn, empty.conn, fresh.conn, cached.conn, after.conn]).toEqual(Array(5).fill(chunked.conn));
  });

  test('HEAD has no body; undici ends that connection after it (nodejs/undici#258), and it is closed, not idled', async () => {
    const dispatcher = dispatcherFor();
    const head = await send(httpUrl('/hello'), { dispatcher, method: 'HEAD' });
    expect([head.status, head.headers['content-length'], head.body.length]).toEqual([200, '5', 0]);
    await handedBack();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    expect((await servers.counts()).openConns).not.toContain(head.conn);
    const after = await send(httpUrl('/hello'), { dispatcher });
    expect([after.body.toString(), after.conn === head.conn]).toEqual(['hello', false]);
  });

  test('fetch(url, { dispatcher }) (Node\'s own fetch) goes through the pool and reuses the connection', async () => {
    const dispatcher = dispatcherFor();
    const first = await fetch(httpUrl('/hello'), { dispatcher } as unknown as RequestInit);
    expect([first.status, await first.text()]).toEqual([200, 'hello']);
    await handedBack();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
    const body = payload(MiB);
    const posted = await fetch(httpUrl('/digest'), { dispatcher, method: 'POST', body } as unknown as RequestInit);
    expect(await posted.json()).toEqual({ bytes: body.length, sha256: sha256(body) });
    expect(posted.headers.get('x-conn')).toBe(first.headers.get('x-conn'));
  });
});

describe('createDispatcher: when a socket is not reused', () => {
  test('a response with Connection: close: closed, not idle; the next request gets a new connection', async () => {
    const dispatcher = dispatcherFor();
    const bye = await send(httpUrl('/close'), { dispatcher });
    expect(bye.body.toString()).toBe('bye');
    await handedBack();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    expect((await send(httpUrl('/hello'), { dispatcher })).conn).not.toBe(bye.conn);
  });

  test('a server keep-alive hint of timeout=1: the socket is not kept', async () => {
    const dispatcher = dispatcherFor();
    const short = await send(httpUrl('/short'), { dispatcher });
    expect(short.headers['keep-alive']).toBe('timeout=1');
    await handedBack();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    expect((await send(httpUrl('/hello'), { dispatcher })).conn).not.toBe(short.conn);
  });

  // undici dials a spare connection to the origin right after such an abort
  // (stock undici too); connpool keeps it, unused, in the idle list. What
  // matters: the abandoned socket is closed, and never serves another request.
  test('a response abandoned mid-body (its signal aborts): that socket is closed, never reused', async () => {
    const dispatcher = dispatcherFor();
    const controller = new AbortController();
    const res = await request(httpUrl('/partial'), { dispatcher, signal: controller.signal });
    const conn = res.headers['x-conn'] as string;
    const reading = (async () => {
      for await (const chunk of res.body) {
        if ((chunk as Buffer).length > 0) controller.abort();
      }
    })();
    await expect(reading).rejects.toMatchObject({ name: 'AbortError' });
    await handedBack();
    await closedAtServer(conn);
    const next = await send(httpUrl('/hello'), { dispatcher });
    expect(next.body.toString()).toBe('hello');
    expect(next.conn).not.toBe(conn);
  });

  test('a response abandoned mid-body (body.destroy()): that socket is closed, never reused', async () => {
    const dispatcher = dispatcherFor();
    const res = await request(httpUrl('/partial'), { dispatcher });
    const conn = res.headers['x-conn'] as string;
    await new Promise<void>((resolve) => res.body.once('data', () => resolve()));
    res.body.on('error', () => {});
    res.body.destroy();
    await handedBack();
    await closedAtServer(conn);
    const next = await send(httpUrl('/hello'), { dispatcher });
    expect(next.body.toString()).toBe('hello');
    expect(next.conn).not.toBe(conn);
  });

  test('a request that times out (headersTimeout): its socket is not reused', async () => {
    const dispatcher = dispatcherFor();
    const outcome = await start(httpUrl('/stall'), { dispatcher, headersTimeout: 50 });
    expect(outcome).toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' });
    await handedBack();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    const before = await accepted('http|127.0.0.1');
    await send(httpUrl('/hello'), { dispatcher });
    expect((await accepted('http|127.0.0.1')) - before).toBe(1);
  });

  test('the server ends a keep-alive socket after the response: the next request succeeds on a new connection', async () => {
    const dispatcher = dispatcherFor();
    const ending = await send(httpUrl('/end-after'), { dispatcher });
    expect(ending.body.toString()).toBe('ending');
    await eventually(() => pool.stats().idle === 0 && pool.stats().inUse === 0 && pool.stats().releasing === 0, 'the ended socket to leave the pool');
    const next = await send(httpUrl('/hello'), { dispatcher });
    expect(next.body.toString()).toBe('hello');
    expect(next.conn).not.toBe(ending.conn);
  });
});

describe('createDispatcher: the budget', () => {
  test('40 origins on a pool of 8: all requests succeed, never more than 8 client sockets open, idle ones are evicted', async () => {
    const small = new ResourcePool({ max: 8 });
    const dispatcher = createDispatcher({ pool: small });
    try {
      const baseline = openSocketFds();
      let peak = 0;
      const sample = (): void => {
        peak = Math.max(peak, openSocketFds() - baseline);
      };
      const sampler = setInterval(sample, 1);
      const before = total((await servers.counts()).accepted, 'http|');
      const requests: Array<Promise<Reply>> = [];
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 40; i++) {
          requests.push(
            send(httpUrl(`/hello?${round}`, loopback(i)), { dispatcher }).then((reply) => {
              sample();
              return reply;
            }),
          );
        }
      }
      const replies = await Promise.all(requests);
      clearInterval(sampler);
      sample();
      expect(replies.map((reply) => reply.body.toString())).toEqual(requests.map(() => 'hello'));
      expect(peak).toBeLessThanOrEqual(8);
      expect(peak).toBeGreaterThan(0);
      const counts = await servers.counts();
      expect(total(counts.accepted, 'http|') - before).toBeGreaterThan(8);
      for (let i = 0; i < 40; i++) expect(counts.accepted[`http|${loopback(i)}`]).toBeGreaterThanOrEqual(1);
      await handedBack(small);
      expect(small.stats()).toMatchObject({ inUse: 0, waiting: 0 });
    } finally {
      await dispatcher.close();
      await small.close();
    }
  });

  test('with a pool of 1, requests to several origins beyond the cap complete in the order they were issued', async () => {
    const one = new ResourcePool({ max: 1 });
    const dispatcher = createDispatcher({ pool: one });
    try {
      const order: number[] = [];
      await Promise.all(
        Array.from({ length: 6 }, (_, i) => send(httpUrl(`/hello?${i}`, loopback(i)), { dispatcher }).then(() => order.push(i))),
      );
      expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    } finally {
      await dispatcher.close();
      await one.close();
    }
  });

  test('maxSockets: at most that many connections of an origin at once, while another origin is not held up', async () => {
    const dispatcher = dispatcherFor({ maxSockets: 2 });
    await servers.reset();
    const slow = loopback(10);
    const key = `http|${slow}`;
    const before = await accepted(key);
    const held = Array.from({ length: 5 }, (_, i) => start(httpUrl(`/hold?${i}`, slow), { dispatcher }));
    await servers.holding(key, 2);
    expect(pool.stats().inUse).toBe(2);
    const other = await send(httpUrl('/hello', loopback(11)), { dispatcher });
    expect(other.body.toString()).toBe('hello');
    let done = 0;
    while (done < 5) {
      await servers.holding(key, Math.min(2, 5 - done));
      done += await servers.release();
    }
    for (const reply of await Promise.all(held)) expect((reply as Reply).body.toString()).toBe('held');
    const counts = await servers.counts();
    expect(counts.peakHeld[key]).toBe(2);
    expect(counts.accepted[key]! - before).toBe(2);
  });

  test('acquireTimeout: the request fails with ResourceLimitExceededError whose cause is a TimeoutError', async () => {
    const one = new ResourcePool({ max: 1 });
    const dispatcher = createDispatcher({ pool: one, acquireTimeout: 100 });
    try {
      const holder = start(httpUrl('/hold'), { dispatcher });
      await servers.holding('http|127.0.0.1', 1);
      const error = await start(httpUrl('/hello', loopback(1)), { dispatcher });
      expect(error).toBeInstanceOf(ResourceLimitExceededError);
      expect(error).toMatchObject({ code: 'ERR_RESOURCE_LIMIT_EXCEEDED', cause: { name: 'TimeoutError' } });
      expect(one.stats().waiting).toBe(0);
      expect(await servers.release()).toBe(1);
      expect(((await holder) as Reply).body.toString()).toBe('held');
    } finally {
      await dispatcher.close();
      await handedBack(one);
      await one.close();
    }
  });

  test('raw connections and undici share one pool: the idle HTTP socket is evicted for another origin while a raw one is held', async () => {
    const two = new ResourcePool({ max: 2 });
    const dispatcher = createDispatcher({ pool: two });
    try {
      const raw = New('tcp', `127.0.0.1:${servers.ports.echo}`, { pool: two });
      const conn = await raw.get();
      expect(await roundTrip(conn, 'raw bytes')).toBe('raw bytes');
      const first = await send(httpUrl('/hello', loopback(20)), { dispatcher });
      await handedBack(two, 1);
      expect(two.stats()).toMatchObject({ inUse: 1, idle: 1 });
      const second = await send(httpUrl('/hello', loopback(20)), { dispatcher });
      expect(second.conn).toBe(first.conn);
      await handedBack(two, 1);
      // Another origin needs the second slot: the idle HTTP socket of the first is closed for it.
      const other = await send(httpUrl('/hello', loopback(21)), { dispatcher });
      expect(other.body.toString()).toBe('hello');
      expect((await servers.counts()).openConns).not.toContain(first.conn);
      await handedBack(two, 1);
      conn.put();
      const again = await raw.get();
      expect(await roundTrip(again, 'again')).toBe('again');
      again.put();
      expect((await servers.counts()).accepted['echo|127.0.0.1']).toBe(1);
    } finally {
      await dispatcher.close();
      await two.close();
    }
  });
});

// undici never withdraws a connect it started: a request aborted while its
// connection is being made (here: waiting for a pool slot) stays queued until
// the connector calls back, and fetch() tells the dispatcher nothing of its
// signal. The SPEC tests say what connpool promises; the last one records
// what happens today.
describe('createDispatcher: aborts while waiting for a slot', () => {
  let one: ResourcePool;
  let dispatcher: Dispatcher;
  let holder: Promise<Reply | Error>;
  beforeEach(async () => {
    one = new ResourcePool({ max: 1 });
    dispatcher = createDispatcher({ pool: one });
    holder = start(httpUrl('/hold'), { dispatcher });
    await servers.holding('http|127.0.0.1', 1);
  });
  afterEach(async () => {
    await servers.release();
    expect(((await holder) as Reply).body.toString()).toBe('held');
    await dispatcher.close();
    await handedBack(one);
    expect(one.stats()).toMatchObject({ waiting: 0 });
    await one.close();
  });

  test('SPEC: an undici.request() whose signal aborts while it waits for a slot rejects at once and leaves the queue', async () => {
    const controller = new AbortController();
    let outcome: Reply | Error | undefined;
    void start(httpUrl('/hello', loopback(30)), { dispatcher, signal: controller.signal }).then((result) => (outcome = result));
    await eventually(() => one.stats().waiting === 1, 'the request to wait for a slot');
    controller.abort();
    await eventually(() => outcome !== undefined, 'the aborted request to settle', 50).catch(() => {});
    expect({ outcome, waiting: one.stats().waiting }).toMatchObject({ outcome: { name: 'AbortError' }, waiting: 0 });
  });

  test('a fetch() aborted while it waits for a slot rejects at once; fetch does not tell the dispatcher, so the connect waits on until a slot frees, then nothing leaks', async () => {
    const controller = new AbortController();
    const outcome = fetch(httpUrl('/hello?aborted-fetch', loopback(32)), { dispatcher, signal: controller.signal } as unknown as RequestInit).catch((error: Error) => error);
    await eventually(() => one.stats().waiting === 1, 'the request to wait for a slot');
    controller.abort();
    expect(await outcome).toMatchObject({ name: 'AbortError' });
    expect(await servers.release()).toBe(1);
    expect(((await holder) as Reply).body.toString()).toBe('held');
    await eventually(() => one.stats().waiting === 0, 'the connect to get its slot');
    await handedBack(one);
    // The aborted request never reached the server.
    expect((await servers.counts()).requests['GET /hello?aborted-fetch']).toBeUndefined();
  });
});

describe('createDispatcher: TLS', () => {
  test('with a private CA (the ca option) HTTPS works; its socket is idle in the pool between requests and reused', async () => {
    const dispatcher = dispatcherFor({ ca: certs.ca });
    const first = await send(httpsUrl('/hello'), { dispatcher });
    expect([first.status, first.body.toString(), first.headers['x-tls']]).toEqual([200, 'hello', 'yes']);
    await handedBack();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
    const body = payload(4 * MiB);
    const digest = await send(httpsUrl('/digest'), { dispatcher, method: 'POST', body });
    expect(JSON.parse(digest.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) });
    expect(digest.conn).toBe(first.conn);
  });

  test('a certificate from an unknown CA fails the request with UNABLE_TO_VERIFY_LEAF_SIGNATURE; nothing is kept', async () => {
    const dispatcher = dispatcherFor();
    await expect(send(httpsUrl('/hello'), { dispatcher })).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    await handedBack();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
  });

  test('plain HTTP, HTTPS and HTTPS with other TLS options never share idle sockets, even on one port', async () => {
    const dispatcher = dispatcherFor({ ca: certs.ca });
    const other = dispatcherFor({ ca: certs.ca, minVersion: 'TLSv1.2' });
    const url = (scheme: string): string => `${scheme}://127.0.0.1:${servers.ports.mixed}/hello`;
    const before = await accepted('mixed|127.0.0.1');
    const h1 = await send(url('http'), { dispatcher });
    await handedBack();
    const s1 = await send(url('https'), { dispatcher });
    await handedBack();
    expect([h1.headers['x-tls'], s1.headers['x-tls']]).toEqual(['no', 'yes']);
    expect(s1.conn).not.toBe(h1.conn);
    const o1 = await send(url('https'), { dispatcher: other });
    await handedBack();
    expect(o1.headers['x-tls']).toBe('yes');
    expect([h1.conn, s1.conn]).not.toContain(o1.conn);
    const h2 = await send(url('http'), { dispatcher });
    await handedBack();
    const s2 = await send(url('https'), { dispatcher });
    await handedBack();
    const o2 = await send(url('https'), { dispatcher: other });
    await handedBack();
    expect([h2.conn, s2.conn, o2.conn]).toEqual([h1.conn, s1.conn, o1.conn]);
    expect((await accepted('mixed|127.0.0.1')) - before).toBe(3);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 3 });
  });
});

describe('setGlobalDispatcher', () => {
  test('with setGlobalDispatcher(createDispatcher()), Node\'s global fetch and undici.request go through the pool (child process)', async () => {
    // A child process: in jest, undici and the test live in a sandbox whose
    // globalThis is not the one Node's own fetch reads its global dispatcher
    // from. It imports the built package (dist/, which npm test builds first).
    const script = `
      import { getGlobalDispatcher, request, setGlobalDispatcher } from 'undici';
      const [index, url] = process.argv.slice(1);
      const { ResourcePool } = await import(index);
      const { createDispatcher } = await import(index.replace(/index\\.js$/, 'undici/index.js'));
      const pool = new ResourcePool({ max: 4 });
      const original = getGlobalDispatcher();
      const dispatcher = createDispatcher({ pool });
      setGlobalDispatcher(dispatcher);
      const viaFetch = await fetch(url);
      const fetched = [viaFetch.status, await viaFetch.text(), viaFetch.headers.get('x-conn')];
      const inUseAfterFetch = pool.stats().inUse;
      await new Promise((resolve) => setImmediate(resolve)); // undici reuses a socket a turn after its response
      const viaRequest = await request(url);
      const requested = [viaRequest.statusCode, await viaRequest.body.text(), viaRequest.headers['x-conn']];
      while (pool.stats().inUse > 0) await new Promise((resolve) => setTimeout(resolve, 2));
      const stats = pool.stats();
      setGlobalDispatcher(original);
      await dispatcher.close();
      await pool.close();
      console.log(JSON.stringify({ fetched, requested, inUseAfterFetch, idle: stats.idle, inUse: stats.inUse }));
    `;
    const result = await runModule<{ fetched: unknown[]; requested: unknown[]; inUseAfterFetch: number; idle: number; inUse: number }>(script, [
      distIndex,
      httpUrl('/hello'),
    ]);
    expect(result.fetched.slice(0, 2)).toEqual([200, 'hello']);
    expect(result.requested.slice(0, 2)).toEqual([200, 'hello']);
    expect(result.requested[2]).toBe(result.fetched[2]);
    expect(result.inUseAfterFetch).toBe(1);
    expect([result.inUse, result.idle]).toEqual([0, 1]);
  });
});

describe('nginx', () => {
  let nginx: Nginx;
  beforeAll(async () => {
    nginx = await startNginx(certs);
  });
  afterAll(async () => {
    await nginx?.stop();
  });
  const url = (path: string): string => `http://127.0.0.1:${nginx.httpPort}${path}`;
  const secureUrl = (path: string): string => `https://127.0.0.1:${nginx.httpsPort}${path}`;

  test('keep-alive: sequential requests share one nginx connection, idle in the pool in between', async () => {
    const dispatcher = dispatcherFor();
    const seen: Array<[string | undefined, unknown]> = [];
    for (let i = 0; i < 5; i++) {
      const reply = await send(url('/hello'), { dispatcher });
      expect(reply.body.toString()).toBe('hello from nginx\n');
      seen.push([reply.conn, reply.headers['x-requests']]);
      await handedBack();
      expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
    }
    expect(new Set(seen.map(([conn]) => conn)).size).toBe(1);
    expect(seen.map(([, requests]) => requests)).toEqual(['1', '2', '3', '4', '5']);
  });

  test('a 1 MiB file, 204, 304 and a gzipped chunked response, all on one connection; HEAD works', async () => {
    const dispatcher = dispatcherFor(KEEP);
    const file = await send(url('/big.bin'), { dispatcher });
    expect(file.body.equals(nginx.big)).toBe(true);
    const empty = await send(url('/204'), { dispatcher });
    expect([empty.status, empty.body.length]).toEqual([204, 0]);
    const cached = await send(url('/big.bin'), { dispatcher, headers: { 'if-none-match': file.headers.etag as string } });
    expect([cached.status, cached.body.length]).toEqual([304, 0]);
    const gzipped = await send(url('/text.txt'), { dispatcher, headers: { 'accept-encoding': 'gzip' } });
    expect([gzipped.headers['transfer-encoding'], gzipped.headers['content-encoding']]).toEqual(['chunked', 'gzip']);
    expect(gunzipSync(gzipped.body).toString()).toBe(nginx.text);
    const conns = [file, empty, cached, gzipped].map((reply) => reply.conn);
    expect(conns).toEqual(Array(4).fill(file.conn));
    const head = await send(url('/big.bin'), { dispatcher, method: 'HEAD' });
    expect([head.status, head.headers['content-length'], head.body.length]).toEqual([200, String(nginx.big.length), 0]);
    await handedBack();
    expect(pool.stats()).toMatchObject({ idle: 0 }); // undici ends a connection after HEAD
  });

  test('a 4 MiB upload that nginx answers before reading it all is not reused; the next request dials', async () => {
    const dispatcher = dispatcherFor();
    const upload = await send(url('/upload'), { dispatcher, method: 'POST', body: payload(4 * MiB) });
    expect(upload.body.toString()).toBe('uploaded\n');
    await handedBack();
    const next = await send(url('/hello'), { dispatcher });
    expect(next.body.toString()).toBe('hello from nginx\n');
  });

  test('Connection: close and a Keep-Alive: timeout=1 hint: neither socket is kept', async () => {
    const dispatcher = dispatcherFor();
    const bye = await send(url('/close'), { dispatcher });
    expect(bye.headers.connection).toBe('close');
    await handedBack();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    const short = await send(url('/short'), { dispatcher });
    expect(short.headers['keep-alive']).toBe('timeout=1');
    await handedBack();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    const next = await send(url('/hello'), { dispatcher });
    expect([bye.conn, short.conn]).not.toContain(next.conn);
  });

  test('HTTPS with a private CA: kept alive across requests, fetch included; an unknown CA fails', async () => {
    const dispatcher = dispatcherFor({ ca: certs.ca, ...KEEP });
    const replies = [];
    for (let i = 0; i < 3; i++) replies.push(await send(secureUrl('/hello'), { dispatcher }));
    expect(replies.map((reply) => reply.body.toString())).toEqual(Array(3).fill('hello from nginx\n'));
    expect(new Set(replies.map((reply) => reply.conn)).size).toBe(1);
    const viaFetch = await fetch(secureUrl('/big.bin'), { dispatcher } as unknown as RequestInit);
    expect(Buffer.from(await viaFetch.arrayBuffer()).equals(nginx.big)).toBe(true);
    expect(viaFetch.headers.get('x-conn')).toBe(replies[0]!.conn);
    await expect(send(secureUrl('/hello'), { dispatcher: dispatcherFor() })).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  });
});

test('a program whose requests all wait for slots held by undici\'s idle sockets runs until they finish (it does not exit with them pending)', async () => {
  const http = await import('node:http');
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  const { port } = server.address() as import('node:net').AddressInfo;
  const undiciDist = distIndex.replace(/index\.js$/, 'undici/index.js');
  // One slot; the first origin's socket stays with undici (unref'd) for idleHandoff ms, so the second
  // origin's connect waits for a slot with no handle keeping the event loop alive.
  const script = `
    import { request } from 'undici';
    import { ResourcePool } from ${JSON.stringify(distIndex)};
    import { createDispatcher } from ${JSON.stringify(undiciDist)};
    const pool = new ResourcePool({ max: 1 });
    const dispatcher = createDispatcher({ pool, idleHandoff: 300 });
    const port = Number(process.argv[1]);
    const first = await request('http://127.0.0.1:' + port + '/', { dispatcher });
    await first.body.text();
    const second = await request('http://127.0.0.2:' + port + '/', { dispatcher });
    console.log(JSON.stringify({ body: await second.body.text(), dials: pool.stats().dials }));
    await dispatcher.close();
    await pool.close();
  `;
  try {
    const result = await runModule<{ body: string; dials: number }>(script, [String(port)]);
    expect(result).toEqual({ body: 'ok', dials: 2 });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});
