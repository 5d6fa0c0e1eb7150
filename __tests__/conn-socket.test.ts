import { once } from 'node:events';
import fc from 'fast-check';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { ConnReleasedError, New, ResourcePool, tlsDialer, type PooledConn } from '../lib/index.js';
import { fuzzOptions, fuzzTimeout } from './helpers/fuzz-options.js';
import { gc } from './helpers/gc.js';
import { drainPool } from './helpers/pool.js';
import { makeCerts, startServer, startTlsServer, until, type Certs, type TestServer } from './helpers/servers.js';

// Each behaviour is checked against the stock socket: the same steps run on a
// plain net.Socket (or tls.TLSSocket) and on a PooledConn, and they must see
// the same events and values (E14).

/** A server that hands each accepted socket to the test, in order. */
let server: TestServer;
let accepted: net.Socket[];
let waitingForPeer: ((socket: net.Socket) => void) | undefined;
let pool: ResourcePool;
/** CONNPOOL_LEAK warnings are expected here; their content is checked in leaks.test.ts. */
const onWarning = (): void => {};

beforeAll(async () => {
  server = await startServer((socket) => {
    if (waitingForPeer !== undefined) {
      const give = waitingForPeer;
      waitingForPeer = undefined;
      give(socket);
    } else accepted.push(socket);
  });
  process.on('warning', onWarning);
});
afterAll(async () => {
  process.off('warning', onWarning);
  await server.close();
});
beforeEach(() => {
  accepted = [];
  pool = new ResourcePool({ max: 4 });
});
afterEach(async () => {
  await until(() => pool.stats().releasing === 0, 'closes to complete');
  expect(pool.stats()).toMatchObject({ inUse: 0, releasing: 0, waiting: 0 });
  await drainPool(pool);
});

/** The server side of the connection accepted next. */
function nextPeer(): Promise<net.Socket> {
  const ready = accepted.shift();
  if (ready !== undefined) return Promise.resolve(ready);
  return new Promise((resolve) => {
    waitingForPeer = resolve;
  });
}

type Open = (options?: { allowHalfOpen?: boolean }) => Promise<Duplex>;

const stock: Open = async (options = {}) => {
  const socket = net.connect({ host: '127.0.0.1', port: server.port, ...options });
  await once(socket, 'connect');
  return socket;
};

const pooled: Open = (options = {}) => New('tcp', server.address, { pool, ...options }).get();

/** Records the lifecycle events of `stream`, with error codes, as they come. */
function record(stream: Duplex): string[] {
  const seen: string[] = [];
  for (const name of ['end', 'finish', 'close']) stream.on(name, () => seen.push(name));
  stream.on('error', (error: NodeJS.ErrnoException) => seen.push(`error ${error.code}`));
  return seen;
}

/** Resolves at the stream's 'close' (unlike once(), whatever errors come first). */
function closed(stream: Duplex): Promise<void> {
  return new Promise((resolve) => stream.once('close', () => resolve()));
}

/** Lets the event loop run a few turns (for what must *not* happen). */
async function turns(count = 10): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setTimeout(resolve, 1));
}

/** Runs `steps` on a stock socket, then on a pooled connection, and returns both results. */
async function onBoth<T>(steps: (open: Open) => Promise<T>): Promise<{ stock: T; pooled: T }> {
  return { stock: await steps(stock), pooled: await steps(pooled) };
}

