/**
 * connpool/http: HttpAgent and HttpsAgent against real servers, node's in a
 * child process (helpers/http-server-child.mjs) and nginx, so that every
 * socket of this process past the IPC channel is a client's.
 *
 * jest fails the running test on any uncaught exception or unhandled
 * rejection of this process (listeners added with process.on() here would not
 * hear them: jest gives each test file its own copy of `process`).
 */
import http, { type IncomingHttpHeaders, type RequestOptions } from 'node:http';
import https from 'node:https';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import axios from 'axios';
import { New, ResourceLimitExceededError, ResourcePool } from '../lib/index.js';
import { HttpAgent, HttpsAgent } from '../lib/http/index.js';
import { startHttpServers, startNginx, total, type HttpServers, type Nginx } from './helpers/http-servers.js';
import { makeCerts, openSocketFds, roundTrip, type Certs } from './helpers/servers.js';

const MiB = 1024 * 1024;

let certs: Certs;
let servers: HttpServers;
let pool: ResourcePool;
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
  await eventually(() => pool.stats().inUse === 0 && pool.stats().releasing === 0, 'the pool to have nothing in use');
  expect(pool.stats()).toMatchObject({ inUse: 0, waiting: 0 });
  await pool.close();
});

/** Resolves when `predicate` holds; throws after about 5 s of event-loop turns. */
async function eventually(predicate: () => boolean, what: string): Promise<void> {
  for (let turn = 0; turn < 2_500; turn++) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Resolves once the socket of the last exchange went back to the pool (Node frees it a tick after the response). */
function settled(): Promise<void> {
  return eventually(() => pool.stats().inUse === 0 && pool.stats().releasing === 0, 'the socket to be released');
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The server's serial number of the connection that served the request. */
  conn: string | undefined;
}

type SendOptions = RequestOptions & https.RequestOptions & { body?: Buffer | string | Readable };

/**
 * A request with http.request or https.request (by the URL's scheme), sent
 * now; `done` settles with the whole response, or the request's error.
 */
function start(url: string, options: SendOptions = {}): { req: http.ClientRequest; done: Promise<Reply | Error> } {
  const { body, ...rest } = options;
  const client = url.startsWith('https:') ? https : http;
  let req!: http.ClientRequest;
  const done = new Promise<Reply | Error>((resolve) => {
    req = client.request(url, rest, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', resolve);
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), conn: res.headers['x-conn'] as string | undefined }),
      );
    });
    req.on('error', resolve);
  });
  if (body instanceof Readable) body.pipe(req);
  else req.end(body);
  return { req, done };
}

/** One request, the whole response; rejects with the request's error. */
async function send(url: string, options: SendOptions = {}): Promise<Reply> {
  const outcome = await start(url, options).done;
  // Node's errors come from another realm than this file's Error: tell them by shape.
  if (typeof (outcome as Reply).status !== 'number') throw outcome;
  return outcome as Reply;
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** A payload of `bytes` bytes that is not all one value. */
function payload(bytes: number): Buffer {
  const buffer = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) buffer[i] = (i * 31 + (i >> 12)) & 0xff;
  return buffer;
}

const httpUrl = (path: string, host = '127.0.0.1'): string => `http://${host}:${servers.ports.http}${path}`;
const httpsUrl = (path: string): string => `https://127.0.0.1:${servers.ports.https}${path}`;
/** The i-th loopback origin, 127.0.0.(i + 2). */
const loopback = (i: number): string => `127.0.0.${i + 2}`;

/** A port on 127.0.0.1 that nothing listens on (listen, note it, close). */
async function refusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function accepted(key: string): Promise<number> {
  return (await servers.counts()).accepted[key] ?? 0;
}

