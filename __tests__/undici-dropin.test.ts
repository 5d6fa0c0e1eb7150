/**
 * connpool/undici: createDispatcher() as a drop-in for undici's Agent. Where
 * undici's own Agent shows the expected behaviour, the same steps run on both
 * and their outcomes are compared.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { LookupFunction } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, errors, request, type Dispatcher } from 'undici';
import { New, ResourcePool } from '../lib/index.js';
import { createDispatcher, type DispatcherOptions } from '../lib/undici/index.js';
import { runModule } from './helpers/child.js';
import { distIndex } from './helpers/dist.js';
import { startHttpServers, type HttpServers } from './helpers/http-servers.js';
import { makeCerts } from './helpers/servers.js';

let pool: ResourcePool;
let dispatchers: Dispatcher[] = [];
const servers: Server[] = [];

beforeEach(() => {
  pool = new ResourcePool({ max: 8 });
});

afterEach(async () => {
  await Promise.all(dispatchers.map((dispatcher) => dispatcher.destroy()));
  dispatchers = [];
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
  await eventually(() => pool.stats().inUse === 0 && pool.stats().releasing === 0, 'the pool to have nothing in use');
  expect(pool.stats()).toMatchObject({ inUse: 0, waiting: 0 });
  await pool.close();
});

/** Resolves when `predicate` holds; throws after `turns` turns of about 2 ms. */
async function eventually(predicate: () => boolean, what: string, turns = 2_500): Promise<void> {
  for (let turn = 0; turn < turns; turn++) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`gave up waiting for ${what}`);
}

type Kind = 'createDispatcher' | 'undici Agent';
const KINDS: Kind[] = ['undici Agent', 'createDispatcher'];

/** createDispatcher() on this test's pool, or undici's own Agent with the same options; destroyed after the test. */
function make(kind: Kind, options: DispatcherOptions = {}): Dispatcher {
  const dispatcher = kind === 'createDispatcher' ? createDispatcher({ pool, ...options }) : new Agent(options as Agent.Options);
  dispatchers.push(dispatcher);
  return dispatcher;
}

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

/** The body of a GET, or the error's code. */
async function get(url: string, dispatcher: Dispatcher, headers?: Record<string, string>): Promise<string> {
  try {
    const { body } = await request(url, { dispatcher, headers });
    return await body.text();
  } catch (error) {
    return `error ${(error as { code?: string }).code ?? (error as Error).name}`;
  }
}

const caught = (fn: () => unknown): Error | undefined => {
  try {
    fn();
    return undefined;
  } catch (error) {
    return error as Error;
  }
};

describe('createDispatcher: connect options as undici takes them', () => {
  test.each(KINDS)('%s: connect.lookup is used for http: origins (a name only the lookup knows)', async (kind) => {
    const port = await listen(createHttpServer((_req, res) => res.end('ok')));
    let calls = 0;
    const lookup = ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
      calls++;
      if (options?.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    }) as unknown as LookupFunction;
    expect(await get(`http://service.invalid:${port}/`, make(kind, { connect: { lookup } }))).toBe('ok');
    expect(calls).toBeGreaterThan(0);
  });

  test('the top-level lookup option (kept from earlier versions) is used for http: origins too', async () => {
    const port = await listen(createHttpServer((_req, res) => res.end('ok')));
    let calls = 0;
    const lookup = ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
      calls++;
      if (options?.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    }) as unknown as LookupFunction;
    expect(await get(`http://service.invalid:${port}/`, make('createDispatcher', { lookup }))).toBe('ok');
    expect(calls).toBeGreaterThan(0);
  });

  test.each(KINDS)('%s: the Host header names the TLS server (SNI, certificate check), as undici derives servername', async (kind) => {
    const { ca, key, cert } = localhostOnlyCertificate();
    const port = await listen(createHttpsServer({ key, cert }, (req, res) => res.end(`sni=${(req.socket as { servername?: string }).servername}`)));
    const dispatcher = make(kind, { connect: { ca } });
    expect(await get(`https://127.0.0.1:${port}/`, dispatcher, { host: 'localhost' })).toBe('sni=localhost');
    // Without it the certificate (for localhost only) does not match 127.0.0.1.
    expect(await get(`https://127.0.0.1:${port}/`, make(kind, { connect: { ca } }))).toBe('error ERR_TLS_CERT_ALTNAME_INVALID');
  });
});