describe('the peer ends or resets a lent connection', () => {
  test("E14: a peer's end with no read pending emits 'end', 'finish' and 'close' as net.Socket does, and the slot is free", async () => {
    const conns: Duplex[] = [];
    const seen = await onBoth(async (open) => {
      const client = await open();
      conns.push(client);
      const peer = await nextPeer();
      const events = record(client);
      peer.end();
      await once(client, 'close');
      return events;
    });
    expect(seen.pooled).toEqual(seen.stock);
    expect(seen.pooled).toEqual(['end', 'finish', 'close']);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
    const conn = conns[1] as PooledConn;
    expect(() => conn.put()).not.toThrow();
    await conn.close();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
  });

  test("E14: bytes the peer sent before its end stay readable: 'end' comes only once they are read, as with net.Socket", async () => {
    const seen = await onBoth(async (open) => {
      const client = await open();
      const peer = await nextPeer();
      const events = record(client);
      peer.end('last words');
      await turns();
      const before = [...events];
      client.on('data', (chunk: Buffer) => events.push(`data ${String(chunk)}`));
      await once(client, 'close');
      return { before, after: events };
    });
    expect(seen.pooled).toEqual(seen.stock);
    expect(seen.pooled).toEqual({ before: [], after: ['data last words', 'end', 'finish', 'close'] });
  });

  test("E14: with allowHalfOpen a connection stays writable after the peer's end, and closes once it ends too", async () => {
    const seen = await onBoth(async (open) => {
      const client = await open({ allowHalfOpen: true });
      const peer = await nextPeer();
      const events = record(client);
      peer.end();
      await once(client, 'end');
      const state = (client as net.Socket).readyState;
      client.write('still here');
      const [heard] = (await once(peer, 'data')) as [Buffer];
      client.end();
      await once(client, 'close');
      return { state, heard: String(heard), events };
    });
    expect(seen.pooled).toEqual(seen.stock);
    expect(seen.pooled).toEqual({ state: 'writeOnly', heard: 'still here', events: ['end', 'finish', 'close'] });
  });

  test("E14: a reset with no read pending emits 'error' ECONNRESET then 'close', as net.Socket does, and the slot is free", async () => {
    const seen = await onBoth(async (open) => {
      const client = await open();
      const peer = await nextPeer();
      const events = record(client);
      peer.resetAndDestroy();
      await closed(client);
      return events;
    });
    expect(seen.pooled).toEqual(seen.stock);
    expect(seen.pooled).toEqual(['error ECONNRESET', 'close']);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
  });

  test('E14: a connection that closed because its peer ended can get() again from its handle', async () => {
    const res = New('tcp', server.address, { pool });
    const conn = await res.get();
    (await nextPeer()).end();
    await once(conn, 'close');
    const again = await res.get();
    expect(again.reused).toBe(false);
    again.put();
  });
});

/** What the peer and the client may do, in any order (E14's state machine of a lent connection). */
const STEPS = [
  'peer writes',
  'peer writes a lot',
  'peer ends',
  'peer resets',
  'client resumes',
  'client pauses',
  "client awaits once('data')",
  'client reads',
  'client writes',
  'client ends',
] as const;
type Step = (typeof STEPS)[number];

/** Runs `steps` on a client and its peer, letting each settle; returns what the client showed. */
async function runSteps(open: Open, steps: readonly Step[]): Promise<{ events: string[]; states: string[]; read: number | string }> {
  const client = (await open()) as net.Socket;
  const peer = await nextPeer();
  const events = record(client);
  const states: string[] = [];
  let read = 0;
  let written = 0;
  const count = (chunk: Buffer): void => void (read += chunk.length);
  const send = (bytes: number): void => {
    if (!peer.writable) return;
    peer.write(Buffer.alloc(bytes, 1));
    written += bytes;
  };
  for (const step of steps) {
    switch (step) {
      case 'peer writes':
        send(100);
        break;
      case 'peer writes a lot':
        send(200_000);
        break;
      case 'peer ends':
        peer.end();
        break;
      case 'peer resets':
        peer.resetAndDestroy();
        break;
      case 'client resumes':
        if (client.listenerCount('data') === 0) client.on('data', count);
        client.resume();
        break;
      case 'client pauses':
        client.pause();
        break;
      case "client awaits once('data')":
        once(client, 'data').then(([chunk]: Buffer[]) => void (read += chunk!.length), () => {});
        break;
      case 'client reads':
        if (client.readableFlowing !== true && !client.destroyed) {
          const chunk = client.read() as Buffer | null;
          if (chunk !== null) read += chunk.length;
        }
        break;
      case 'client writes':
        if (client.writable) client.write('x');
        break;
      case 'client ends':
        if (client.writable) client.end();
        break;
    }
    await turns(3);
    states.push(`${step}: ${client.readyState}`);
  }
  // How many bytes one read() returns depends on buffering, not a contract:
  // compare the bytes read once the client has read all there is (a reset
  // loses what was buffered, the amount of which depends on buffering too).
  // Nor after once('data'): the stream stays flowing once its listener is gone, and
  // what flows before the next listener is lost, an amount that depends on timing too.
  const isLossless = !steps.includes('peer resets') && !steps.includes("client awaits once('data')");
  if (isLossless && !client.destroyed) {
    if (client.listenerCount('data') === 0) client.on('data', count);
    client.resume();
  }
  // Every byte the peer sent arrives (E10): wait for them, however slow the machine, then for 'close' if it comes.
  for (let i = 0; i < 5_000 && isLossless && read < written && !client.destroyed; i++) await turns(1);
  for (let i = 0; i < 20 && !client.closed; i++) await turns(1);
  const shown = { events: [...events], states, read: isLossless ? read : 'not compared' };
  const stream: Duplex = client;
  if (stream instanceof net.Socket) stream.destroy();
  else await (stream as PooledConn).close(); // not put(): the next run must dial, for nextPeer()
  peer.destroy();
  return shown;
}