describe('HttpAgent: requests and responses', () => {
  test('a GET gets the body and status; its socket goes back to the pool idle', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const reply = await send(httpUrl('/hello'), { agent });
    expect(reply.status).toBe(200);
    expect(reply.body.toString()).toBe('hello');
    await settled();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
  });

  test('N sequential requests use exactly one server connection; between them the pool has 1 idle, 0 in use', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const before = await accepted('http|127.0.0.1');
    const conns = new Set<string | undefined>();
    for (let i = 0; i < 6; i++) {
      const reply = await send(httpUrl(`/hello?${i}`), { agent });
      expect(reply.body.toString()).toBe('hello');
      conns.add(reply.conn);
      await settled();
      expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
    }
    expect(conns.size).toBe(1);
    expect((await accepted('http|127.0.0.1')) - before).toBe(1);
  });

  test('a POST of 4 MiB arrives whole, and 4 MiB echoed back arrive whole, on a socket that is then reused', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const body = payload(4 * MiB);
    const digest = await send(httpUrl('/digest'), { agent, method: 'POST', body });
    expect(JSON.parse(digest.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) });
    await settled(); // a socket is free once both the response and the request body are done
    const echo = await send(httpUrl('/echo'), { agent, method: 'POST', body });
    expect(echo.headers['transfer-encoding']).toBe('chunked');
    expect(echo.body.length).toBe(body.length);
    expect(echo.body.equals(body)).toBe(true);
    await settled();
    const after = await send(httpUrl('/hello'), { agent });
    expect(new Set([digest.conn, echo.conn, after.conn]).size).toBe(1);
  });

  test('a streamed request body (chunked, 4 MiB in 64 KiB pieces) arrives whole', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const body = payload(4 * MiB);
    const pieces = Readable.from(
      (function* () {
        for (let offset = 0; offset < body.length; offset += 64 * 1024) yield body.subarray(offset, offset + 64 * 1024);
      })(),
    );
    const reply = await send(httpUrl('/digest'), { agent, method: 'POST', body: pieces });
    expect(JSON.parse(reply.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) });
    await settled();
    const again = await send(httpUrl('/hello'), { agent });
    expect(again.conn).toBe(reply.conn);
  });

  test('a chunked response arrives whole and in order, and its socket is reused', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const reply = await send(httpUrl('/chunked'), { agent });
    expect(reply.headers['transfer-encoding']).toBe('chunked');
    expect(reply.body.length).toBe(64 * 1024);
    for (let i = 0; i < 64; i++) expect(reply.body.subarray(i * 1024, (i + 1) * 1024).equals(Buffer.alloc(1024, i))).toBe(true);
    expect((await send(httpUrl('/hello'), { agent })).conn).toBe(reply.conn);
  });

  test('HEAD, 204 and 304 responses have no body and leave the socket reusable', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const head = await send(httpUrl('/hello'), { agent, method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('5');
    expect(head.body.length).toBe(0);
    const empty = await send(httpUrl('/204'), { agent });
    expect(empty.status).toBe(204);
    expect(empty.body.length).toBe(0);
    const fresh = await send(httpUrl('/304'), { agent });
    expect(fresh.status).toBe(200);
    const cached = await send(httpUrl('/304'), { agent, headers: { 'If-None-Match': fresh.headers.etag! } });
    expect(cached.status).toBe(304);
    expect(cached.body.length).toBe(0);
    const after = await send(httpUrl('/hello'), { agent });
    expect(after.body.toString()).toBe('hello');
    expect(new Set([head.conn, empty.conn, fresh.conn, cached.conn, after.conn]).size).toBe(1);
  });

  test('Expect: 100-continue: the body is sent after the 100, arrives whole, and the socket is reused', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const body = payload(256 * 1024);
    let continued = 0;
    const reply = await new Promise<Reply>((resolve, reject) => {
      const req = http.request(httpUrl('/digest'), { agent, method: 'POST', headers: { Expect: '100-continue' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), conn: res.headers['x-conn'] as string }));
      });
      req.on('error', reject);
      req.on('continue', () => {
        continued++;
        req.end(body);
      });
      req.flushHeaders();
    });
    expect(continued).toBe(1);
    expect(JSON.parse(reply.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) });
    await settled();
    expect((await send(httpUrl('/hello'), { agent })).conn).toBe(reply.conn);
  });
});