describe('createDispatcher: a connect timer that fires late (undici issue 3410)', () => {
  let remote: HttpServers;
  beforeAll(async () => {
    // The server runs in another process: it must answer while this one's event loop is blocked.
    remote = await startHttpServers(makeCerts());
  });
  afterAll(async () => {
    await remote?.close();
  });
  /**
   * Runs `start`, then blocks the event loop for `ms`, from a setImmediate
   * callback: when the loop resumes, the expired timers run before the poll
   * phase reads the connect that completed meanwhile (the order of issue 3410).
   */
  const blockedAfter = <T>(start: () => T, ms: number): Promise<T> =>
    new Promise((resolve) =>
      setImmediate(() => {
        const started = start();
        const end = Date.now() + ms;
        while (Date.now() < end);
        resolve(started);
      }),
    );

  test.each(KINDS)('%s: a connect done during an event-loop block longer than connectTimeout succeeds', async (kind) => {
    const dispatcher = make(kind, { connectTimeout: 100 });
    const reply = await blockedAfter(() => ({ body: get(`http://127.0.0.1:${remote.ports.http}/hello`, dispatcher) }), 400);
    expect(await reply.body).toBe('hello');
  });

  test('the core dialer: get() with a 100 ms connect timeout, then a 400 ms block, resolves', async () => {
    const handle = New('tcp', `127.0.0.1:${remote.ports.echo}`, { pool });
    const { conn } = await blockedAfter(() => ({ conn: handle.get(undefined, 100) }), 400);
    const got = await conn.then(
      (c) => (c.put(), 'connected'),
      (error: { code?: string }) => `error ${error.code}`,
    );
    expect(got).toBe('connected');
  });
});

describe('createDispatcher: dispatch() and option errors as undici\'s and the core\'s', () => {
  test('invalid dispatch() arguments get undici\'s own InvalidArgumentError, with its message', () => {
    const handler = { onError() {}, onConnect() {}, onHeaders: () => true, onData: () => true, onComplete() {} };
    const calls: Array<(d: Dispatcher) => unknown> = [
      (d) => (d.dispatch as (...args: unknown[]) => unknown)('ASD'),
      (d) => (d.dispatch as (...args: unknown[]) => unknown)('ASD', {}),
      (d) => (d.dispatch as (...args: unknown[]) => unknown)({}, null),
    ];
    for (const call of calls) {
      const stock = caught(() => call(make('undici Agent')));
      const ours = caught(() => call(make('createDispatcher')));
      expect(stock).toBeInstanceOf(errors.InvalidArgumentError);
      expect(ours).toBeInstanceOf(errors.InvalidArgumentError);
      expect(ours!.message).toBe(stock!.message);
    }
    // With a handler that has onError, undici reports a missing origin there, not by throwing.
    const reported: Record<string, string> = {};
    for (const kind of KINDS) {
      make(kind).dispatch({} as Dispatcher.DispatchOptions, { ...handler, onError: (error: Error) => void (reported[kind] = error.message) } as never);
    }
    expect(reported['createDispatcher']).toBe(reported['undici Agent']);
  });

  test('a connpool option of the wrong type: TypeError ERR_INVALID_ARG_TYPE quoting the value, as the core', () => {
    for (const [name, value] of [['acquireTimeout', '5000'], ['maxSockets', '8'], ['idleHandoff', '10'], ['pool', { max: 1 }]] as const) {
      const error = caught(() => createDispatcher({ [name]: value } as DispatcherOptions)) as TypeError & { code?: string };
      expect(error).toBeInstanceOf(TypeError);
      expect(error.code).toBe('ERR_INVALID_ARG_TYPE');
      expect(error.message).toContain(name);
      if (typeof value === 'string') expect(error.message).toContain(`"${value}"`);
    }
  });

  test('a connpool number out of range: RangeError ERR_OUT_OF_RANGE', () => {
    for (const options of [{ acquireTimeout: -1 }, { maxSockets: 0 }, { maxSockets: 1.5 }, { idleHandoff: 0 }, { idleHandoff: Number.NaN }]) {
      const error = caught(() => createDispatcher(options)) as RangeError & { code?: string };
      expect(error).toBeInstanceOf(RangeError);
      expect(error.code).toBe('ERR_OUT_OF_RANGE');
    }
  });

  test('an option neither undici\'s Agent nor connpool knows is refused with ERR_INVALID_ARG_VALUE naming it', () => {
    for (const name of ['maxSocket', 'keepAliveTimout', 'factory', 'maxRedirections', 'interceptors']) {
      const error = caught(() => createDispatcher({ [name]: 1 } as DispatcherOptions)) as TypeError & { code?: string };
      expect(error).toBeInstanceOf(TypeError);
      expect(error.code).toBe('ERR_INVALID_ARG_VALUE');
      expect(error.message).toContain(`"${name}"`);
    }
    expect((caught(() => createDispatcher({ allowH2: true } as never)) as { code?: string }).code).toBe('ERR_INVALID_ARG_VALUE');
  });

  test('an undici option undici refuses: undici\'s InvalidArgumentError and message, at createDispatcher()', async () => {
    for (const options of [{ bodyTimeout: -1 }, { headersTimeout: 1.5 }, { keepAliveTimeout: 0 }, { connections: -1 }, { keepAlive: true }, { connect: { maxCachedSessions: -1 } }]) {
      const ours = caught(() => createDispatcher(options as DispatcherOptions));
      expect(ours).toBeInstanceOf(errors.InvalidArgumentError);
      // undici's Agent checks them when it makes the origin's pool: at the first request.
      const stock = make('undici Agent', options as DispatcherOptions);
      const stockError = await request('http://127.0.0.1:1/', { dispatcher: stock }).then(
        () => undefined,
        (error: Error) => error,
      );
      expect(stockError).toBeInstanceOf(errors.InvalidArgumentError);
      expect(ours!.message).toBe(stockError!.message);
    }
  });

  test('undici options reach undici: headersTimeout fails a request whose headers do not come', async () => {
    const port = await listen(createHttpServer(() => {}));
    for (const kind of KINDS) {
      expect(await get(`http://127.0.0.1:${port}/`, make(kind, { headersTimeout: 50 }))).toBe('error UND_ERR_HEADERS_TIMEOUT');
    }
  });
});

