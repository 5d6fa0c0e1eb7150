/**
 * Local servers for the examples: a plain TCP echo server, a TLS echo server
 * and an HTTP server on 127.0.0.1, port 0, each counting the connections it
 * accepted and still holds open (so the examples can show dials, reuse and
 * evictions from the server's side). The TLS server's certificate is signed
 * by a private CA made at run time with the `openssl` CLI in a temporary
 * directory. `close()` destroys the accepted sockets, so a server never keeps
 * the process alive. `startServerProcess()` runs such servers in a child
 * process, so that the parent's socket file descriptors can be counted as its
 * own.
 */
import { execFileSync, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

/** A server on 127.0.0.1 (echo or HTTP). `await using` closes it. */
export interface EchoServer extends AsyncDisposable {
  /** `127.0.0.1:<port>`, ready for `New('tcp', address)`. */
  readonly address: string;
  readonly port: number;
  /** Connections accepted so far: one per dial. */
  readonly accepted: number;
  /** Connections open now, as the server sees them. */
  readonly open: number;
  /** Stops listening and destroys every accepted socket. */
  close(): Promise<void>;
}

/** A CA certificate and a server key and certificate it signed (PEM). */
export interface Certs {
  ca: Buffer;
  key: Buffer;
  cert: Buffer;
}

/** A plain TCP echo server. */
export function startEchoServer(): Promise<EchoServer> {
  return listen(net.createServer((socket) => socket.pipe(socket)));
}

/** A TLS echo server whose certificate (for localhost and 127.0.0.1) is signed by `certs.ca`. */
export function startTlsEchoServer(certs: Certs): Promise<EchoServer> {
  const server = tls.createServer({ key: certs.key, cert: certs.cert }, (socket) => socket.pipe(socket));
  server.on('tlsClientError', () => {});
  return listen(server);
}

/** An HTTP/1.1 server that answers every request with 200 and the body `ok` (keep-alive, as Node's default). */
export function startHttpServer(): Promise<EchoServer> {
  return listen(
    http.createServer((req, res) => {
      req.resume();
      res.end('ok');
    }),
  );
}

async function listen(server: net.Server): Promise<EchoServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  let closing: Promise<void> | undefined;
  // For TLS too, 'connection' is the raw TCP socket: destroying it ends the TLS session.
  server.on('connection', (socket: net.Socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    }));
  return {
    address: `127.0.0.1:${port}`,
    port,
    get accepted() {
      return accepted;
    },
    get open() {
      return sockets.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** A private CA (EC P-256) and a server certificate for DNS:localhost, IP:127.0.0.1, made with openssl. */
export function makeCerts(): Certs {
  const dir = mkdtempSync(join(tmpdir(), 'connpool-example-'));
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  try {
    writeFileSync(join(dir, 'ca.cnf'), CA_CONFIG);
    writeFileSync(join(dir, 'server.ext'), 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
    openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
    openssl('req', '-new', '-x509', '-config', 'ca.cnf', '-extensions', 'v3_ca', '-key', 'ca.key', '-days', '1', '-out', 'ca.pem');
    openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'server.key');
    openssl('req', '-new', '-config', 'ca.cnf', '-subj', '/CN=localhost', '-key', 'server.key', '-out', 'server.csr');
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-days', '1', '-extfile', 'server.ext', '-out', 'server.pem');
    const read = (name: string): Buffer => readFileSync(join(dir, name));
    return { ca: read('ca.pem'), key: read('server.key'), cert: read('server.pem') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const CA_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = connpool example CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`;

/**
 * Writes `text` and reads until as many bytes came back; rejects if they
 * differ. Leaves the stream open for the next round trip (a pooled
 * connection's loop always does; a plain `net.Socket`'s would be destroyed).
 */
export async function roundTrip(conn: Duplex, text: string): Promise<string> {
  const expected = Buffer.byteLength(text);
  conn.write(text);
  let received = '';
  for await (const chunk of conn.iterator({ destroyOnReturn: false })) {
    received += String(chunk);
    if (Buffer.byteLength(received) >= expected) break;
  }
  if (received !== text) throw new Error(`echo mismatch: sent ${JSON.stringify(text)}, got ${JSON.stringify(received)}`);
  return received;
}

/** Socket file descriptors this process has open now; undefined where /proc is not available. */
export function socketFds(): number | undefined {
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fd');
  } catch {
    return undefined;
  }
  let count = 0;
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')) count++;
    } catch {
      // closed while we looked
    }
  }
  return count;
}

/** What {@link startServerProcess} can run: a TCP echo server, a TLS echo server, an HTTP server. */
export type ServerKind = 'tcp' | 'tls' | 'http';

/** Servers run by {@link startServerProcess}, seen from the parent. */
export interface ServerProcess {
  /** `127.0.0.1:<port>` of each server, in the order asked. */
  readonly addresses: string[];
  /** The CA that signed the TLS servers' certificate (PEM). */
  readonly ca: string;
  /** Each server's connections accepted so far and open now. */
  counts(): Promise<{ accepted: number[]; open: number[] }>;
  /** Closes the servers and waits for the process to exit. */
  close(): Promise<void>;
}

/**
 * Starts servers (`'tcp'`, `'tls'` or `'http'`) in a child process, so that
 * every socket file descriptor of this process (past the IPC channel) is the
 * client side of a connection, and so that the servers' own descriptors do
 * not count against this process's limit.
 */
export async function startServerProcess(kinds: ServerKind[]): Promise<ServerProcess> {
  const child = fork(fileURLToPath(import.meta.url), kinds, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const reply = <T>(): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`server process exited (code ${code})`));
      child.once('exit', onExit);
      child.once('message', (message) => {
        child.off('exit', onExit);
        resolve(message as T);
      });
    });
  const { ports, ca } = await reply<{ ports: number[]; ca: string }>();
  return {
    addresses: ports.map((port) => `127.0.0.1:${port}`),
    ca,
    counts() {
      const counts = reply<{ accepted: number[]; open: number[] }>();
      child.send('counts');
      return counts;
    },
    async close() {
      if (child.connected) child.disconnect();
      await exited;
    },
  };
}

// The child side of startServerProcess(): serve until the parent disconnects.
if (process.send !== undefined && process.argv[1] === fileURLToPath(import.meta.url)) {
  const kinds = process.argv.slice(2);
  const certs = kinds.includes('tls') ? makeCerts() : undefined;
  const start = (kind: string): Promise<EchoServer> =>
    kind === 'tls' ? startTlsEchoServer(certs!) : kind === 'http' ? startHttpServer() : startEchoServer();
  const servers = await Promise.all(kinds.map(start));
  process.on('message', () => {
    process.send!({ accepted: servers.map((server) => server.accepted), open: servers.map((server) => server.open) });
  });
  process.once('disconnect', () => void Promise.all(servers.map((server) => server.close())));
  process.send({ ports: servers.map((server) => server.port), ca: certs?.ca.toString() ?? '' });
}
