import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

/** A server on 127.0.0.1 with its accepted sockets at hand. */
export interface TestServer {
  readonly address: string;
  readonly port: number;
  readonly sockets: Set<net.Socket>;
  /** Connections accepted so far. */
  accepted: number;
  /** TLS connections that resumed a session. */
  resumed: number;
  close(): Promise<void>;
}

type Handler = (socket: net.Socket) => void;

const echo: Handler = (socket) => socket.pipe(socket);

async function track(server: net.Server, handler: Handler): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const state: TestServer = {
    address: '',
    port: 0,
    sockets,
    accepted: 0,
    resumed: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  server.on(server instanceof tls.Server ? 'secureConnection' : 'connection', (socket: net.Socket) => {
    state.accepted++;
    if (socket instanceof tls.TLSSocket && socket.isSessionReused()) state.resumed++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    handler(socket);
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return Object.assign(state, { port, address: `127.0.0.1:${port}` });
}

/** A TCP server on 127.0.0.1, port 0; echoes unless given a handler. */
export function startServer(handler: Handler = echo): Promise<TestServer> {
  return track(net.createServer(), handler);
}

/** A TLS server on 127.0.0.1 with a certificate signed by `certs.ca`. */
export function startTlsServer(certs: Certs, handler: Handler = echo, options: tls.TlsOptions = {}): Promise<TestServer> {
  return track(tls.createServer({ key: certs.key, cert: certs.cert, ...options }), handler);
}

/** An address on which nothing listens: listen, note the port, close. */
export async function refusedAddress(): Promise<string> {
  const server = await startServer();
  await server.close();
  return server.address;
}

// The examples make their TLS certificates and echo round trips the same way.
export { makeCerts, roundTrip, type Certs } from '../../examples/support/servers.js';
import type { Certs } from '../../examples/support/servers.js';

/** Socket file descriptors this process has open now (Linux). */
export function openSocketFds(): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')) count++;
    } catch {
      // closed while we looked
    }
  }
  return count;
}

/** Echo servers on `count` ports in a child process, so that their sockets are not this process's fds. */
export async function startChildServers(count = 1): Promise<{ addresses: string[]; child: ChildProcess; close(): Promise<void> }> {
  const child = spawn(process.execPath, ['-e', CHILD_ECHO, String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ports = await new Promise<number[]>((resolve, reject) => {
    child.once('error', reject);
    child.stdout!.once('data', (data: Buffer) => resolve(String(data).trim().split(',').map(Number)));
  });
  return {
    addresses: ports.map((port) => `127.0.0.1:${port}`),
    child,
    close: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill();
      }),
  };
}

const CHILD_ECHO = `
const net = require('node:net');
const count = Number(process.argv[1]);
const ports = [];
for (let i = 0; i < count; i++) {
  const server = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
  server.listen(0, '127.0.0.1', () => {
    ports.push(server.address().port);
    if (ports.length === count) console.log(ports.join(','));
  });
}
`;

/** Resolves when `predicate` holds, checking after each turn of the event loop. */
export async function until(predicate: () => boolean, what = 'condition'): Promise<void> {
  for (let turn = 0; turn < 100_000; turn++) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`gave up waiting for ${what}`);
}