describe('the state machine of a lent connection, against net.Socket', () => {
  test('E14 E10: any sequence of peer and client steps shows the same events, readyStates and bytes on a PooledConn as on a net.Socket', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...STEPS), { minLength: 1, maxLength: 8 }), async (steps) => {
        // A net.Socket whose buffer is full stops reading and hears of a reset
        // only once its reader catches up; a PooledConn buffers at two levels
        // (its own, its socket's) and may hear of it sooner: buffering, not a contract.
        fc.pre(!(steps.includes('peer writes a lot') && steps.includes('peer resets')));
        const seen = await onBoth((open) => runSteps(open, steps));
        expect(seen.pooled).toEqual(seen.stock);
        await until(() => pool.stats().inUse === 0 && pool.stats().releasing === 0, 'the slot back');
      }),
      fuzzOptions<[Step[]]>(25),
    );
  }, fuzzTimeout);
});

describe('a lent connection let go at any point', () => {
  const RELEASES = ['put', 'close', 'destroy'] as const;
  test('E10 E14 S6: put(), close() or destroy() at any step, then whatever the peer does: nothing thrown later, the slot comes back, put() and close() after it do nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom(...STEPS), { minLength: 1, maxLength: 6 }),
        fc.nat(6),
        fc.constantFrom(...RELEASES),
        fc.array(fc.constantFrom('peer writes', 'peer ends', 'peer resets'), { maxLength: 3 }),
        async (steps, at, release, after) => {
          const runPool = new ResourcePool({ max: 2 });
          const res = New('tcp', server.address, { pool: runPool });
          const conn = await res.get();
          const peer = await nextPeer();
          conn.on('error', () => {});
          const before = steps.slice(0, at);
          for (const step of before) {
            if (step === 'peer writes' || step === 'peer writes a lot') peer.write(Buffer.alloc(step === 'peer writes' ? 100 : 200_000));
            else if (step === 'peer ends') peer.end();
            else if (step === 'peer resets') peer.resetAndDestroy();
            else if (step === 'client resumes') conn.resume();
            else if (step === 'client pauses') conn.pause();
            else if (step === "client awaits once('data')") once(conn, 'data').catch(() => {});
            else if (step === 'client reads' && conn.readableFlowing !== true && !conn.destroyed) conn.read();
            else if (step === 'client writes' && conn.writable) conn.write('x');
            else if (step === 'client ends' && conn.writable) conn.end();
            await turns(1);
          }
          if (release === 'put') conn.put();
          else if (release === 'close') await conn.close();
          else conn.destroy();
          for (const step of after) {
            if (step === 'peer writes' && peer.writable) peer.write('late');
            else if (step === 'peer ends') peer.end();
            else peer.resetAndDestroy();
            await turns(1);
          }
          if (release === 'put') expect(() => conn.put()).toThrow(ConnReleasedError); // S7
          else expect(() => conn.put()).not.toThrow();
          await expect(conn.close()).resolves.toBeUndefined();
          await until(() => runPool.stats().inUse === 0 && runPool.stats().releasing === 0, 'the slot back');
          peer.destroy();
          expect(await res.get(AbortSignal.timeout(5_000)).then((again) => (again.put(), 'got one'))).toBe('got one');
          await drainPool(runPool);
          for (const extra of accepted.splice(0)) extra.destroy();
        },
      ),
      fuzzOptions<[Step[], number, (typeof RELEASES)[number], string[]]>(25),
    );
  }, fuzzTimeout);
});

