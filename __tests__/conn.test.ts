import { New, ResourcePool, ConnInUseError, ConnReleasedError, type PooledConn } from '../lib/index.js';
import { drainPool } from './helpers/pool.js';
import { roundTrip, startServer, until, type TestServer } from './helpers/servers.js';

let server: TestServer;
let pool: ResourcePool;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());
beforeEach(() => {
  pool = new ResourcePool({ max: 4 });
});
afterEach(async () => {
  expect(pool.stats()).toMatchObject({ inUse: 0, releasing: 0, waiting: 0 });
  await drainPool(pool);
});

test('S6: put() after close() does nothing, and close() after put() does nothing', async () => {
  const res = New('tcp', server.address, { pool });
  const conn = await res.get();
  await conn.close();
  expect(() => conn.put()).not.toThrow();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
  const again = await res.get();
  again.put();
  await again.close();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
});

test('S6: put() or close() inside an await using block, then leaving it, throws nothing', async () => {
  const res = New('tcp', server.address, { pool });
  {
    await using conn = await res.get();
    conn.put();
  }
  {
    await using conn = await res.get();
    await conn.close();
  }
  {
    using conn = await res.get();
    expect(conn.isOut).toBe(true);
  }
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
});

test('the close-on-error pattern never returns a connection in an unknown state to the idle list', async () => {
  const res = New('tcp', server.address, { pool });
  const failing = async (): Promise<void> => {
    await using conn = await res.get();
    try {
      conn.write('half a request');
      throw new Error('protocol error');
    } catch (error) {
      await conn.close();
      throw error;
    }
  };
  await expect(failing()).rejects.toThrow('protocol error');
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
});

test('S7: a second get() on a handle whose connection is out rejects with ERR_CONN_IN_USE', async () => {
  const res = New('tcp', server.address, { pool });
  const conn = await res.get();
  await expect(res.get()).rejects.toBeInstanceOf(ConnInUseError);
  await expect(res.get()).rejects.toMatchObject({ code: 'ERR_CONN_IN_USE' });
  expect(pool.stats()).toMatchObject({ inUse: 1 });
  conn.put();
  (await res.get()).put();
});

test('S7: a get() while another get() on the same handle is pending rejects with ERR_CONN_IN_USE', async () => {
  const res = New('tcp', server.address, { pool });
  const first = res.get();
  await expect(res.get()).rejects.toMatchObject({ code: 'ERR_CONN_IN_USE' });
  (await first).put();
});

test('S7: a second put() throws ERR_CONN_RELEASED', async () => {
  const conn = await New('tcp', server.address, { pool }).get();
  conn.put();
  expect(() => conn.put()).toThrow(ConnReleasedError);
  expect(() => conn.put()).toThrow(expect.objectContaining({ code: 'ERR_CONN_RELEASED' }));
});

describe.each(['put', 'close'] as const)('S8: after %s()', (release) => {
  let conn: PooledConn;
  beforeEach(async () => {
    conn = await New('tcp', server.address, { pool }).get();
    if (release === 'put') conn.put();
    else await conn.close();
  });
  const uses: Array<[string, (conn: PooledConn) => unknown]> = [
    ['write()', (c) => c.write('x')],
    ['end()', (c) => c.end()],
    ['read()', (c) => c.read()],
    ['for await', (c) => c[Symbol.asyncIterator]()],
    ['localAddress', (c) => c.localAddress],
    ['localPort', (c) => c.localPort],
    ['remoteAddress', (c) => c.remoteAddress],
    ['remotePort', (c) => c.remotePort],
    ['setTimeout()', (c) => c.setTimeout(10)],
    ['setNoDelay()', (c) => c.setNoDelay()],
    ['setKeepAlive()', (c) => c.setKeepAlive(true)],
    ['getPeerCertificate()', (c) => c.getPeerCertificate()],
  ];
  test.each(uses)('%s throws ERR_CONN_RELEASED', (_, use) => {
    expect(() => use(conn)).toThrow(expect.objectContaining({ code: 'ERR_CONN_RELEASED' }));
  });
  test('disposing does nothing', async () => {
    await conn[Symbol.asyncDispose]();
    conn[Symbol.dispose]();
  });
});

test('S10: scheduleClose() closes an idle connection now', async () => {
  const res = New('tcp', server.address, { pool });
  (await res.get()).put();
  expect(pool.stats()).toMatchObject({ idle: 1 });
  res.scheduleClose();
  await until(() => pool.stats().releasing === 0);
  expect(pool.stats()).toMatchObject({ idle: 0, inUse: 0 });
});

test('S10: scheduleClose() on a connection in use closes it at its next put()', async () => {
  const res = New('tcp', server.address, { pool });
  const conn = await res.get();
  res.scheduleClose();
  expect(pool.stats()).toMatchObject({ inUse: 1 });
  conn.put();
  await until(() => pool.stats().releasing === 0);
  expect(pool.stats()).toMatchObject({ idle: 0, inUse: 0 });
  const next = await res.get();
  next.put();
  expect(pool.stats()).toMatchObject({ idle: 1 });
});