describe('createDispatcher: keep-alive, as undici\'s keepAliveTimeout', () => {
  test('a socket handed back to the pool is closed once idle for keepAliveTimeout in all', async () => {
    const port = await listen(createHttpServer((_req, res) => res.end('ok')));
    expect(await get(`http://127.0.0.1:${port}/`, make('createDispatcher', { keepAliveTimeout: 60, idleHandoff: 10 }))).toBe('ok');
    await eventually(() => pool.stats().inUse === 0 && pool.stats().idle === 1, 'the socket to be handed back');
    await eventually(() => pool.stats().idle === 0, 'the idle socket to be closed after keepAliveTimeout');
  });

  test('a server keep-alive hint replaces keepAliveTimeout, less keepAliveTimeoutThreshold, also in the pool', async () => {
    const server = createHttpServer((_req, res) => res.end('ok'));
    server.keepAliveTimeout = 3_000; // Keep-Alive: timeout=3
    const port = await listen(server);
    // 3,000 - 2,950: 50 ms of keep-alive, though keepAliveTimeout says a minute.
    const dispatcher = make('createDispatcher', { keepAliveTimeout: 60_000, keepAliveTimeoutThreshold: 2_950, idleHandoff: 10 });
    expect(await get(`http://127.0.0.1:${port}/`, dispatcher)).toBe('ok');
    await eventually(() => pool.stats().inUse === 0 && pool.stats().idle === 1, 'the socket to be handed back');
    await eventually(() => pool.stats().idle === 0, 'the idle socket to be closed after the hint');
  });

  test('with a longer keepAliveTimeout it stays idle in the pool and the next request reuses it', async () => {
    const port = await listen(createHttpServer((req, res) => res.end(`${req.socket.remotePort}`)));
    const dispatcher = make('createDispatcher', { keepAliveTimeout: 60_000, idleHandoff: 10 });
    const first = await get(`http://127.0.0.1:${port}/`, dispatcher);
    await eventually(() => pool.stats().inUse === 0 && pool.stats().idle === 1, 'the socket to be handed back');
    expect(await get(`http://127.0.0.1:${port}/`, dispatcher)).toBe(first);
    expect(pool.stats().dials).toBe(1);
  });
});