describe('net.Socket members', () => {
  test('E14: addresses and families read as on net.Socket', async () => {
    const seen = await onBoth(async (open) => {
      const client = (await open()) as net.Socket;
      await nextPeer();
      const address = client.address() as net.AddressInfo;
      const values = {
        address: { ...address, port: address.port === client.localPort },
        localAddress: client.localAddress,
        localFamily: client.localFamily,
        remoteAddress: client.remoteAddress,
        remotePort: client.remotePort,
        remoteFamily: client.remoteFamily,
        readyState: client.readyState,
        pending: client.pending,
        connecting: client.connecting,
      };
      client.destroy();
      return values;
    });
    expect(seen.pooled).toEqual(seen.stock);
    expect(seen.pooled).toMatchObject({ remotePort: server.port, readyState: 'open', pending: false, connecting: false });
  });

  test('E14: bytesWritten counts what was written, sent or buffered, and bytesRead what was received, as on net.Socket', async () => {
    const seen = await onBoth(async (open) => {
      const client = (await open()) as net.Socket;
      const peer = await nextPeer();
      client.write('hello');
      client.write(Buffer.alloc(100_000));
      const written = client.bytesWritten;
      let received = 0;
      peer.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received === 100_005) peer.write(Buffer.alloc(70_000));
      });
      let read = 0;
      client.on('data', (chunk: Buffer) => void (read += chunk.length));
      await until(() => read === 70_000, 'the reply');
      const counts = { written, bytesWritten: client.bytesWritten, bytesRead: client.bytesRead };
      client.destroy();
      return counts;
    });
    expect(seen.pooled).toEqual(seen.stock);
    expect(seen.pooled).toEqual({ written: 100_005, bytesWritten: 100_005, bytesRead: 70_000 });
  });

  test("E14: a reused connection's byte counts start at zero", async () => {
    const res = New('tcp', server.address, { pool });
    const conn = await res.get();
    const peer = await nextPeer();
    peer.on('data', (chunk: Buffer) => peer.write(chunk));
    conn.write('abc');
    await once(conn, 'data');
    expect({ read: conn.bytesRead, written: conn.bytesWritten }).toEqual({ read: 3, written: 3 });
    conn.put();
    const again = await res.get();
    expect(again.reused).toBe(true);
    expect({ read: again.bytesRead, written: again.bytesWritten }).toEqual({ read: 0, written: 0 });
    again.put();
  });

  test('E14: readyState follows each side as on net.Socket: readOnly once ended, closed once closed', async () => {
    const seen = await onBoth(async (open) => {
      const client = (await open()) as net.Socket;
      const peer = await nextPeer();
      const states: string[] = [client.readyState];
      client.end();
      await once(client, 'finish');
      states.push(client.readyState);
      peer.end();
      await once(client, 'close');
      states.push(client.readyState, String(client.pending));
      return states;
    });
    expect(seen.pooled).toEqual(seen.stock);
    expect(seen.pooled).toEqual(['open', 'readOnly', 'closed', 'true']);
  });

  test('E14: setNoDelay, setKeepAlive, ref, unref and setTimeout return the stream, and a timeout emits as on net.Socket', async () => {
    const seen = await onBoth(async (open) => {
      const client = (await open()) as net.Socket;
      await nextPeer();
      const returned = [client.setNoDelay(true), client.setKeepAlive(true, 1_000), client.unref(), client.ref()].every((r) => r === client);
      let called = 0;
      const timedOut = once(client, 'timeout');
      expect(client.setTimeout(5, () => void called++)).toBe(client);
      await timedOut;
      client.setTimeout(0);
      const timeout = client.timeout;
      client.destroy();
      return { returned, called, timeout };
    });
    expect(seen.pooled).toEqual(seen.stock);
    expect(seen.pooled).toEqual({ returned: true, called: 1, timeout: 0 });
  });

  test('E14: destroySoon() flushes, ends and closes as on net.Socket; the peer reads every byte', async () => {
    const seen = await onBoth(async (open) => {
      const client = (await open()) as net.Socket;
      const peer = await nextPeer();
      let heard = '';
      peer.on('data', (chunk: Buffer) => void (heard += chunk));
      const events = record(client);
      const peerEnded = once(peer, 'end');
      const clientClosed = closed(client);
      client.write('bye');
      client.destroySoon();
      await peerEnded;
      await clientClosed;
      return { heard, events };
    });
    expect(seen.pooled).toEqual(seen.stock);
    expect(seen.pooled.heard).toBe('bye');
  });

  test('E14: resetAndDestroy() resets the connection (the peer sees ECONNRESET) and frees the slot, as on net.Socket', async () => {
    const seen = await onBoth(async (open) => {
      const client = (await open()) as net.Socket;
      const peer = await nextPeer();
      const peerError = once(peer, 'error').then(([error]) => (error as NodeJS.ErrnoException).code);
      const events = record(client);
      const clientClosed = closed(client);
      expect(client.resetAndDestroy()).toBe(client);
      await clientClosed;
      return { peer: await peerError, events };
    });
    expect(seen.pooled).toEqual(seen.stock);
    expect(seen.pooled.peer).toBe('ECONNRESET');
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
  });

  test("E14: connect() on a connected connection emits 'connect' then 'ready' on a later tick (as pg expects of a given stream)", async () => {
    const conn = await New('tcp', server.address, { pool }).get();
    await nextPeer();
    const events: string[] = [];
    conn.on('connect', () => events.push('connect'));
    conn.on('ready', () => events.push('ready'));
    expect(conn.connect(server.port, '127.0.0.1', () => events.push('listener'))).toBe(conn);
    expect(events).toEqual([]);
    await once(conn, 'ready');
    expect(events).toEqual(['connect', 'listener', 'ready']);
    conn.put();
  });

  test('S8: after put() the socket members throw ERR_CONN_RELEASED synchronously; readyState says closed', async () => {
    const conn = await New('tcp', server.address, { pool }).get();
    await nextPeer();
    conn.put();
    const uses: Array<[string, () => unknown]> = [
      ['address()', () => conn.address()],
      ['localFamily', () => conn.localFamily],
      ['bytesRead', () => conn.bytesRead],
      ['bytesWritten', () => conn.bytesWritten],
      ['connect()', () => conn.connect(server.port)],
      ['resetAndDestroy()', () => conn.resetAndDestroy()],
      ['setNoDelay()', () => conn.setNoDelay()],
      ['getCipher()', () => conn.getCipher()],
      ['authorizationError', () => conn.authorizationError],
      ['getPeerX509Certificate()', () => conn.getPeerX509Certificate()],
    ];
    for (const [name, use] of uses) expect([name, use]).toEqual([name, expect.any(Function)]);
    for (const [, use] of uses) expect(use).toThrow(ConnReleasedError);
    expect({ readyState: conn.readyState, pending: conn.pending }).toEqual({ readyState: 'closed', pending: true });
    await turns(2);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
  });
});