describe('HttpAgent: when a socket is not reused', () => {
  test('a response with Connection: close: the socket is closed, the next request gets a new connection', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const bye = await send(httpUrl('/close'), { agent });
    expect(bye.body.toString()).toBe('bye');
    await settled();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    const next = await send(httpUrl('/hello'), { agent });
    expect(next.conn).not.toBe(bye.conn);
  });

  test('a server keep-alive hint of timeout=1: the socket is not kept', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const short = await send(httpUrl('/short'), { agent });
    expect(short.headers['keep-alive']).toBe('timeout=1');
    await settled();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    const next = await send(httpUrl('/hello'), { agent });
    expect(next.conn).not.toBe(short.conn);
  });

  test('a response abandoned mid-body (req.destroy()): the socket is closed, not idle, the next request dials', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const before = await accepted('http|127.0.0.1');
    const conn = await new Promise<string>((resolve) => {
      const req = http.get(httpUrl('/partial'), { agent }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve(res.headers['x-conn'] as string);
        });
      });
      req.on('error', () => {});
    });
    await settled();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    const next = await send(httpUrl('/hello'), { agent });
    expect(next.conn).not.toBe(conn);
    expect((await accepted('http|127.0.0.1')) - before).toBe(2);
  });

  test('a response abandoned mid-body (res.destroy()): the socket is closed, not idle', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const conn = await new Promise<string>((resolve) => {
      const req = http.get(httpUrl('/partial'), { agent }, (res) => {
        res.on('error', () => {});
        res.once('data', () => {
          res.destroy();
          resolve(res.headers['x-conn'] as string);
        });
      });
      req.on('error', () => {});
    });
    await settled();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    expect((await send(httpUrl('/hello'), { agent })).conn).not.toBe(conn);
  });

  test('a request that times out and is destroyed: its socket is not reused', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const { req, done } = start(httpUrl('/stall'), { agent });
    let timeouts = 0;
    req.setTimeout(50, () => {
      timeouts++;
      req.destroy();
    });
    const outcome = await done;
    expect(timeouts).toBe(1);
    expect(outcome).toMatchObject({ code: 'ECONNRESET' });
    await settled();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    const before = await accepted('http|127.0.0.1');
    await send(httpUrl('/hello'), { agent });
    expect((await accepted('http|127.0.0.1')) - before).toBe(1);
  });

  test('a request that timed out but whose response then completed: its socket is kept and reused, as http.Agent does', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const { req, done } = start(httpUrl('/hold'), { agent });
    const timedOut = new Promise<void>((resolve) => req.setTimeout(30, resolve));
    await servers.holding('http|127.0.0.1', 1);
    await timedOut;
    expect(await servers.release()).toBe(1);
    const reply = (await done) as Reply;
    expect(reply.body.toString()).toBe('held');
    await settled();
    expect(pool.stats()).toMatchObject({ idle: 1 });
    expect((await send(httpUrl('/hello'), { agent })).conn).toBe(reply.conn);
  });

  test('the server ends an idle keep-alive socket: it leaves the pool, and the next request succeeds on a new connection', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const ending = await send(httpUrl('/end-after'), { agent });
    expect(ending.body.toString()).toBe('ending');
    await eventually(() => pool.stats().idle === 0 && pool.stats().inUse === 0 && pool.stats().releasing === 0, 'the ended socket to leave the pool');
    const next = await send(httpUrl('/hello'), { agent });
    expect(next.body.toString()).toBe('hello');
    expect(next.conn).not.toBe(ending.conn);
  });
});