describe('createDispatcher: destroy() and failed requests leave nothing behind', () => {
  test('destroy() fails a request waiting for a pool slot and takes its wait out of the queue', async () => {
    const port = await listen(createHttpServer((_req, res) => res.end('ok')));
    const address = `127.0.0.1:${port}`;
    const small = new ResourcePool({ max: 1, maxWaiting: 1 });
    try {
      const held = await New('tcp', address, { pool: small }).get();
      const dispatcher = createDispatcher({ pool: small });
      const failed = request(`http://${address}/`, { dispatcher }).then(
        () => 'response',
        (error: { code?: string }) => error.code,
      );
      await eventually(() => small.stats().waiting === 1, 'the connect to wait for a slot');
      await dispatcher.destroy();
      expect(await failed).toBe('UND_ERR_DESTROYED');
      expect(small.stats().waiting).toBe(0);
      // The place in line is free: a live get() queues (no QueueFullError) and gets the slot.
      const live = New('tcp', address, { pool: small }).get();
      held.put();
      (await live).put();
      expect(small.stats()).toMatchObject({ inUse: 0, waiting: 0, dials: 1 });
    } finally {
      await small.close();
    }
  });

  test('destroy() settles every request: those waiting for a slot and those queued behind maxSockets', async () => {
    const port = await listen(createHttpServer((_req, res) => res.end('ok')));
    const small = new ResourcePool({ max: 1 });
    try {
      const held = await New('tcp', `127.0.0.1:${port}`, { pool: small }).get();
      const dispatcher = createDispatcher({ pool: small, maxSockets: 1 });
      const outcomes = Array.from({ length: 5 }, () => get(`http://127.0.0.1:${port}/`, dispatcher));
      await eventually(() => small.stats().waiting === 1, 'the connect to wait for a slot');
      await dispatcher.destroy();
      expect(await Promise.all(outcomes)).toEqual(Array(5).fill('error UND_ERR_DESTROYED'));
      expect(small.stats().waiting).toBe(0);
      held.put();
    } finally {
      await small.close();
    }
  });

  test('a request to an address connpool cannot dial fails, and the process then exits by itself (child process)', async () => {
    const script = `
      const [index] = process.argv.slice(1);
      const { createDispatcher } = await import(index.replace(/index\\.js$/, 'undici/index.js'));
      const { request } = await import('undici');
      const dispatcher = createDispatcher();
      const outcomes = [];
      for (const target of ['localhost:0', 'bad*host.invalid:80']) {
        outcomes.push(await request('http://' + target + '/', { dispatcher }).then(() => 'response', (e) => e.code));
      }
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
      // What keeps the event loop alive now (this process's stdout aside).
      const alive = process.getActiveResourcesInfo().filter((kind) => kind !== 'TTYWrap' && kind !== 'PipeWrap');
      console.log(JSON.stringify({ outcomes, alive }));
    `;
    const result = await runModule<{ outcomes: string[]; alive: string[] }>(script, [distIndex]);
    expect(result.outcomes).toHaveLength(2);
    expect(result.outcomes).not.toContain('response');
    expect(result.alive).toEqual([]);
  });
});

/** A private CA and a certificate for DNS:localhost only (no IP address), made with openssl. */
function localhostOnlyCertificate(): { ca: Buffer; key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'connpool-sni-'));
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  try {
    writeFileSync(join(dir, 'ext.cnf'), 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n');
    openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
    openssl('req', '-new', '-x509', '-key', 'ca.key', '-days', '1', '-subj', '/CN=connpool sni test CA', '-out', 'ca.pem');
    openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'srv.key');
    openssl('req', '-new', '-key', 'srv.key', '-subj', '/CN=localhost', '-out', 'srv.csr');
    openssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'srv.pem');
    const read = (name: string): Buffer => readFileSync(join(dir, name));
    return { ca: read('ca.pem'), key: read('srv.key'), cert: read('srv.pem') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
