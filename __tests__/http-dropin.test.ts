/**
 * connpool/http as a drop-in for http.Agent and https.Agent: each test runs
 * the same steps on Node's stock agent (the oracle) and on connpool's, and
 * expects the same outcome. Scenarios seen at the process level (uncaught
 * exceptions, a handler that throws) run in a child process
 * (helpers/http-dropin-child.mjs).
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { constants } from 'node:crypto';
import { ResourcePool } from '../lib/index.js';
import { HttpAgent, HttpsAgent } from '../lib/http/index.js';
import { runScript } from './helpers/child.js';
import { makeCerts, type Certs } from './helpers/servers.js';

let certs: Certs;
let pool: ResourcePool;
const closers: (() => void)[] = [];

beforeAll(() => {
  certs = makeCerts();
});

beforeEach(() => {
  pool = new ResourcePool({ max: 8 });
});

afterEach(async () => {
  for (const close of closers.splice(0)) close();
  await pool.close();
});

type Kind = 'stock' | 'pooled';
const KINDS: Kind[] = ['stock', 'pooled'];

function httpAgent(kind: Kind, options: http.AgentOptions = {}): http.Agent {
  const agent = kind === 'stock' ? new http.Agent({ keepAlive: true, ...options }) : new HttpAgent({ keepAlive: true, pool, ...options });
  closers.push(() => agent.destroy());
  return agent;
}

function httpsAgent(kind: Kind, options: https.AgentOptions = {}): https.Agent {
  const agent = kind === 'stock' ? new https.Agent({ keepAlive: true, ...options }) : new HttpsAgent({ keepAlive: true, pool, ...options });
  closers.push(() => agent.destroy());
  return agent;
}

async function listen<T extends net.Server>(server: T): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => {
    server.close();
    (server as unknown as http.Server).closeAllConnections?.();
  });
  return (server.address() as net.AddressInfo).port;
}

/** The body of a GET, or `error CODE`. */
function get(client: typeof http | typeof https, options: https.RequestOptions): Promise<string> {
  return new Promise((resolve) => {
    client
      .get(options, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk)).on('end', () => resolve(body));
      })
      .on('error', (error: NodeJS.ErrnoException) => resolve(`error ${error.code ?? error.name}`));
  });
}

const child = (scenario: string, kind: Kind): Promise<Record<string, unknown>> => runScript('http-dropin-child.mjs', [scenario, kind]);

describe('process-level outcomes are those of http.Agent', () => {
  test.each(['destroy-before-socket', 'early-response-close', 'throw-in-handler', 'settimeout-after-close'])(
    '%s: same events, no uncaught exception, no slot left in use',
    async (scenario) => {
      const [stock, pooled] = await Promise.all(KINDS.map((kind) => child(scenario, kind)));
      expect(stock).toMatchObject({ uncaught: [] });
      expect(pooled).toEqual(stock);
    },
  );
});

