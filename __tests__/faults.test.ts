/**
 * Faults, and what they leave behind: after each one stats() comes back to
 * inUse 0 / releasing 0 / waiting 0, no slot is leaked (a get() on a max:1
 * pool still works), and no waiter hangs.
 *
 * Covered elsewhere, not repeated here:
 * - dial.test.ts: a dialer that throws, rejects, resolves a non-socket or a
 *   destroyed socket (S9); ECONNREFUSED; a TLS dial timeout (ETIMEDOUT); the
 *   E3 orphan rules one dial at a time (the only orphan joins the idle list,
 *   a second one is destroyed, a failing orphan frees its slot, a black-holed
 *   address tried in sequence costs one extra slot).
 * - tls.test.ts: unknown CA, wrong host name (ERR_TLS_CERT_ALTNAME_INVALID).
 * - idle.test.ts: E1, the peer closes, resets or speaks on an idle socket.
 * - pool.test.ts: allocate() / release() of a shared Resource throwing; S9.
 *
 * Here: a reset and a close by the server while the connection is in use,
 * E1 over TLS, and every fault again with callers waiting in the queue
 * behind it (TLS failures, timeouts, aborts during dials, failing dialers,
 * allocate() and release()).
 */
import { once } from 'node:events';
import type net from 'node:net';
import tls from 'node:tls';
import { New, netDialer, ResourcePool, tlsDialer, type Dialer, type PooledConn } from '../lib/index.js';
import {
  makeCerts,
  refusedAddress,
  roundTrip,
  startServer,
  startTlsServer,
  until,
  type Certs,
  type TestServer,
} from './helpers/servers.js';

let certs: Certs;
let echo: TestServer;
/** Accepts, reads and never answers: a TLS handshake to it never completes (a black hole). */
let silent: TestServer;
let secure: TestServer;
let refused: string;
const pools: ResourcePool[] = [];

beforeAll(async () => {
  certs = makeCerts();
  echo = await startServer();
  // It reads (and drops) what it is sent, so that it sees the client's FIN and closes its side.
  silent = await startServer((socket) => socket.resume());
  secure = await startTlsServer(certs);
  refused = await refusedAddress();
});
afterAll(async () => {
  await Promise.all(pools.map((pool) => pool.close()));
  await Promise.all([echo.close(), silent.close(), secure.close()]);
});

function newPool(max: number): ResourcePool {
  const pool = new ResourcePool({ max });
  pools.push(pool);
  return pool;
}

/** Every slot is back, nobody waits, and the pool still serves a round trip at full size. */
async function expectRecovered(pool: ResourcePool): Promise<void> {
  await until(() => pool.stats().inUse === 0 && pool.stats().releasing === 0, 'every slot to come back');
  expect(pool.stats()).toMatchObject({ inUse: 0, releasing: 0, waiting: 0 });
  const conns = await Promise.all(Array.from({ length: pool.max }, () => New('tcp', echo.address, { pool }).get(AbortSignal.timeout(5_000))));
  for (const conn of conns) expect(await roundTrip(conn, 'still works')).toBe('still works');
  for (const conn of conns) conn.put();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: pool.max, waiting: 0 });
}

/** The server side of `conn` (the server may see the connection a moment after the client does). */
async function serverSide(server: TestServer, conn: PooledConn): Promise<net.Socket> {
  const port = conn.localPort;
  const find = (): net.Socket | undefined => [...server.sockets].find((s) => s.remotePort === port);
  await until(() => find() !== undefined, `the server side of client port ${port}`);
  return find()!;
}

/** Resolves once `pool` has `count` waiters queued. */
const waiters = (pool: ResourcePool, count: number): Promise<void> =>
  until(() => pool.stats().waiting === count, `${count} waiters`);

