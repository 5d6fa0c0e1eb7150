import diagnostics from 'node:diagnostics_channel';
import { pathToFileURL } from 'node:url';
import { isTimeout, New, ResourceLimitExceededError, ResourcePool, tlsDialer, type Dialer } from '../lib/index.js';
import { runModule } from './helpers/child.js';
import { distIndex, distUndici } from './helpers/dist.js';
import { refusedAddress, roundTrip, startServer, type TestServer } from './helpers/servers.js';

let server: TestServer;
let silent: TestServer;
beforeAll(async () => {
  server = await startServer();
  silent = await startServer(() => {});
});
afterAll(async () => {
  await server.close();
  await silent.close();
});

describe('use()', () => {
  test('puts the connection back when fn resolves, and returns its result', async () => {
    const pool = new ResourcePool({ max: 2 });
    const res = New('tcp', server.address, { pool });
    const reply = await res.use((conn) => roundTrip(conn, 'ping'));
    expect(reply).toBe('ping');
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
    await res.use((conn) => roundTrip(conn, 'again'));
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1, dials: 1, reuses: 1 });
    await pool.close();
  });

  test('closes the connection when fn throws, then rethrows, so a connection in an unknown state is never reused', async () => {
    const pool = new ResourcePool({ max: 2 });
    const res = New('tcp', server.address, { pool });
    const failure = new Error('protocol error');
    await expect(
      res.use(async (conn) => {
        conn.write('half a request');
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
    await pool.close();
  });

  test('fn may put() or close() the connection itself', async () => {
    const pool = new ResourcePool({ max: 2 });
    const res = New('tcp', server.address, { pool });
    await res.use((conn) => conn.put());
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
    await res.use((conn) => conn.close());
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
    await pool.close();
  });

  test('rejects with ERR_INVALID_ARG_TYPE when fn is not a function, before anything opens', async () => {
    const pool = new ResourcePool({ max: 1 });
    await expect(New('tcp', server.address, { pool }).use('nope' as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, dials: 0 });
  });
});

test('PooledConn#reused tells a socket from the idle list from one dialed for this get()', async () => {
  const pool = new ResourcePool({ max: 2 });
  const res = New('tcp', server.address, { pool });
  const first = await res.get();
  expect(first.reused).toBe(false);
  first.put();
  const second = await res.get();
  expect(second.reused).toBe(true);
  await second.close();
  const third = await res.get();
  expect(third.reused).toBe(false);
  third.put();
  await pool.close();
});

describe('cumulative counters in stats()', () => {
  test('count dials, reuses, evictions, dial errors and waits given up', async () => {
    const pool = new ResourcePool({ max: 1 });
    const a = New('tcp', server.address, { pool });
    (await a.get()).put();
    (await a.get()).put();
    expect(pool.stats()).toMatchObject({ dials: 1, reuses: 1, evictions: 0 });

    const other = New('tcp', silent.address, { pool });
    (await other.get()).put(); // the pool is full of a's idle socket: evict it
    expect(pool.stats()).toMatchObject({ dials: 2, evictions: 1 });

    const refused = New('tcp', await refusedAddress(), { pool });
    await expect(refused.get()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(pool.stats()).toMatchObject({ dialErrors: 1, evictions: 2 });

    const held = await a.get();
    const controller = new AbortController();
    const waiting = New('tcp', server.address, { pool }).get(controller.signal);
    controller.abort();
    await expect(waiting).rejects.toBeInstanceOf(ResourceLimitExceededError);
    expect(pool.stats()).toMatchObject({ waitsGivenUp: 1, waiting: 0 });
    held.put();
    await pool.close();
    expect(pool.stats()).toMatchObject({ dials: 3, dialErrors: 1, reuses: 1, evictions: 2, waitsGivenUp: 1, leaks: 0 });
  });
});

describe('diagnostics_channel', () => {
  function record(names: string[]): { events: Array<[string, Record<string, unknown>]>; stop(): void } {
    const events: Array<[string, Record<string, unknown>]> = [];
    const handlers = names.map((name) => {
      const handler = (message: unknown): void => void events.push([name, message as Record<string, unknown>]);
      diagnostics.subscribe(name, handler);
      return [name, handler] as const;
    });
    return { events, stop: () => handlers.forEach(([name, handler]) => diagnostics.unsubscribe(name, handler)) };
  }

  test('dials, reuses, evictions and closes are published with the pool, network, address and dialer key', async () => {
    const pool = new ResourcePool({ max: 1 });
    const recording = record(['connpool:dial:start', 'connpool:dial:end', 'connpool:reuse', 'connpool:eviction', 'connpool:close']);
    try {
      const res = New('tcp', server.address, { pool });
      (await res.get()).put();
      (await res.get()).put();
      (await New('tcp', silent.address, { pool }).get()).put();
      await pool.close();
    } finally {
      recording.stop();
    }
    expect(recording.events.map(([name]) => name)).toEqual([
      'connpool:dial:start',
      'connpool:dial:end',
      'connpool:reuse',
      'connpool:eviction',
      'connpool:close',
      'connpool:dial:start',
      'connpool:dial:end',
      'connpool:close',
    ]);
    const [, dialEnd] = recording.events[1]!;
    expect(dialEnd).toMatchObject({ pool, network: 'tcp', address: server.address, key: 'net' });
    expect(dialEnd.socket).toBeDefined();
    expect(recording.events[4]![1]).toMatchObject({ pool, network: 'tcp', address: server.address, key: 'net' });
  });

  test('a failed dial is published on connpool:dial:error with its error', async () => {
    const pool = new ResourcePool({ max: 1 });
    const recording = record(['connpool:dial:error']);
    try {
      await expect(New('tcp', await refusedAddress(), { pool }).get()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    } finally {
      recording.stop();
    }
    expect(recording.events).toHaveLength(1);
    expect(recording.events[0]![1].error).toMatchObject({ code: 'ECONNREFUSED' });
  });

  test('a get() that has to wait is published on connpool:wait', async () => {
    const pool = new ResourcePool({ max: 1 });
    const recording = record(['connpool:wait']);
    try {
      const held = await New('tcp', server.address, { pool }).get();
      const waiting = New('tcp', server.address, { pool }).get();
      held.put();
      (await waiting).put();
    } finally {
      recording.stop();
    }
    expect(recording.events).toEqual([['connpool:wait', { pool }]]);
    await pool.close();
  });

  test('nothing is published, and no message is built, while nobody subscribes', async () => {
    const pool = new ResourcePool({ max: 1 });
    const seen: unknown[] = [];
    const handler = (message: unknown): void => void seen.push(message);
    diagnostics.subscribe('connpool:reuse', handler);
    diagnostics.unsubscribe('connpool:reuse', handler);
    expect(diagnostics.channel('connpool:reuse').hasSubscribers).toBe(false);
    const res = New('tcp', server.address, { pool });
    (await res.get()).put();
    (await res.get()).put();
    expect(seen).toHaveLength(0);
    expect(pool.stats().reuses).toBe(1);
    await pool.close();
  });
});

describe('isTimeout()', () => {
  test('is true for each shape a timeout takes, and false for other failures', async () => {
    const pool = new ResourcePool({ max: 1 });
    // 1. The wait for a slot timed out: ResourceLimitExceededError caused by a TimeoutError.
    const held = await New('tcp', server.address, { pool }).get();
    const waited = await New('tcp', server.address, { pool })
      .get(AbortSignal.timeout(20))
      .catch((error: unknown) => error);
    expect(waited).toBeInstanceOf(ResourceLimitExceededError);
    expect(isTimeout(waited)).toBe(true);
    held.put();
    await pool.close();

    // 2. The signal timed out during a dial: the TimeoutError itself.
    const hanging: Dialer = { key: 'hang', dial: (_n, _a, signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))) };
    const dialPool = new ResourcePool({ max: 1, orphanTimeout: 0 });
    const duringDial = await New('tcp', server.address, { pool: dialPool })
      .get(AbortSignal.timeout(20), hanging)
      .catch((error: unknown) => error);
    expect(duringDial).toMatchObject({ name: 'TimeoutError' });
    expect(isTimeout(duringDial)).toBe(true);

    // 3. The dialer's own timeout: ETIMEDOUT (a TLS handshake the peer never answers).
    const etimedout = await New('tcp', silent.address, { pool: dialPool })
      .get(undefined, tlsDialer({ timeout: 20 }))
      .catch((error: unknown) => error);
    expect(etimedout).toMatchObject({ code: 'ETIMEDOUT' });
    expect(isTimeout(etimedout)).toBe(true);
    await dialPool.close();

    // Not timeouts.
    const aborted = new AbortController();
    aborted.abort();
    expect(isTimeout(new ResourceLimitExceededError({ cause: aborted.signal.reason }))).toBe(false);
    expect(isTimeout(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBe(false);
    expect(isTimeout(undefined)).toBe(false);
    expect(isTimeout('ETIMEDOUT')).toBe(false);
  });

  test('follows cause: fetch() rejects with TypeError("fetch failed") wrapping the timeout, for a server that never answers', async () => {
    // In a child process: under jest's module sandbox, Node's own fetch() rewraps undici 7's errors without their code.
    const script = `
      import net from 'node:net';
      import { Agent, fetch as undiciFetch } from 'undici';
      const { isTimeout, New, ResourcePool } = await import(${JSON.stringify(pathToFileURL(distIndex).href)});
      const { createDispatcher } = await import(${JSON.stringify(pathToFileURL(distUndici).href)});
      const causes = (error) => {
        const chain = [];
        for (let e = error; e; e = e.cause) chain.push(typeof e.code === 'string' ? e.code : e.name === 'TypeError' ? 'TypeError: ' + e.message : e.name);
        return chain;
      };
      const seen = async (promise) => promise.then(() => 'resolved', (error) => ({ chain: causes(error), isTimeout: isTimeout(error) }));
      const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
      const silent = await listen(net.createServer(() => {}));
      const echo = await listen(net.createServer((socket) => socket.pipe(socket)));
      const stalling = new Agent({ headersTimeout: 50 });
      const url = 'http://127.0.0.1:' + silent.address().port + '/';
      const viaNode = await seen(fetch(url, { dispatcher: stalling }));
      const viaUndici = await seen(undiciFetch(url, { dispatcher: stalling }));
      await stalling.close();
      const pool = new ResourcePool({ max: 1 });
      const held = await New('tcp', '127.0.0.1:' + echo.address().port, { pool }).get();
      const dispatcher = createDispatcher({ pool, acquireTimeout: 20 });
      const waited = await seen(undiciFetch('http://127.0.0.1:' + echo.address().port + '/', { dispatcher }));
      held.put();
      await dispatcher.close();
      await pool.close();
      silent.close();
      echo.close();
      console.log(JSON.stringify({ viaNode, viaUndici, waited }));
    `;
    const result = await runModule<Record<string, unknown>>(script);
    expect(result).toEqual({
      // Node's own fetch and undici's, the response headers timing out.
      viaNode: { chain: ['TypeError: fetch failed', 'UND_ERR_HEADERS_TIMEOUT'], isTimeout: true },
      viaUndici: { chain: ['TypeError: fetch failed', 'UND_ERR_HEADERS_TIMEOUT'], isTimeout: true },
      // createDispatcher() whose wait for a slot outlives acquireTimeout.
      waited: { chain: ['TypeError: fetch failed', 'ERR_RESOURCE_LIMIT_EXCEEDED', 'TimeoutError'], isTimeout: true },
    });
  });

  test('follows cause a bounded number of levels, and stops on a cycle', () => {
    const wrap = (cause: unknown, levels: number): unknown => (levels === 0 ? cause : wrap(new Error('wrapped', { cause }), levels - 1));
    const timeout = Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' });
    expect(isTimeout(wrap(timeout, 8))).toBe(true);
    expect(isTimeout(wrap(timeout, 9))).toBe(false);
    const first = new Error('first');
    const second = new Error('second', { cause: first });
    first.cause = second;
    expect(isTimeout(first)).toBe(false);
    const self = new Error('self');
    self.cause = self;
    expect(isTimeout(self)).toBe(false);
    expect(isTimeout(new TypeError('fetch failed', { cause: new Error('connection refused') }))).toBe(false);
  });
});