describe('HttpAgent: timeouts, upgrades, failures', () => {
  /** Whether `req` emits 'timeout' before `boundMs` (a bound on the wait, not a measure). */
  function timesOut(req: http.ClientRequest, boundMs = 2_000): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const bound = setTimeout(() => resolve(false), boundMs);
      req.once('timeout', () => {
        clearTimeout(bound);
        resolve(true);
      });
    }).finally(() => req.destroy());
  }

  test("the agent's timeout option (http.Agent's): a stalled request emits 'timeout'", async () => {
    const agent = new HttpAgent({ keepAlive: true, pool, timeout: 50 });
    const { req, done } = start(httpUrl('/stall?agent-timeout'), { agent });
    expect(await timesOut(req)).toBe(true);
    await done;
  });

  test("a request's timeout option: a stalled request emits 'timeout'", async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const { req, done } = start(httpUrl('/stall?request-timeout'), { agent, timeout: 50 });
    expect(await timesOut(req)).toBe(true);
    await done;
  });

  test('an upgraded connection is its user\'s: in use while open, closed (not idle) when destroyed', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const req = http.request(httpUrl('/upgrade'), { agent, headers: { Connection: 'Upgrade', Upgrade: 'echo' } });
    req.end();
    const [res, socket] = await new Promise<[http.IncomingMessage, import('node:stream').Duplex]>((resolve, reject) => {
      req.once('upgrade', (res, socket) => resolve([res, socket]));
      req.once('error', reject);
    });
    expect(res.statusCode).toBe(101);
    socket.write('ping');
    const echoed = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
    expect(echoed.toString()).toBe('ping');
    await new Promise((resolve) => setImmediate(resolve));
    expect(pool.stats()).toMatchObject({ inUse: 1, idle: 0 });
    socket.destroy();
    await settled();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
  });

  test('a refused connection fails the request with ECONNREFUSED and frees the slot', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const refused = await refusedPort();
    await expect(send(`http://127.0.0.1:${refused}/`, { agent })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    // The request hears 'error' before its socket's 'close', which frees the slot.
    await settled();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, waiting: 0, dialErrors: 1 });
  });

  test('agent.destroy() fails a request in flight and closes its socket', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const { done } = start(httpUrl('/stall?destroy-agent'), { agent });
    await eventually(() => pool.stats().inUse === 1, 'the request to get its socket');
    while ((await servers.counts()).requests['GET /stall?destroy-agent'] !== 1) await new Promise((resolve) => setTimeout(resolve, 2));
    agent.destroy();
    expect(await done).toMatchObject({ code: 'ECONNRESET' });
    await settled();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
  });

  test('agent.destroy() fails a request whose socket is still being dialed (as http.Agent#destroy() does)', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const { req, done } = start(httpUrl('/stall?destroy-agent-dialing'), { agent });
    agent.destroy();
    const bound = setTimeout(() => req.destroy(new Error('still running: agent.destroy() did not end it')), 2_000);
    const outcome = await done;
    clearTimeout(bound);
    expect(outcome).toMatchObject({ code: 'ECONNRESET' });
    expect((await servers.counts()).requests['GET /stall?destroy-agent-dialing']).toBeUndefined();
  });
});