describe('E2: a reset (RST) by the server while the connection is in use', () => {
  test('the PooledConn emits ECONNRESET; put() then closes it (not idled); the slot comes back', async () => {
    const pool = newPool(1);
    const res = New('tcp', echo.address, { pool });
    const conn = await res.get();
    const port = conn.localPort;
    expect(await roundTrip(conn, 'before')).toBe('before');
    // The caller is reading (awaiting more) when the reset comes.
    const errored = once(conn, 'error');
    conn.resume();
    (await serverSide(echo, conn)).resetAndDestroy();
    const [error] = await errored;
    expect(error).toMatchObject({ code: 'ECONNRESET' });
    expect(() => conn.put()).not.toThrow();
    await until(() => pool.stats().releasing === 0);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
    expect(() => conn.write('x')).toThrow(expect.objectContaining({ code: 'ERR_CONN_RELEASED' }));
    const again = await res.get();
    expect(again.localPort).not.toBe(port);
    expect(await roundTrip(again, 'after')).toBe('after');
    again.put();
    await expectRecovered(pool);
  });

  test('a caller awaiting the reply gets ECONNRESET; close() (the seed pattern) resolves with the slot free', async () => {
    const resetting = await startServer((socket) => socket.once('data', () => socket.resetAndDestroy()));
    try {
      const pool = newPool(1);
      const conn = await New('tcp', resetting.address, { pool }).get();
      conn.on('error', () => {});
      await expect(roundTrip(conn, 'reset me')).rejects.toMatchObject({ code: 'ECONNRESET' });
      await conn.close();
      expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
      expect(() => conn.put()).not.toThrow(); // S6: put() after close() does nothing
      await expectRecovered(pool);
    } finally {
      await resetting.close();
    }
  });

  test('callers waiting behind the reset connection are all served, in order', async () => {
    const pool = newPool(1);
    const conn = await New('tcp', echo.address, { pool }).get();
    const errored = once(conn, 'error');
    conn.resume();
    const order: number[] = [];
    const waiting = [0, 1, 2].map((i) =>
      New('tcp', echo.address, { pool })
        .get()
        .then(async (next) => {
          order.push(i);
          const text = `waiter ${i}`;
          const echoed = await roundTrip(next, text);
          next.put();
          return echoed;
        }),
    );
    await waiters(pool, 3);
    (await serverSide(echo, conn)).resetAndDestroy();
    expect(await errored).toEqual([expect.objectContaining({ code: 'ECONNRESET' })]);
    conn.put();
    expect(await Promise.all(waiting)).toEqual(['waiter 0', 'waiter 1', 'waiter 2']);
    expect(order).toEqual([0, 1, 2]);
    await expectRecovered(pool);
  });
});

describe('E2: the server closes while the connection is in use', () => {
  test('a reading caller sees end; put() closes the socket instead of idling it', async () => {
    const pool = newPool(1);
    const res = New('tcp', echo.address, { pool });
    const conn = await res.get();
    expect(await roundTrip(conn, 'before')).toBe('before');
    const ended = once(conn, 'end');
    conn.resume();
    (await serverSide(echo, conn)).end();
    await ended;
    conn.put();
    await until(() => pool.stats().releasing === 0);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
    await expectRecovered(pool);
  });

  test('a caller that reads nothing: after put() the socket is not kept (closed at put(), or dropped by the idle watch) and never handed out', async () => {
    const pool = newPool(1);
    const res = New('tcp', echo.address, { pool });
    const conn = await res.get();
    const port = conn.localPort;
    const side = await serverSide(echo, conn);
    const finSent = once(side, 'finish');
    side.end();
    await finSent;
    conn.put();
    await until(() => pool.stats().idle === 0 && pool.stats().releasing === 0, 'the socket to be closed');
    expect(pool.stats()).toMatchObject({ inUse: 0 });
    const next = await res.get();
    expect(next.localPort).not.toBe(port);
    expect(await roundTrip(next, 'fresh')).toBe('fresh');
    next.put();
    await expectRecovered(pool);
  });

  test('a caller waiting for the slot gets it at put() and a working connection', async () => {
    const pool = newPool(1);
    const conn = await New('tcp', echo.address, { pool }).get();
    const waiting = New('tcp', echo.address, { pool }).get();
    await waiters(pool, 1);
    const ended = once(conn, 'end');
    conn.resume();
    (await serverSide(echo, conn)).end();
    await ended;
    expect(pool.stats()).toMatchObject({ inUse: 1, waiting: 1 });
    conn.put();
    const next = await waiting;
    expect(await roundTrip(next, 'served')).toBe('served');
    next.put();
    await expectRecovered(pool);
  });
});

