import { getEventListeners } from 'node:events';
import net from 'node:net';
import { New, netDialer, ResourcePool, tlsDialer, type Dialer } from '../lib/index.js';
import { drainPool } from './helpers/pool.js';
import { refusedAddress, roundTrip, startServer, until, type TestServer } from './helpers/servers.js';

let server: TestServer;
let silent: TestServer;
let pool: ResourcePool;
beforeAll(async () => {
  server = await startServer();
  silent = await startServer(() => {}); // accepts, never answers
});
afterAll(() => Promise.all([server.close(), silent.close()]));
beforeEach(() => {
  pool = new ResourcePool({ max: 3 });
});
afterEach(async () => {
  await until(() => pool.stats().inUse === 0 && pool.stats().releasing === 0, 'every slot to come back');
  expect(pool.stats()).toMatchObject({ waiting: 0 });
  await drainPool(pool);
});

/** A dialer whose dials the test completes by hand, with real sockets. */
function manualDialer(key = 'net'): Dialer & { pending: Array<{ signal: AbortSignal; finish(): void }> } {
  const pending: Array<{ signal: AbortSignal; finish(): void }> = [];
  return {
    key,
    pending,
    dial(network, address, signal) {
      return new Promise<net.Socket>((resolve, reject) => {
        pending.push({
          signal,
          finish: () => netDialer().dial(network, address, signal).then(resolve, reject),
        });
      });
    },
  };
}

describe('S9: a dialer that fails makes get() reject with its error and frees the slot', () => {
  const failure = new Error('dialer failed');
  const dialers: Array<[string, Dialer, unknown]> = [
    ['throws synchronously', { key: 'x', dial: () => { throw failure; } }, failure],
    ['rejects', { key: 'x', dial: () => Promise.reject(failure) }, failure],
    ['resolves something that is not a socket', { key: 'x', dial: () => Promise.resolve({} as net.Socket) }, expect.objectContaining({ code: 'ERR_INVALID_RETURN_VALUE' })],
    ['resolves a destroyed socket', { key: 'x', dial: async () => new net.Socket().destroy() }, expect.objectContaining({ code: 'ERR_SOCKET_CLOSED' })],
  ];
  test.each(dialers)('%s', async (_, dialer, expected) => {
    const res = New('tcp', server.address, { pool });
    await expect(res.get(undefined, dialer)).rejects.toEqual(expected);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
    const conn = await res.get();
    conn.put();
  });

  test('connection refused passes ECONNREFUSED through', async () => {
    await expect(New('tcp', await refusedAddress(), { pool }).get()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(pool.stats()).toMatchObject({ inUse: 0 });
  });

  test('a dial that never completes times out with ETIMEDOUT (timeout as a number, and a TLS handshake timeout)', async () => {
    const res = New('tcp', silent.address, { pool });
    // A TCP connect on loopback always completes; the TLS handshake to a silent server does not.
    await expect(res.get(undefined, tlsDialer({ timeout: 50 }))).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(pool.stats()).toMatchObject({ inUse: 0 });
    const conn = await res.get(undefined, 5_000);
    conn.put();
  });
});

describe('E3: an abort during a dial', () => {
  test('rejects at once with the reason; the only orphaned dial then finishes and joins the idle list', async () => {
    const dialer = manualDialer();
    const res = New('tcp', server.address, { pool });
    const controller = new AbortController();
    const getting = res.get(controller.signal, dialer);
    await until(() => dialer.pending.length === 1);
    const reason = new Error('deadline');
    controller.abort(reason);
    await expect(getting).rejects.toBe(reason);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    expect(dialer.pending[0]!.signal.aborted).toBe(false);
    expect(pool.stats()).toMatchObject({ inUse: 1, idle: 0 });
    dialer.pending[0]!.finish();
    await until(() => pool.stats().idle === 1, 'the orphan to join the idle list');
    expect(pool.stats()).toMatchObject({ inUse: 0 });
    const conn = await res.get(undefined, dialer);
    expect(dialer.pending).toHaveLength(1);
    expect(await roundTrip(conn, 'made anyway')).toBe('made anyway');
    conn.put();
  });

  test('a second orphan for the same key is destroyed and its slot freed', async () => {
    const dialer = manualDialer();
    const controllers = [new AbortController(), new AbortController()];
    const gets = controllers.map((controller) => New('tcp', server.address, { pool }).get(controller.signal, dialer));
    await until(() => dialer.pending.length === 2);
    for (const controller of controllers) controller.abort();
    for (const getting of gets) await expect(getting).rejects.toMatchObject({ name: 'AbortError' });
    expect(dialer.pending.map((dial) => dial.signal.aborted)).toEqual([false, true]);
    for (const dial of dialer.pending) dial.finish();
    await until(() => pool.stats().inUse === 0, 'both dials to settle');
    expect(pool.stats()).toMatchObject({ idle: 1 });
  });

  test('an orphaned dial that fails frees its slot', async () => {
    const address = await refusedAddress();
    const dialer = manualDialer();
    const controller = new AbortController();
    const getting = New('tcp', address, { pool }).get(controller.signal, dialer);
    await until(() => dialer.pending.length === 1);
    controller.abort();
    await expect(getting).rejects.toMatchObject({ name: 'AbortError' });
    dialer.pending[0]!.finish();
    await until(() => pool.stats().inUse === 0, 'the failed orphan to free its slot');
    expect(pool.stats()).toMatchObject({ idle: 0 });
  });

  test('a black-holed address costs at most one extra slot', async () => {
    const res = New('tcp', silent.address, { pool });
    const dialer = tlsDialer({ timeout: 200 });
    for (let i = 0; i < 5; i++) {
      await expect(res.get(AbortSignal.timeout(5), dialer)).rejects.toMatchObject({ name: 'TimeoutError' });
      expect(pool.stats().inUse).toBeLessThanOrEqual(1);
    }
    await until(() => pool.stats().inUse === 0, 'the orphan to time out');
  });
});