describe('HttpAgent: the budget', () => {
  test('40 origins on a pool of 8: all requests succeed, never more than 8 client sockets open, idle ones are evicted', async () => {
    const small = new ResourcePool({ max: 8 });
    try {
      const agent = new HttpAgent({ keepAlive: true, pool: small });
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
            send(httpUrl(`/hello?${round}`, loopback(i)), { agent }).then((reply) => {
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
      await eventually(() => small.stats().inUse === 0 && small.stats().releasing === 0, 'the small pool to settle');
      expect(small.stats()).toMatchObject({ inUse: 0, waiting: 0 });
      expect(small.stats().idle).toBeLessThanOrEqual(8);
    } finally {
      await small.close();
    }
  });

  test('with a pool of 1, requests beyond the cap complete in the order they were issued', async () => {
    const one = new ResourcePool({ max: 1 });
    try {
      const agent = new HttpAgent({ keepAlive: true, pool: one });
      const order: number[] = [];
      await Promise.all(
        Array.from({ length: 8 }, (_, i) => send(httpUrl(`/hello?${i}`, loopback(i % 3)), { agent }).then(() => order.push(i))),
      );
      expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    } finally {
      await one.close();
    }
  });

  test('maxSockets: at most that many requests of an origin in use at once, in order, while another origin is not held up', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool, maxSockets: 2 });
    await servers.reset();
    const slow = loopback(10);
    const key = `http|${slow}`;
    const before = await accepted(key);
    const held = Array.from({ length: 5 }, (_, i) => start(httpUrl(`/hold?${i}`, slow), { agent }));
    const order: number[] = [];
    held.forEach(({ done }, i) => void done.then(() => order.push(i)));
    await servers.holding(key, 2);
    expect(pool.stats().inUse).toBe(2);
    const other = await send(httpUrl('/hello', loopback(11)), { agent });
    expect(other.body.toString()).toBe('hello');
    let done = 0;
    while (done < 5) {
      await servers.holding(key, Math.min(2, 5 - done));
      done += await servers.release();
    }
    const replies = await Promise.all(held.map(({ done }) => done));
    for (const reply of replies) expect((reply as Reply).body.toString()).toBe('held');
    const counts = await servers.counts();
    expect(counts.peakHeld[key]).toBe(2);
    expect(counts.accepted[key]! - before).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4]);
  });

  test('acquireTimeout on the pool-wide wait: ResourceLimitExceededError with a TimeoutError cause', async () => {
    const one = new ResourcePool({ max: 1 });
    try {
      const agent = new HttpAgent({ keepAlive: true, pool: one, acquireTimeout: 100 });
      const holder = start(httpUrl('/hold'), { agent });
      await eventually(() => one.stats().inUse === 1, 'the holder to take the slot');
      const error = await send(httpUrl('/hello'), { agent }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(error).toBeInstanceOf(ResourceLimitExceededError);
      expect(error).toMatchObject({ code: 'ERR_RESOURCE_LIMIT_EXCEEDED', cause: { name: 'TimeoutError' } });
      expect(one.stats().waiting).toBe(0);
      await servers.holding('http|127.0.0.1', 1);
      expect(await servers.release()).toBe(1);
      expect(((await holder.done) as Reply).body.toString()).toBe('held');
      expect((await send(httpUrl('/hello'), { agent })).body.toString()).toBe('hello');
    } finally {
      await eventually(() => one.stats().inUse === 0, 'the small pool to settle');
      await one.close();
    }
  });

  test('acquireTimeout bounds the wait in the queue of maxSockets too: the queued request fails and never reaches the server', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool, maxSockets: 1, acquireTimeout: 20 });
    const holder = start(httpUrl('/hold'), { agent });
    await eventually(() => pool.stats().inUse === 1, 'the holder to take the slot');
    const queued = start(httpUrl('/hello?queued'), { agent });
    await servers.holding('http|127.0.0.1', 1);
    const failure = (await queued.done) as NodeJS.ErrnoException;
    expect(failure).toBeInstanceOf(ResourceLimitExceededError);
    expect((failure.cause as Error).name).toBe('TimeoutError');
    expect((agent.requests as NodeJS.ReadOnlyDict<unknown[]>)[`127.0.0.1:${servers.ports.http}:`]).toBeUndefined();
    expect(await servers.release()).toBe(1);
    expect(((await holder.done) as Reply).body.toString()).toBe('held');
    expect((await servers.counts()).requests['GET /hello?queued']).toBeUndefined();
  });

  test('raw connections and HTTP share one pool: HTTP waits for the slot a raw connection holds, idle HTTP sockets are evicted for raw ones', async () => {
    const two = new ResourcePool({ max: 2 });
    try {
      const agent = new HttpAgent({ keepAlive: true, pool: two });
      const raw = New('tcp', `127.0.0.1:${servers.ports.echo}`, { pool: two });
      const conn = await raw.get();
      expect(await roundTrip(conn, 'raw bytes')).toBe('raw bytes');
      const first = await send(httpUrl('/hello', loopback(20)), { agent });
      const second = await send(httpUrl('/hello', loopback(20)), { agent });
      expect(second.conn).toBe(first.conn);
      await eventually(() => two.stats().inUse === 1, 'the HTTP socket to go idle');
      expect(two.stats()).toMatchObject({ inUse: 1, idle: 1 });
      // Another origin needs the second slot: the idle HTTP socket of the first is closed for it.
      const other = await send(httpUrl('/hello', loopback(21)), { agent });
      expect(other.body.toString()).toBe('hello');
      await eventually(() => two.stats().inUse === 1, 'the HTTP socket to go idle');
      const counts = await servers.counts();
      expect(counts.open[`http|${loopback(20)}`]).toBe(0);
      // With the raw connection held, two concurrent requests share the one slot left.
      const both = await Promise.all([send(httpUrl('/hello', loopback(22)), { agent }), send(httpUrl('/hello', loopback(23)), { agent })]);
      expect(both.map((reply) => reply.body.toString())).toEqual(['hello', 'hello']);
      conn.put();
      await eventually(() => two.stats().inUse === 0 && two.stats().releasing === 0, 'everything to be idle');
      // A raw get() evicts an idle HTTP socket if it must, and gets its own idle connection back.
      const again = await raw.get();
      expect(await roundTrip(again, 'again')).toBe('again');
      again.put();
      expect(two.stats()).toMatchObject({ inUse: 0, waiting: 0 });
      expect((await servers.counts()).accepted['echo|127.0.0.1']).toBe(1);
    } finally {
      await two.close();
    }
  });
});