describe('options and properties keep http.Agent meaning', () => {
  test('lookup (agent or request) is used, as a guard and as a name mapping', async () => {
    const port = await listen(http.createServer((_req, res) => res.end('reached')));
    const guard: net.LookupFunction = (hostname, _options, callback) =>
      callback(Object.assign(new Error(`refused ${hostname}`), { code: 'EBLOCKED' }), '', 4);
    const mapper = ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) =>
      options?.all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4)) as unknown as net.LookupFunction;
    const outcomes = [];
    for (const kind of KINDS) {
      const agent = httpAgent(kind);
      outcomes.push([await get(http, { host: 'localhost', port, agent, lookup: guard }), await get(http, { host: 'service.invalid', port, agent, lookup: mapper })]);
    }
    expect(outcomes[0]).toEqual(['error EBLOCKED', 'reached']);
    expect(outcomes[1]).toEqual(outcomes[0]);
  });

  test('agent.maxSockets reads the value it was built with', () => {
    expect(new HttpAgent({ keepAlive: true, pool, maxSockets: 5 }).maxSockets).toBe(new http.Agent({ maxSockets: 5 }).maxSockets);
  });

  test('a host name that is not valid fails the request with an error event, never a throw', async () => {
    for (const kind of KINDS) {
      const agent = httpAgent(kind);
      for (const host of ['bad*host.invalid', 'example`x.invalid']) {
        expect(await get(http, { host, port: 8080, agent })).toMatch(/^error (ENOTFOUND|EAI_AGAIN)$/);
      }
    }
  });

  test('option errors are TypeError ERR_INVALID_ARG_TYPE with the value quoted, as the core says them', () => {
    const cases = [() => new HttpAgent({ keepAlive: true, acquireTimeout: '5000' as unknown as number }), () => new HttpAgent({ keepAlive: true, maxSockets: '8' as unknown as number })];
    for (const make of cases) {
      expect(make).toThrow(TypeError);
      expect(make).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"') }));
    }
    expect(() => new HttpAgent({ keepAlive: true, connectTimeout: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  test("a subclass's createConnection, keepSocketAlive and reuseSocket are called where Node calls them", async () => {
    const port = await listen(http.createServer((_req, res) => res.end('ok')));
    const counts = [];
    for (const kind of KINDS) {
      const calls = { createConnection: 0, keepSocketAlive: 0, reuseSocket: 0 };
      const Base = (kind === 'stock' ? http.Agent : HttpAgent) as typeof http.Agent;
      class Counting extends Base {
        override createConnection(...args: Parameters<http.Agent['createConnection']>): ReturnType<http.Agent['createConnection']> {
          calls.createConnection++;
          return super.createConnection(...args);
        }
        override keepSocketAlive(socket: net.Socket): boolean {
          calls.keepSocketAlive++;
          return (super.keepSocketAlive(socket) as unknown as boolean) ?? true;
        }
        override reuseSocket(socket: net.Socket, req: http.ClientRequest): void {
          calls.reuseSocket++;
          super.reuseSocket(socket, req);
        }
      }
      const agent = new Counting(kind === 'stock' ? { keepAlive: true } : ({ keepAlive: true, pool } as http.AgentOptions));
      closers.push(() => agent.destroy());
      for (let i = 0; i < 2; i++) {
        await get(http, { host: '127.0.0.1', port, agent });
        await new Promise(setImmediate);
      }
      counts.push(calls);
    }
    expect(counts[0]).toEqual({ createConnection: 1, keepSocketAlive: 2, reuseSocket: 1 });
    expect(counts[1]).toEqual(counts[0]);
  });

  test("a subclass's reuseSocket that does not call super still takes the socket out of the pool's idle count", async () => {
    const port = await listen(http.createServer((_req, res) => res.end('ok')));
    class Quiet extends HttpAgent {
      override reuseSocket(socket: net.Socket): void {
        socket.ref();
      }
    }
    const agent = new Quiet({ keepAlive: true, pool });
    closers.push(() => agent.destroy());
    expect(await get(http, { host: '127.0.0.1', port, agent })).toBe('ok');
    await new Promise(setImmediate);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
    const req = http.get({ host: '127.0.0.1', port, agent });
    expect(pool.stats()).toMatchObject({ inUse: 1, idle: 0 });
    await new Promise((resolve) => req.on('response', (res) => res.resume().on('end', resolve)));
  });
});

describe('createConnection() takes the arguments Node\'s agents take', () => {
  test('HttpAgent: (port, listener), as net.createConnection()', async () => {
    const port = await listen(net.createServer((socket) => socket.end()));
    const agent = new HttpAgent({ keepAlive: true, pool });
    closers.push(() => agent.destroy());
    const socket = await new Promise<net.Socket>((resolve) => {
      const made = agent.createConnection(port, () => resolve(made as net.Socket)) as net.Socket;
    });
    expect(socket.remotePort).toBe(port);
    socket.destroy();
  });

  test('HttpsAgent: (port, host, options), as https.Agent#createConnection()', async () => {
    const port = await listen(https.createServer({ key: certs.key, cert: certs.cert }));
    const agent = new HttpsAgent({ keepAlive: true, pool });
    closers.push(() => agent.destroy());
    const create = agent.createConnection as unknown as (port: number, host: string, options: tls.ConnectionOptions) => tls.TLSSocket;
    const socket = create.call(agent, port, '127.0.0.1', { rejectUnauthorized: false });
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    expect(socket).toBeInstanceOf(tls.TLSSocket);
    expect(socket.remotePort).toBe(port);
    socket.destroy();
  });
});

describe('what the request sees of its socket is what http.Agent gives', () => {
  test('a response cut short by the server emits aborted and error (ECONNRESET), then close, while not being read', async () => {
    let serverRes: http.ServerResponse | undefined;
    const port = await listen(
      http.createServer((_req, res) => {
        res.writeHead(200, { 'content-length': '100' });
        res.write('Part of my res.');
        serverRes = res;
      }),
    );
    const outcomes = [];
    for (const kind of KINDS) {
      const agent = httpAgent(kind);
      const events: string[] = [];
      await new Promise<void>((resolve) => {
        http
          .get({ host: '127.0.0.1', port, agent }, (res) => {
            res.on('aborted', () => events.push('aborted'));
            res.on('error', (error: NodeJS.ErrnoException) => events.push(`error:${error.code}`));
            res.on('end', () => events.push('end'));
            res.on('close', () => {
              events.push('close');
              resolve();
            });
            serverRes!.destroy();
          })
          .on('error', (error: NodeJS.ErrnoException) => events.push(`req-error:${error.code}`));
      });
      outcomes.push(events);
    }
    expect(outcomes[0]).toEqual(['aborted', 'error:ECONNRESET', 'close']);
    expect(outcomes[1]).toEqual(outcomes[0]);
  });

  test('an upgraded socket closed by the server emits end, then close, and frees its slot', async () => {
    const server = http.createServer();
    server.on('upgrade', (_req, socket: net.Socket) => {
      socket.on('error', () => {});
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n');
      setImmediate(() => socket.end('bye'));
    });
    const port = await listen(server);
    const outcomes = [];
    for (const kind of KINDS) {
      const agent = httpAgent(kind);
      const events = await new Promise<string[]>((resolve) => {
        const seen: string[] = [];
        http
          .request({ host: '127.0.0.1', port, agent, headers: { connection: 'upgrade', upgrade: 'x' } })
          .on('upgrade', (_res, socket: net.Socket) => {
            socket.on('data', () => seen.push('data')).on('end', () => seen.push('end'));
            socket.on('close', () => resolve([...new Set(seen), 'close']));
          })
          .end();
      });
      outcomes.push(events);
    }
    expect(outcomes[1]).toEqual(outcomes[0]);
    await new Promise(setImmediate);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
  });

  test('acquireTimeout also bounds a wait in the queue of maxSockets; the agent serves later requests as before', async () => {
    const release: (() => void)[] = [];
    const port = await listen(http.createServer((_req, res) => release.push(() => res.end('done'))));
    const agent = new HttpAgent({ keepAlive: true, pool, maxSockets: 1, acquireTimeout: 50 });
    const first = get(http, { host: '127.0.0.1', port, agent });
    const queued = get(http, { host: '127.0.0.1', port, agent });
    expect(await queued).toBe('error ERR_RESOURCE_LIMIT_EXCEEDED');
    expect(Object.values(agent.requests).flat()).toHaveLength(0);
    release.shift()!();
    expect(await first).toBe('done');
    const later = get(http, { host: '127.0.0.1', port, agent });
    await new Promise((resolve) => setTimeout(resolve, 20));
    release.shift()!();
    expect(await later).toBe('done');
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1, waiting: 0 });
  });

  test('agent.destroy() fails a request waiting for a slot with socket hang up (ECONNRESET)', async () => {
    const one = new ResourcePool({ max: 1 });
    closers.push(() => void one.close());
    const port = await listen(http.createServer((_req, res) => setTimeout(() => res.end('late'), 200)));
    const agent = new HttpAgent({ keepAlive: true, pool: one });
    const first = get(http, { host: '127.0.0.1', port, agent });
    const waiting = get(http, { host: '127.0.0.1', port, agent });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(one.stats().waiting).toBe(1);
    agent.destroy();
    expect(await Promise.all([first, waiting])).toEqual(['error ECONNRESET', 'error ECONNRESET']);
    expect(one.stats()).toMatchObject({ waiting: 0 });
  });
});

describe('HttpsAgent', () => {
  async function tlsServer(options: tls.TlsOptions = {}, handler: http.RequestListener = (req, res) => res.end(`sni=${(req.socket as tls.TLSSocket).servername}`)): Promise<number> {
    return listen(https.createServer({ key: certs.key, cert: certs.cert, ...options }, handler));
  }

  test('res.socket is a tls.TLSSocket with its whole API', async () => {
    const port = await tlsServer();
    const agent = httpsAgent('pooled');
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port, agent, rejectUnauthorized: false }, (res) => {
        const socket = res.socket as tls.TLSSocket;
        res.resume().on('end', () => resolve(socket));
      }).on('error', reject);
    });
    expect(socket).toBeInstanceOf(tls.TLSSocket);
    expect(socket.authorizationError).toBeTruthy();
    for (const method of ['getCipher', 'getProtocol', 'getSession', 'isSessionReused', 'getPeerX509Certificate', 'getFinished'] as const) {
      expect(typeof socket[method]).toBe('function');
    }
  });

  test("the agent emits 'keylog' for its connections", async () => {
    const port = await tlsServer();
    const agent = httpsAgent('pooled');
    let lines = 0;
    agent.on('keylog', () => lines++);
    await get(https, { host: '127.0.0.1', port, agent, rejectUnauthorized: false });
    expect(lines).toBeGreaterThan(0);
  });

  test('servername (SNI and the certificate check) comes from the Host header, as https.Agent takes it', async () => {
    const port = await tlsServer();
    const outcomes = [];
    for (const kind of KINDS) {
      outcomes.push(await get(https, { host: '127.0.0.1', port, headers: { host: 'localhost' }, ca: certs.ca, agent: httpsAgent(kind) }));
    }
    expect(outcomes[0]).toBe('sni=localhost');
    expect(outcomes[1]).toBe(outcomes[0]);
  });

  test("a request's checkServerIdentity applies to its new connection, even after other requests to the origin", async () => {
    const port = await tlsServer(
      { maxVersion: 'TLSv1.2', secureOptions: constants.SSL_OP_NO_TICKET, sessionTimeout: 0 },
      (_req, res) => {
        res.setHeader('connection', 'close');
        res.end('ok');
      },
    );
    const outcomes = [];
    for (const kind of KINDS) {
      const agent = httpsAgent(kind, { maxCachedSessions: 0 });
      let pinCalls = 0;
      const pin = (): Error => {
        pinCalls++;
        return new Error('certificate does not match the pin');
      };
      const first = await get(https, { host: '127.0.0.1', port, servername: 'localhost', ca: certs.ca, agent });
      const pinned = await get(https, { host: '127.0.0.1', port, servername: 'localhost', ca: certs.ca, agent, checkServerIdentity: pin });
      outcomes.push({ first, pinned, pinCalls });
    }
    expect(outcomes[0]).toMatchObject({ first: 'ok', pinCalls: 1 });
    expect(outcomes[0]!.pinned).toMatch(/^error/);
    expect(outcomes[1]).toEqual(outcomes[0]);
  });

  test("a request's timeout covers the wait for the TLS handshake; 'socket' comes while connecting", async () => {
    const accepted: net.Socket[] = [];
    const port = await listen(net.createServer((socket) => accepted.push(socket)));
    closers.push(() => accepted.forEach((socket) => socket.destroy()));
    const outcomes = [];
    for (const kind of KINDS) {
      const agent = httpsAgent(kind);
      outcomes.push(
        await new Promise<string>((resolve) => {
          const req = https.get({ host: '127.0.0.1', port, agent, timeout: 100, rejectUnauthorized: false });
          let connecting: boolean | undefined;
          req.on('socket', (socket: net.Socket) => (connecting = socket.connecting));
          req.on('timeout', () => {
            resolve(`timeout, socket connecting when given: ${String(connecting)}`);
            req.destroy();
          });
          req.on('error', () => {});
        }),
      );
    }
    expect(outcomes[0]).toBe('timeout, socket connecting when given: true');
    expect(outcomes[1]).toBe(outcomes[0]);
  });
});