describe('tls.TLSSocket members', () => {
  let certs: Certs;
  let tlsServer: TestServer;
  beforeAll(async () => {
    certs = makeCerts();
    tlsServer = await startTlsServer(certs, undefined, { ALPNProtocols: ['echo/1'] });
  });
  afterAll(() => tlsServer.close());

  /** What a client reads of its TLS connection. */
  function describeTls(socket: tls.TLSSocket): Record<string, unknown> {
    return {
      encrypted: socket.encrypted,
      authorized: socket.authorized,
      authorizationError: socket.authorizationError,
      alpnProtocol: socket.alpnProtocol,
      servername: socket.servername,
      protocol: socket.getProtocol(),
      cipher: socket.getCipher(),
      peer: socket.getPeerCertificate().fingerprint256,
      peerX509: socket.getPeerX509Certificate()?.fingerprint256,
      certificate: socket.getCertificate(),
      x509: socket.getX509Certificate(),
      reused: socket.isSessionReused(),
      finished: socket.getFinished()?.length,
      peerFinished: socket.getPeerFinished()?.length,
      keyingMaterial: socket.exportKeyingMaterial(32, 'EXPORTER-test', Buffer.alloc(0)).length,
      ephemeralKeyInfo: socket.getEphemeralKeyInfo(),
      sharedSigalgs: socket.getSharedSigalgs(),
      session: typeof socket.getSession(),
      ticket: typeof socket.getTLSTicket(),
    };
  }

  test('E14: over TLS the TLSSocket members read as on tls.TLSSocket', async () => {
    const options = { ca: certs.ca, ALPNProtocols: ['echo/1'], servername: 'localhost' };
    const raw = tls.connect({ host: '127.0.0.1', port: tlsServer.port, ...options });
    await once(raw, 'secureConnect');
    // Sessions and tickets arrive after the handshake in TLS 1.3: wait for one on each.
    await once(raw, 'session');
    const stockView = describeTls(raw);
    raw.destroy();
    const dialer = tlsDialer(options);
    const conn = await New('tcp', tlsServer.address, { pool }).get(undefined, dialer);
    conn.write('x');
    await once(conn, 'data');
    const pooledView = describeTls(conn as unknown as tls.TLSSocket);
    expect(pooledView).toEqual(stockView);
    expect(pooledView).toMatchObject({ encrypted: true, authorized: true, alpnProtocol: 'echo/1', protocol: 'TLSv1.3' });
    expect(() => conn.resetAndDestroy()).toThrow(expect.objectContaining({ code: 'ERR_INVALID_HANDLE_TYPE' }));
    conn.put();
    expect(() => conn.getProtocol()).toThrow(ConnReleasedError);
  });
});