describe('HttpAgent: aborts while waiting for a slot', () => {
  let one: ResourcePool;
  let agent: HttpAgent;
  let holder: ReturnType<typeof start>;
  beforeEach(async () => {
    one = new ResourcePool({ max: 1 });
    agent = new HttpAgent({ keepAlive: true, pool: one });
    holder = start(httpUrl('/hold'), { agent });
    await eventually(() => one.stats().inUse === 1, 'the holder to take the slot');
  });
  afterEach(async () => {
    await servers.holding('http|127.0.0.1', 1);
    expect(await servers.release()).toBe(1);
    expect(((await holder.done) as Reply).body.toString()).toBe('held');
    // The slot goes on to serve the next request: nothing was left waiting or half-open.
    const next = await send(httpUrl('/hello'), { agent });
    expect(next.conn).toBe((await holder.done as Reply).conn);
    await eventually(() => one.stats().inUse === 0, 'the small pool to settle');
    expect(one.stats()).toMatchObject({ waiting: 0, idle: 1 });
    await one.close();
  });

  // Node's client tells the agent of a request destroyed before it has its socket on its next tick.
  test('req.destroy() while waiting: the waiter leaves the pool queue', async () => {
    const { req, done } = start(httpUrl('/hello?destroyed'), { agent });
    await eventually(() => one.stats().waiting === 1, 'the request to wait');
    req.destroy();
    await new Promise(setImmediate);
    expect(one.stats().waiting).toBe(0);
    const outcome = await done;
    expect(outcome).toMatchObject({ code: 'ECONNRESET' });
  });

  test('AbortSignal of http.request while waiting: the waiter leaves the queue, the request fails with AbortError', async () => {
    const controller = new AbortController();
    const { done } = start(httpUrl('/hello?aborted'), { agent, signal: controller.signal });
    await eventually(() => one.stats().waiting === 1, 'the request to wait');
    controller.abort();
    await new Promise(setImmediate);
    expect(one.stats().waiting).toBe(0);
    expect(await done).toMatchObject({ name: 'AbortError' });
  });
});

describe('HttpAgent: aborts while waiting on maxSockets', () => {
  test('req.destroy() while waiting on maxSockets: the request leaves the origin queue and never reaches the server', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool, maxSockets: 1 });
    const first = start(httpUrl('/hold?first'), { agent });
    await eventually(() => pool.stats().inUse === 1, 'the first request to take its socket');
    const { req, done } = start(httpUrl('/hello?destroyed-on-origin-queue'), { agent });
    const third = start(httpUrl('/hello?third'), { agent });
    req.destroy();
    await servers.holding('http|127.0.0.1', 1);
    expect(await servers.release()).toBe(1);
    // As with http.Agent, the destroyed request fails once the agent's queue reaches it.
    expect(await done).toMatchObject({ code: 'ECONNRESET' });
    const firstReply = (await first.done) as Reply;
    const thirdReply = (await third.done) as Reply;
    expect(thirdReply.body.toString()).toBe('hello');
    expect(thirdReply.conn).toBe(firstReply.conn);
    const requests = (await servers.counts()).requests;
    expect(requests['GET /hello?third']).toBe(1);
    expect(requests['GET /hello?destroyed-on-origin-queue']).toBeUndefined();
  });
});