describe('E1 over TLS: an idle TLS connection is dropped, never handed out, when the server', () => {
  /** The raw TCP sockets by client port (a TLSSocket cannot be reset itself), and the TLS sockets over them. */
  const raws = new Map<number, net.Socket>();
  const accepted = new Map<number, { secure: tls.TLSSocket; raw: net.Socket }>();
  let server: tls.Server;
  let address: string;
  beforeAll(async () => {
    server = tls.createServer({ key: certs.key, cert: certs.cert }, (socket) => {
      socket.on('error', () => {});
      socket.pipe(socket);
    });
    server.on('connection', (raw: net.Socket) => {
      raw.on('error', () => {});
      raws.set(raw.remotePort!, raw);
    });
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      accepted.set(socket.remotePort!, { secure: socket, raw: raws.get(socket.remotePort!)! });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  afterAll(async () => {
    for (const raw of raws.values()) raw.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  const faults: Array<[string, (side: { secure: tls.TLSSocket; raw: net.Socket }) => void]> = [
    ['closes it (close_notify and FIN)', ({ secure }) => secure.end()],
    ['resets it', ({ raw }) => raw.resetAndDestroy()],
    ['sends unsolicited bytes on it', ({ secure }) => secure.write('surprise')],
  ];
  test.each(faults)('%s', async (_, fault) => {
    const pool = newPool(1);
    const dialer = tlsDialer({ ca: certs.ca });
    const res = New('tcp', address, { pool });
    const conn = await res.get(undefined, dialer);
    const port = conn.localPort!;
    expect(await roundTrip(conn, 'hi')).toBe('hi');
    conn.put();
    expect(pool.stats()).toMatchObject({ idle: 1 });
    await until(() => accepted.has(port), 'the server to see the connection');
    fault(accepted.get(port)!);
    await until(() => pool.stats().idle === 0 && pool.stats().releasing === 0, 'the idle socket to be dropped');
    const next = await res.get(undefined, dialer);
    expect(next.localPort).not.toBe(port);
    expect(await roundTrip(next, 'fresh')).toBe('fresh');
    await next.close();
    await expectRecovered(pool);
  });
});

describe('S2/S9: faults with callers waiting in the queue', () => {
  test('a queue mixing every dial fault, an abort, a failing allocate() and good callers: each settles as it should, admitted in FIFO order', async () => {
    const pool = newPool(1);
    const holder = await New('tcp', echo.address, { pool }).get();
    const holderErrored = once(holder, 'error');
    holder.resume();
    const thrown = new Error('dialer threw');
    const rejected = new Error('dialer rejected');
    const allocateFailed = new Error('allocate failed');
    /** Who was given the slot, in order: each dial (or allocate) starts once its caller is admitted. */
    const admitted: string[] = [];
    const admitting = (name: string, dialer: Dialer): Dialer => ({
      key: dialer.key,
      dial(network, address, signal) {
        admitted.push(name);
        return dialer.dial(network, address, signal);
      },
    });
    const throwing: Dialer = { key: 'throws', dial: () => { throw thrown; } };
    const rejecting: Dialer = { key: 'rejects', dial: () => Promise.reject(rejected) };
    const controller = new AbortController();
    const settle = (promise: Promise<PooledConn | void>, text: string): Promise<unknown> =>
      promise.then(
        async (conn) => {
          if (conn === undefined) return 'allocated';
          const echoed = await roundTrip(conn, text);
          conn.put();
          return echoed;
        },
        (error: unknown) => error,
      );
    const get = (name: string, address: string, dialer: Dialer, signal?: AbortSignal): Promise<unknown> =>
      settle(New('tcp', address, { pool }).get(signal, admitting(name, dialer)), name);
    const queue = [
      get('throws', echo.address, throwing),
      get('rejects', echo.address, rejecting),
      get('refused', refused, netDialer()),
      get('aborted', echo.address, netDialer(), controller.signal),
      get('unknown CA', secure.address, tlsDialer()),
      get('good 1', echo.address, netDialer()),
      get('wrong host', `localhost:${secure.port}`, tlsDialer({ ca: certs.ca, servername: 'wrong.example' })),
      get('handshake timeout', silent.address, tlsDialer({ timeout: 50 })),
      settle(
        pool
          .create({
            allocate: () => {
              admitted.push('allocate throws');
              throw allocateFailed;
            },
            release: () => {},
          })
          .get(),
        '',
      ),
      get('tls ok', secure.address, tlsDialer({ ca: certs.ca })),
      get('good 2', echo.address, netDialer()),
    ];
    await waiters(pool, queue.length);
    controller.abort(new Error('gave up'));
    expect(pool.stats()).toMatchObject({ inUse: 1, waiting: queue.length - 1 });
    // The holder's connection breaks: its slot goes down the queue, fault after fault.
    (await serverSide(echo, holder)).resetAndDestroy();
    expect(await holderErrored).toEqual([expect.objectContaining({ code: 'ECONNRESET' })]);
    holder.put();
    const results = await Promise.all(queue);

    expect(results).toEqual([
      thrown,
      rejected,
      expect.objectContaining({ code: 'ECONNREFUSED' }),
      expect.objectContaining({ code: 'ERR_RESOURCE_LIMIT_EXCEEDED', cause: expect.objectContaining({ message: 'gave up' }) }),
      expect.objectContaining({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }),
      'good 1',
      expect.objectContaining({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' }),
      expect.objectContaining({ code: 'ETIMEDOUT' }),
      allocateFailed,
      'tls ok',
      'good 2',
    ]);
    // Every caller but the aborted one got the slot, in the order it asked: none overtook a fault.
    expect(admitted).toEqual([
      'throws',
      'rejects',
      'refused',
      'unknown CA',
      'good 1',
      'wrong host',
      'handshake timeout',
      'allocate throws',
      'tls ok',
      'good 2',
    ]);
    await expectRecovered(pool);
  });

  test('ECONNREFUSED for 20 concurrent callers over 2 slots: every one rejects, none hangs, no slot leaks', async () => {
    const pool = newPool(2);
    const results = await Promise.all(
      Array.from({ length: 20 }, () => New('tcp', refused, { pool }).get().catch((error: unknown) => error)),
    );
    for (const error of results) expect(error).toMatchObject({ code: 'ECONNREFUSED' });
    await expectRecovered(pool);
  });

  test('E3: concurrent aborted dials to a black-holed address cost at most one extra slot; aborted waiters reject with ERR_RESOURCE_LIMIT_EXCEEDED', async () => {
    const pool = newPool(3);
    // Long enough that the orphan is still dialing when the checks below run, even on a loaded machine.
    const dialer = tlsDialer({ timeout: 1_000 });
    const controller = new AbortController();
    const acceptedBefore = silent.accepted;
    const gets = Array.from({ length: 8 }, () =>
      New('tcp', silent.address, { pool })
        .get(controller.signal, dialer)
        .catch((error: unknown) => error),
    );
    await waiters(pool, 5);
    await until(() => silent.accepted - acceptedBefore === 3, 'three dials to reach the server');
    expect(pool.stats()).toMatchObject({ inUse: 3, waiting: 5 });
    const reason = new Error('deadline');
    controller.abort(reason);
    const results = await Promise.all(gets);
    const dialAborts = results.filter((error) => error === reason);
    const waitAborts = results.filter((error) => (error as { code?: string }).code === 'ERR_RESOURCE_LIMIT_EXCEEDED');
    expect([dialAborts.length, waitAborts.length]).toEqual([3, 5]);
    await until(() => pool.stats().inUse <= 1, 'the destroyed dials to free their slots');
    // Only one orphan is left dialing: it keeps one slot until its timeout.
    expect(pool.stats()).toMatchObject({ inUse: 1, waiting: 0 });
    await until(() => silent.sockets.size <= 1, 'the destroyed dials to close');
    expect(silent.sockets.size).toBe(1);
    const conn = await New('tcp', echo.address, { pool }).get();
    const conn2 = await New('tcp', echo.address, { pool }).get();
    expect(pool.stats()).toMatchObject({ inUse: 3 });
    conn.put();
    conn2.put();
    await expectRecovered(pool);
    await until(() => silent.sockets.size === 0, 'the orphan to time out and close');
  });

  test('E3: a caller waiting behind an orphaned dial is served once the orphan times out', async () => {
    const pool = newPool(1);
    const controller = new AbortController();
    const aborted = New('tcp', silent.address, { pool }).get(controller.signal, tlsDialer({ timeout: 100 }));
    await until(() => pool.stats().inUse === 1);
    const waiting = New('tcp', echo.address, { pool }).get();
    await waiters(pool, 1);
    const reason = new Error('deadline');
    controller.abort(reason);
    await expect(aborted).rejects.toBe(reason);
    // The orphan keeps the only slot while it dials: the waiter still waits...
    expect(pool.stats()).toMatchObject({ inUse: 1, waiting: 1 });
    // ...and gets it when the orphan's handshake times out.
    const conn = await waiting;
    expect(await roundTrip(conn, 'after the orphan')).toBe('after the orphan');
    conn.put();
    await expectRecovered(pool);
  });

  // Regression (found by this test, fixed in add1650): a signal that aborted while the get() waited
  // for an idle socket to be evicted (S4) was ignored, and the dial started unbounded as if the
  // signal had been aborted before get() (the immediate canceler): against a black hole the caller
  // got the dialer's ETIMEDOUT instead of its own deadline.
  test('S2/E3: a signal that aborts while an idle socket is evicted to make room rejects get() with its reason or ERR_RESOURCE_LIMIT_EXCEEDED, not a dial error', async () => {
    const pool = newPool(1);
    (await New('tcp', echo.address, { pool }).get()).put();
    expect(pool.stats()).toMatchObject({ idle: 1 });
    const controller = new AbortController();
    const getting = New('tcp', silent.address, { pool })
      .get(controller.signal, tlsDialer({ timeout: 200 }))
      .catch((error: unknown) => error);
    // The idle socket is being closed; its close completes on a later turn of the event loop.
    expect(pool.stats()).toMatchObject({ idle: 0, releasing: 1 });
    const reason = new Error('deadline');
    controller.abort(reason);
    const error = (await getting) as { code?: string };
    expect(error === reason || error.code === 'ERR_RESOURCE_LIMIT_EXCEEDED' ? 'aborted' : error).toBe('aborted');
    await expectRecovered(pool);
  });

  test('S2/E3: the same for a waiter admitted into an eviction: its signal aborting before the eviction completes rejects its get()', async () => {
    const pool = newPool(1);
    const holder = await New('tcp', echo.address, { pool }).get();
    const controller = new AbortController();
    const getting = New('tcp', silent.address, { pool })
      .get(controller.signal, tlsDialer({ timeout: 200 }))
      .catch((error: unknown) => error);
    await waiters(pool, 1);
    holder.put(); // idle, then evicted for the waiter (another key)
    // The waiter is admitted within a few microtasks; the eviction's close needs a turn of the event loop.
    for (let i = 0; i < 20 && pool.stats().waiting > 0; i++) await Promise.resolve();
    expect(pool.stats()).toMatchObject({ waiting: 0, idle: 0, releasing: 1 });
    const reason = new Error('deadline');
    controller.abort(reason);
    const error = (await getting) as { code?: string };
    expect(error === reason || error.code === 'ERR_RESOURCE_LIMIT_EXCEEDED' ? 'aborted' : error).toBe('aborted');
    await expectRecovered(pool);
  });

  test('a failing release() rejects release(), and the waiters behind it (a failing allocate(), a connection) are served', async () => {
    const pool = newPool(1);
    const releaseFailed = new Error('release failed');
    const allocateFailed = new Error('allocate failed');
    const held = pool.create({ allocate: () => {}, release: () => Promise.reject(releaseFailed) });
    await held.get();
    const failing = pool.create({ allocate: () => Promise.reject(allocateFailed), release: () => {} }).get();
    const conn = New('tcp', echo.address, { pool }).get();
    await waiters(pool, 2);
    await expect(held.release()).rejects.toBe(releaseFailed);
    await expect(failing).rejects.toBe(allocateFailed);
    const served = await conn;
    expect(await roundTrip(served, 'served')).toBe('served');
    served.put();
    await expectRecovered(pool);
  });

  test('an idle shared Resource whose release() throws is still evicted to make room for a connection', async () => {
    const pool = newPool(1);
    let releases = 0;
    const resource = pool.create({
      allocate: () => {},
      release: () => {
        releases++;
        throw new Error('release failed');
      },
    });
    await resource.get();
    resource.put();
    expect(pool.stats()).toMatchObject({ idle: 1 });
    const conn = await New('tcp', echo.address, { pool }).get();
    expect(releases).toBe(1);
    expect(await roundTrip(conn, 'evicted')).toBe('evicted');
    conn.put();
    await expectRecovered(pool);
    await resource.get(); // allocates again: the failed release still ended the old allocation
    resource.put();
  });
});
