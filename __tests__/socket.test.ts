/**
 * createConnection(), park() and unpark(): sockets of the process on the
 * budget (SPEC "Every socket of the process on the budget"). Real sockets on
 * 127.0.0.1, real TLS.
 */
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import {
  createConnection,
  New,
  park,
  PoolClosedError,
  ResourceLimitExceededError,
  ResourcePool,
  unpark,
  type CreateConnectionOptions,
  type CreateTlsConnectionOptions,
} from '../lib/index.js';
import { makeCerts, refusedAddress, startServer, startTlsServer, until, type Certs, type TestServer } from './helpers/servers.js';

let certs: Certs;
let echo: TestServer;
let tlsEcho: TestServer;
let pool: ResourcePool;
const opened: net.Socket[] = [];

beforeAll(async () => {
  certs = makeCerts();
  echo = await startServer();
  tlsEcho = await startTlsServer(certs);
});

afterAll(async () => {
  await echo.close();
  await tlsEcho.close();
});

beforeEach(() => {
  pool = new ResourcePool({ max: 1 });
});

afterEach(async () => {
  for (const socket of opened.splice(0)) socket.destroy();
  await pool.close();
});

function connect(options: Partial<CreateConnectionOptions> = {}): net.Socket {
  const socket = createConnection({ host: '127.0.0.1', port: echo.port, pool, ...options } as CreateConnectionOptions);
  opened.push(socket);
  return socket;
}

function connectTls(options: Partial<CreateTlsConnectionOptions> = {}): tls.TLSSocket {
  const socket = createConnection({ host: '127.0.0.1', port: tlsEcho.port, pool, tls: { ca: certs.ca }, ...options } as CreateTlsConnectionOptions);
  opened.push(socket);
  return socket;
}

/** Reads `length` characters from `socket`, leaving it open. */
function read(socket: net.Socket, length: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += String(chunk);
      if (text.length < length) return;
      socket.off('data', onData).off('error', reject);
      socket.pause();
      resolve(text);
    };
    socket.on('data', onData).once('error', reject);
  });
}

/** Resolves at the socket's 'close' (events.once() would reject on an 'error' before it). */
function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/** The socket's 'error' (if any) and that 'close' came. */
async function outcome(socket: net.Socket): Promise<{ error: (Error & { code?: string }) | undefined }> {
  let error: Error | undefined;
  socket.on('error', (e) => (error = e));
  await closed(socket);
  return { error };
}