describe('HttpsAgent', () => {
  test('with a private CA, https.get works and its socket is reused; the connection is verified', async () => {
    const agent = new HttpsAgent({ keepAlive: true, pool, ca: certs.ca });
    const replies = await new Promise<Array<{ authorized: boolean; conn: string }>>((resolve, reject) => {
      const out: Array<{ authorized: boolean; conn: string }> = [];
      const next = (): void => {
        https
          .get(httpsUrl('/hello'), { agent }, (res) => {
            out.push({ authorized: (res.socket as unknown as { authorized: boolean }).authorized, conn: res.headers['x-conn'] as string });
            res.resume();
            res.on('end', () => (out.length === 3 ? resolve(out) : setImmediate(next)));
          })
          .on('error', reject);
      };
      next();
    });
    expect(replies.map((reply) => reply.authorized)).toEqual([true, true, true]);
    expect(new Set(replies.map((reply) => reply.conn)).size).toBe(1);
    await settled();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
  });

  test('a server whose certificate is from an unknown CA fails the request with UNABLE_TO_VERIFY_LEAF_SIGNATURE; nothing is kept', async () => {
    const agent = new HttpsAgent({ keepAlive: true, pool });
    await expect(send(httpsUrl('/hello'), { agent })).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    await settled();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
  });

  test('a 4 MiB POST and a chunked response over TLS arrive whole', async () => {
    const agent = new HttpsAgent({ keepAlive: true, pool, ca: certs.ca });
    const body = payload(4 * MiB);
    const digest = await send(httpsUrl('/digest'), { agent, method: 'POST', body });
    expect(JSON.parse(digest.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) });
    await settled();
    const chunked = await send(httpsUrl('/chunked'), { agent });
    expect(chunked.body.length).toBe(64 * 1024);
    expect(chunked.conn).toBe(digest.conn);
  });

  test('plain HTTP, HTTPS and HTTPS with other TLS options never share idle sockets, even on one port', async () => {
    const plain = new HttpAgent({ keepAlive: true, pool });
    const secure = new HttpsAgent({ keepAlive: true, pool, ca: certs.ca });
    const url = (scheme: string): string => `${scheme}://127.0.0.1:${servers.ports.mixed}/hello`;
    const before = await accepted('mixed|127.0.0.1');
    const h1 = await send(url('http'), { agent: plain });
    expect(h1.headers['x-tls']).toBe('no');
    await settled();
    const s1 = await send(url('https'), { agent: secure });
    expect(s1.headers['x-tls']).toBe('yes');
    expect(s1.conn).not.toBe(h1.conn);
    await settled();
    const h2 = await send(url('http'), { agent: plain });
    expect([h2.headers['x-tls'], h2.conn]).toEqual(['no', h1.conn]);
    await settled();
    const s2 = await send(url('https'), { agent: secure });
    expect([s2.headers['x-tls'], s2.conn]).toEqual(['yes', s1.conn]);
    await settled();
    // Other TLS options on the request: a connection of their own, reused by requests with the same options.
    const s3 = await send(url('https'), { agent: secure, servername: 'localhost' });
    expect(s3.headers['x-tls']).toBe('yes');
    expect([h1.conn, s1.conn]).not.toContain(s3.conn);
    await settled();
    const s4 = await send(url('https'), { agent: secure, servername: 'localhost' });
    expect(s4.conn).toBe(s3.conn);
    await settled();
    const s5 = await send(url('https'), { agent: secure });
    expect(s5.conn).toBe(s1.conn);
    expect((await accepted('mixed|127.0.0.1')) - before).toBe(3);
    await settled();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 3 });
  });
});