describe('dropped connections are reclaimed (E15)', () => {
  /** Collects until `pool` has reclaimed a leak (a sweep registers a connection out for about a second). */
  async function collectUntilLeak(leakPool: ResourcePool): Promise<void> {
    for (let i = 0; i < 100 && leakPool.stats().leaks === 0; i++) {
      await gc();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await until(() => leakPool.stats().releasing === 0, 'the leak to be closed');
  }

  test("E15: a connection read with await once(conn, 'data') and dropped is reclaimed as a leak (E9)", async () => {
    const leakPool = new ResourcePool({ max: 1 });
    await (async () => {
      const conn = await New('tcp', server.address, { pool: leakPool }).get();
      const peer = await nextPeer();
      peer.on('data', (chunk: Buffer) => peer.write(chunk));
      conn.write('ping');
      await once(conn, 'data');
    })();
    await collectUntilLeak(leakPool);
    expect(leakPool.stats()).toMatchObject({ leaks: 1, inUse: 0 });
    const next = New('tcp', server.address, { pool: leakPool }).get(AbortSignal.timeout(5_000));
    (await next).put();
    await drainPool(leakPool);
  }, 30_000);

  test('E15: a connection handed out through the wait queue and dropped is reclaimed, and the waiter behind it gets a slot', async () => {
    const leakPool = new ResourcePool({ max: 1 });
    const first = await New('tcp', server.address, { pool: leakPool }).get();
    let behind: Promise<PooledConn> | undefined;
    await (async () => {
      const queued = New('tcp', server.address, { pool: leakPool }).get();
      behind = New('tcp', server.address, { pool: leakPool }).get(AbortSignal.timeout(20_000));
      expect(leakPool.stats().waiting).toBe(2);
      first.put();
      await queued; // ... and dropped
    })();
    await collectUntilLeak(leakPool);
    expect(leakPool.stats()).toMatchObject({ leaks: 1 });
    const conn = await behind!;
    expect(conn.isOut).toBe(true);
    conn.put();
    await drainPool(leakPool);
  }, 30_000);

  test('E9: a connection read with a data listener still attached is not collected while it waits', async () => {
    // The counterpart of the once('data') case: a listener is a consumer waiting.
    const heldPool = new ResourcePool({ max: 1 });
    const reply = (async () => {
      const conn = await New('tcp', server.address, { pool: heldPool }).get();
      const chunk = await new Promise<Buffer>((resolve) => conn.on('data', resolve));
      conn.put();
      return String(chunk);
    })();
    const peer = await nextPeer();
    // Long enough for two leak sweeps (about 2 s) to register it, collecting all along.
    const until3s = performance.now() + 3_000;
    while (performance.now() < until3s) {
      await gc();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(heldPool.stats()).toMatchObject({ leaks: 0, inUse: 1 });
    peer.write('late');
    expect(await reply).toBe('late');
    await drainPool(heldPool);
  }, 30_000);
});