test('S10: scheduleClose() during a pending get() closes that connection at its put()', async () => {
  const res = New('tcp', server.address, { pool });
  const getting = res.get();
  res.scheduleClose();
  (await getting).put();
  await until(() => pool.stats().releasing === 0);
  expect(pool.stats()).toMatchObject({ idle: 0 });
});

test('S10: scheduleClose() leaves alone an idle socket another handle took over', async () => {
  const a = New('tcp', server.address, { pool });
  const b = New('tcp', server.address, { pool });
  (await a.get()).put();
  const taken = await b.get(); // reuses a's socket (E4)
  a.scheduleClose();
  taken.put();
  expect(pool.stats()).toMatchObject({ idle: 1, releasing: 0 });
});

describe('E2: put() closes instead of idling a connection that is not clean', () => {
  const dirty: Array<[string, (conn: PooledConn) => Promise<void> | void]> = [
    [
      'unread bytes buffered',
      async (conn) => {
        conn.write('echo me');
        await until(() => (conn.read(0), conn.readableLength > 0), 'the echo to arrive');
      },
    ],
    [
      'unread bytes not yet read into it',
      async (conn) => {
        conn.write('echo me');
        await until(() => server.sockets.size > 0 && [...server.sockets].every((s) => s.bytesWritten > 0));
        await new Promise((resolve) => setTimeout(resolve, 20));
      },
    ],
    ['writes not yet flushed', (conn) => void conn.write(Buffer.alloc(8 * 1024 * 1024))],
    ['ended by its user', (conn) => void conn.end()],
    [
      'errored',
      (conn) => {
        conn.on('error', () => {});
        conn.destroy(new Error('broken'));
      },
    ],
  ];
  test.each(dirty)('%s', async (_, spoil) => {
    const res = New('tcp', server.address, { pool });
    const conn = await res.get();
    await spoil(conn);
    conn.put();
    await until(() => pool.stats().releasing === 0);
    expect(pool.stats()).toMatchObject({ idle: 0, inUse: 0 });
  });

  test('no byte from one user ever reaches the next', async () => {
    const res = New('tcp', server.address, { pool });
    const first = await res.get();
    first.write('secret');
    await until(() => (first.read(0), first.readableLength > 0));
    first.put();
    const second = await res.get();
    expect(await roundTrip(second, 'fresh')).toBe('fresh');
    second.put();
  });

  test('a connection read to the end of its reply is clean and reused', async () => {
    const res = New('tcp', server.address, { pool });
    const conn = await res.get();
    const port = conn.localPort;
    expect(await roundTrip(conn, 'clean')).toBe('clean');
    conn.put();
    expect(pool.stats()).toMatchObject({ idle: 1 });
    const again = await res.get();
    expect(again.localPort).toBe(port);
    again.put();
  });
});

test('breaking out of for await keeps the connection open for put()', async () => {
  const res = New('tcp', server.address, { pool });
  const conn = await res.get();
  conn.write('one');
  for await (const chunk of conn) {
    expect(String(chunk)).toBe('one');
    break;
  }
  expect(conn.destroyed).toBe(false);
  conn.put();
  expect(pool.stats()).toMatchObject({ idle: 1 });
});

test('a PooledConn is a Duplex with backpressure: 4 MiB echoed through it arrive whole', async () => {
  const conn = await New('tcp', server.address, { pool }).get();
  const payload = Buffer.alloc(4 * 1024 * 1024, 'abcdefgh');
  const writing = new Promise<void>((resolve, reject) => conn.end(payload, () => resolve()).once('error', reject));
  let received = 0;
  let equal = true;
  for await (const chunk of conn as AsyncIterable<Buffer>) {
    equal &&= chunk.equals(payload.subarray(received, received + chunk.length));
    received += chunk.length;
    if (received >= payload.length) break;
  }
  await writing;
  expect(received).toBe(payload.length);
  expect(equal).toBe(true);
  conn.put(); // ended: closed, not idled
  await until(() => pool.stats().releasing === 0);
  expect(pool.stats()).toMatchObject({ idle: 0 });
});

test('net.Conn surface: addresses, timeouts, options', async () => {
  const conn = await New('tcp', server.address, { pool }).get();
  expect(conn.remoteAddress).toBe('127.0.0.1');
  expect(conn.remotePort).toBe(server.port);
  expect(conn.localAddress).toBe('127.0.0.1');
  expect(typeof conn.localPort).toBe('number');
  expect(conn.encrypted).toBe(false);
  expect(conn.authorized).toBe(false);
  expect(conn.alpnProtocol).toBeNull();
  expect(conn.getPeerCertificate()).toBeUndefined();
  const timedOut = new Promise<void>((resolve) => conn.setTimeout(20, resolve));
  conn.setNoDelay(true).setKeepAlive(true, 1_000);
  await timedOut;
  conn.put();
  expect(pool.stats()).toMatchObject({ idle: 1 });
});