describe('createConnection(): a slot free at once', () => {
  test('returns a net.Socket that connects at once, holds one slot, and frees it at close', async () => {
    const socket = connect();
    expect(socket).toBeInstanceOf(net.Socket);
    expect(pool.stats()).toMatchObject({ inUse: 1, waiting: 0 });
    await once(socket, 'connect');
    socket.write('ping');
    expect(await read(socket, 4)).toBe('ping');
    expect(pool.stats()).toMatchObject({ inUse: 1, dials: 1 });
    socket.destroy();
    await closed(socket);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
  });

  test('tls: true makes a verified tls.TLSSocket; its connect listener is secureConnect', async () => {
    let secure = false;
    const socket = createConnection({ host: 'localhost', port: tlsEcho.port, pool, tls: true, ca: certs.ca }, () => (secure = true));
    opened.push(socket);
    expect(socket).toBeInstanceOf(tls.TLSSocket);
    await once(socket, 'secureConnect');
    expect(secure).toBe(true);
    expect(socket.authorized).toBe(true);
    expect(pool.stats()).toMatchObject({ inUse: 1, dials: 1 });
  });

  test('a refused connect: error then close, the slot freed, counted as a dial error', async () => {
    const [host, port] = (await refusedAddress()).split(':');
    const socket = connect({ host, port: Number(port) });
    expect((await outcome(socket)).error).toMatchObject({ code: 'ECONNREFUSED' });
    expect(pool.stats()).toMatchObject({ inUse: 0, dials: 0, dialErrors: 1 });
  });

  test('connectTimeout: a TLS handshake that never finishes fails with ETIMEDOUT and frees the slot', async () => {
    const silent = await startServer(() => {});
    try {
      const socket = createConnection({ host: '127.0.0.1', port: silent.port, pool, tls: true, connectTimeout: 30 });
      expect((await outcome(socket)).error).toMatchObject({ code: 'ETIMEDOUT' });
      expect(pool.stats()).toMatchObject({ inUse: 0, dialErrors: 1 });
    } finally {
      await silent.close();
    }
  });

  test('bad options throw TypeError / RangeError with the core codes, before any slot is taken', () => {
    expect(() => createConnection(null as unknown as CreateConnectionOptions)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => connect({ acquireTimeout: '5' as unknown as number })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"5"') }));
    expect(() => connect({ connectTimeout: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => connect({ pool: {} as ResourcePool })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(pool.stats()).toMatchObject({ inUse: 0, waiting: 0 });
  });
});

describe('createConnection(): waiting for a slot', () => {
  test.each([
    ['plain TCP', () => connect()],
    ['TLS to an IP address', () => connectTls({ servername: 'localhost' })],
    ['TLS to a host name', () => connectTls({ host: 'localhost' })],
  ])('%s: a connecting socket while it waits; writes are buffered and flushed once connected', async (_kind, make) => {
    const holder = connect();
    await once(holder, 'connect');
    const socket = make();
    expect(pool.stats()).toMatchObject({ inUse: 1, waiting: 1 });
    expect(socket.connecting).toBe(true);
    expect(socket.pending).toBe(true);
    expect(socket.readyState).toBe('opening');
    socket.write('buffered');
    holder.destroy();
    expect(await read(socket, 8)).toBe('buffered');
    expect(socket.remoteAddress).toBe('127.0.0.1');
    if (socket instanceof tls.TLSSocket) expect(socket.authorized).toBe(true);
    expect(pool.stats()).toMatchObject({ inUse: 1, waiting: 0, dials: 2 });
  });

  test("setTimeout() counts the wait: 'timeout' fires while the socket waits for a slot", async () => {
    const holder = connect();
    const socket = connect();
    socket.setTimeout(20);
    await once(socket, 'timeout');
    expect(socket.connecting).toBe(true);
    expect(pool.stats()).toMatchObject({ waiting: 1 });
    socket.destroy();
    holder.destroy();
  });

  test('destroy() while waiting leaves the queue at once: no waiter, no slot, close without error', async () => {
    const holder = connect();
    const socket = connect();
    expect(pool.stats().waiting).toBe(1);
    socket.destroy();
    expect(pool.stats().waiting).toBe(0);
    expect((await outcome(socket)).error).toBeUndefined();
    holder.destroy();
    await closed(holder);
    expect(pool.stats()).toMatchObject({ inUse: 0, waiting: 0 });
  });

  test('acquireTimeout: ResourceLimitExceededError whose cause is a TimeoutError, then close', async () => {
    const holder = connect();
    const socket = connect({ acquireTimeout: 20 });
    const { error } = await outcome(socket);
    expect(error).toBeInstanceOf(ResourceLimitExceededError);
    expect(error).toMatchObject({ code: 'ERR_RESOURCE_LIMIT_EXCEEDED', cause: { name: 'TimeoutError' } });
    expect(pool.stats()).toMatchObject({ inUse: 1, waiting: 0, waitsGivenUp: 1 });
    holder.destroy();
  });

  test('a full queue (maxWaiting) fails the socket with QueueFullError', async () => {
    const small = new ResourcePool({ max: 1, maxWaiting: 0 });
    const holder = createConnection({ host: '127.0.0.1', port: echo.port, pool: small });
    const socket = createConnection({ host: '127.0.0.1', port: echo.port, pool: small });
    expect((await outcome(socket)).error).toMatchObject({ code: 'ERR_QUEUE_FULL' });
    holder.destroy();
    await small.close();
  });
});

describe('park() and unpark()', () => {
  test('a parked socket counts idle; unpark() takes it back in use', async () => {
    const socket = connect();
    await once(socket, 'connect');
    expect(park(socket)).toBe(true);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
    expect(unpark(socket)).toBe(true);
    expect(pool.stats()).toMatchObject({ inUse: 1, idle: 0, reuses: 1 });
    socket.write('still open');
    expect(await read(socket, 10)).toBe('still open');
  });

  test('eviction of a parked socket frees room for a waiting get(): destroyed at once, onReclaim told first, unpark() then false', async () => {
    const socket = connect();
    await once(socket, 'connect');
    const reclaimed: net.Socket[] = [];
    park(socket, (s) => reclaimed.push(s));
    const closing = closed(socket);
    const res = New('tcp', echo.address, { pool });
    const getting = res.get();
    expect(socket.destroyed).toBe(true);
    expect(reclaimed).toEqual([socket]);
    expect(unpark(socket)).toBe(false);
    const conn = await getting;
    expect(pool.stats()).toMatchObject({ inUse: 1, idle: 0, evictions: 1 });
    await closing;
    await conn.close();
  });

  test('a parked socket makes room for a waiting createConnection()', async () => {
    const parked = connect();
    await once(parked, 'connect');
    const waiting = connect();
    expect(pool.stats().waiting).toBe(1);
    park(parked);
    await once(waiting, 'connect');
    expect(parked.destroyed).toBe(true);
    expect(pool.stats()).toMatchObject({ inUse: 1, idle: 0, waiting: 0, evictions: 1 });
  });

  test('a parked socket closed by its peer or owner leaves the idle count', async () => {
    const socket = connect();
    await once(socket, 'connect');
    park(socket);
    socket.destroy();
    await closed(socket);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
    expect(unpark(socket)).toBe(false);
  });

  test('park() of a socket that is not one of createConnection()\'s returns false', () => {
    expect(park(new net.Socket())).toBe(false);
    expect(unpark(new net.Socket())).toBe(false);
  });
});

describe('pool.close()', () => {
  test('fails waiting sockets with PoolClosedError, and resolves once the last socket in use closes', async () => {
    const big = new ResourcePool({ max: 2 });
    const a = createConnection({ host: '127.0.0.1', port: echo.port, pool: big });
    const b = createConnection({ host: '127.0.0.1', port: echo.port, pool: big });
    await Promise.all([once(a, 'connect'), once(b, 'connect')]);
    const waiting = createConnection({ host: '127.0.0.1', port: echo.port, pool: big });
    const turnedAway = outcome(waiting);
    let isClosed = false;
    const closing = big.close().then(() => (isClosed = true));
    expect((await turnedAway).error).toBeInstanceOf(PoolClosedError);
    expect(park(b)).toBe(false);
    expect(b.destroyed).toBe(true);
    await new Promise(setImmediate);
    expect(isClosed).toBe(false);
    a.destroy();
    await closing;
    expect(big.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0, waiting: 0 });
  });

  test('closes parked sockets at once', async () => {
    const big = new ResourcePool({ max: 2 });
    const parked = createConnection({ host: '127.0.0.1', port: tlsEcho.port, pool: big, tls: { ca: certs.ca, servername: 'localhost' } });
    await once(parked, 'secureConnect');
    park(parked);
    const closing = big.close();
    expect(parked.destroyed).toBe(true);
    expect(big.stats()).toMatchObject({ idle: 0 });
    await closing;
    expect(big.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
  });

  test('a connect in flight is aborted by close()', async () => {
    const silent = await startServer(() => {});
    try {
      const small = new ResourcePool({ max: 1 });
      const socket = createConnection({ host: '127.0.0.1', port: silent.port, pool: small, tls: true });
      const result = outcome(socket);
      await small.close();
      expect((await result).error).toBeInstanceOf(PoolClosedError);
    } finally {
      await silent.close();
    }
  });
});

describe('a seeded random workload of createConnection, park, unpark and destroy', () => {
  /** A small deterministic generator (mulberry32), so a failing seed can be replayed. */
  function random(seed: number): () => number {
    return () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  test.each(Array.from({ length: 24 }, (_, i) => i + 1))('seed %i: the count never exceeds max and matches the sockets open at quiescence', async (seed) => {
    const next = random(seed);
    const max = 1 + Math.floor(next() * 4);
    const budget = new ResourcePool({ max });
    const sockets = new Set<net.Socket>();
    const parked = new Set<net.Socket>();
    const check = (): void => {
      const { inUse, idle, releasing } = budget.stats();
      expect(inUse + idle + releasing).toBeLessThanOrEqual(max);
    };
    for (let step = 0; step < 60; step++) {
      const roll = next();
      const list = [...sockets];
      const pick = list[Math.floor(next() * list.length)];
      if (roll < 0.4 || pick === undefined) {
        // Every wait is bounded, so that the workload reaches quiescence.
        const acquireTimeout = 1 + Math.floor(next() * 40);
        const socket =
          next() < 0.7
            ? createConnection({ host: '127.0.0.1', port: echo.port, pool: budget, acquireTimeout })
            : createConnection({ host: '127.0.0.1', port: tlsEcho.port, pool: budget, acquireTimeout, tls: { ca: certs.ca, servername: 'localhost' } });
        socket.on('error', () => {});
        socket.on('close', () => {
          sockets.delete(socket);
          parked.delete(socket);
        });
        sockets.add(socket);
      } else if (roll < 0.65) {
        if (!pick.connecting && park(pick)) parked.add(pick);
      } else if (roll < 0.8) {
        if (parked.delete(pick)) expect(unpark(pick)).toBe(!pick.destroyed);
      } else {
        pick.destroy();
      }
      check();
      if (next() < 0.3) await new Promise(setImmediate);
      check();
    }
    // Quiescence: nothing waits or connects any more.
    await until(
      () => budget.stats().waiting === 0 && budget.stats().releasing === 0 && [...sockets].every((s) => !s.connecting && !s.destroyed),
      'the workload to settle',
    );
    const open = [...sockets];
    const idle = open.filter((s) => parked.has(s)).length;
    expect(budget.stats()).toMatchObject({ inUse: open.length - idle, idle, waiting: 0 });
    for (const socket of sockets) socket.destroy();
    await budget.close();
    expect(budget.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0, waiting: 0 });
  });
});