describe('axios', () => {
  test('axios with httpAgent and httpsAgent goes through the pool and reuses connections', async () => {
    const httpAgent = new HttpAgent({ keepAlive: true, pool });
    const httpsAgent = new HttpsAgent({ keepAlive: true, pool, ca: certs.ca });
    const client = axios.create({ httpAgent, httpsAgent, proxy: false, responseType: 'text' });
    const a = await client.get<string>(httpUrl('/hello'));
    const b = await client.get<string>(httpUrl('/hello'));
    expect([a.status, a.data, b.data]).toEqual([200, 'hello', 'hello']);
    expect(b.headers['x-conn']).toBe(a.headers['x-conn']);
    const body = payload(MiB);
    const posted = await client.post<string>(httpsUrl('/digest'), body, { headers: { 'Content-Type': 'application/octet-stream' } });
    expect(JSON.parse(posted.data)).toEqual({ bytes: body.length, sha256: sha256(body) });
    await settled();
    const again = await client.get<string>(httpsUrl('/hello'));
    expect(again.headers['x-conn']).toBe(posted.headers['x-conn']);
    await settled();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 2 });
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

  test('keep-alive: sequential requests share one nginx connection; 1 idle, 0 in use in between', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const seen: Array<[string | undefined, string | undefined]> = [];
    for (let i = 0; i < 5; i++) {
      const reply = await send(url('/hello'), { agent });
      expect(reply.body.toString()).toBe('hello from nginx\n');
      seen.push([reply.conn, reply.headers['x-requests'] as string]);
      await settled();
      expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
    }
    expect(new Set(seen.map(([conn]) => conn)).size).toBe(1);
    expect(seen.map(([, requests]) => requests)).toEqual(['1', '2', '3', '4', '5']);
  });

  test('a 1 MiB file, HEAD, 204, 304, a gzipped chunked response and a 4 MiB POST, all on one connection', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const file = await send(url('/big.bin'), { agent });
    expect(file.body.equals(nginx.big)).toBe(true);
    const head = await send(url('/big.bin'), { agent, method: 'HEAD' });
    expect([head.status, head.headers['content-length'], head.body.length]).toEqual([200, String(nginx.big.length), 0]);
    const empty = await send(url('/204'), { agent });
    expect([empty.status, empty.body.length]).toEqual([204, 0]);
    const cached = await send(url('/big.bin'), { agent, headers: { 'If-None-Match': file.headers.etag! } });
    expect([cached.status, cached.body.length]).toEqual([304, 0]);
    const gzipped = await send(url('/text.txt'), { agent, headers: { 'Accept-Encoding': 'gzip' } });
    expect(gzipped.headers['transfer-encoding']).toBe('chunked');
    expect(gzipped.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gzipped.body).toString()).toBe(nginx.text);
    const upload = await send(url('/upload'), { agent, method: 'POST', body: payload(4 * MiB) });
    expect(upload.body.toString()).toBe('uploaded\n');
    // nginx answers as soon as it has the headers; the socket is free once the body is all sent.
    await settled();
    const after = await send(url('/hello'), { agent });
    const conns = [file, head, empty, cached, gzipped, upload, after].map((reply) => reply.conn);
    expect(conns).toEqual(Array(7).fill(file.conn));
    expect(after.headers['x-requests']).toBe('7');
  });

  test('Connection: close (keepalive_timeout 0) and a Keep-Alive: timeout=1 hint: neither socket is kept', async () => {
    const agent = new HttpAgent({ keepAlive: true, pool });
    const bye = await send(url('/close'), { agent });
    expect(bye.headers.connection).toBe('close');
    await settled();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    const short = await send(url('/short'), { agent });
    expect(short.headers['keep-alive']).toBe('timeout=1');
    expect(short.conn).not.toBe(bye.conn);
    await settled();
    expect(pool.stats()).toMatchObject({ idle: 0 });
    const next = await send(url('/hello'), { agent });
    expect([bye.conn, short.conn]).not.toContain(next.conn);
  });

  test('HTTPS with a private CA: verified, kept alive across requests; an unknown CA fails', async () => {
    const agent = new HttpsAgent({ keepAlive: true, pool, ca: certs.ca });
    const replies = [];
    for (let i = 0; i < 3; i++) replies.push(await send(secureUrl('/hello'), { agent }));
    expect(replies.map((reply) => reply.body.toString())).toEqual(Array(3).fill('hello from nginx\n'));
    expect(new Set(replies.map((reply) => reply.conn)).size).toBe(1);
    const body = payload(4 * MiB);
    const upload = await send(secureUrl('/upload'), { agent, method: 'POST', body: Readable.from([body.subarray(0, MiB), body.subarray(MiB)]) });
    expect(upload.conn).toBe(replies[0]!.conn);
    await settled();
    const file = await send(secureUrl('/big.bin'), { agent });
    expect(file.body.equals(nginx.big)).toBe(true);
    await expect(send(secureUrl('/hello'), { agent: new HttpsAgent({ keepAlive: true, pool }) })).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  });

  test('axios through HttpsAgent to nginx', async () => {
    const httpsAgent = new HttpsAgent({ keepAlive: true, pool, ca: certs.ca });
    const res = await axios.get<string>(secureUrl('/hello'), { httpsAgent, proxy: false, responseType: 'text' });
    expect([res.status, res.data]).toEqual([200, 'hello from nginx\n']);
  });
});
