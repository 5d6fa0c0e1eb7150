/**
 * Servers for the HTTP adapters' tests: node HTTP/HTTPS servers in a child
 * process (http-server-child.mjs), and nginx started from a config written to
 * a temporary directory. Neither keeps a socket in the test process but the
 * IPC channel, so /proc/self/fd counts only the client's sockets.
 */
import { fork, spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Certs } from './servers.js';

export interface ServerCounts {
  /** Connections accepted, per `<server>|<local ip>` (server: http, https, mixed, echo). */
  accepted: Record<string, number>;
  /** Connections open now, per the same keys. */
  open: Record<string, number>;
  /** Responses of GET /hold held now, per the same keys. */
  held: Record<string, number>;
  /** The most responses of GET /hold held at once since the last reset, per the same keys. */
  peakHeld: Record<string, number>;
  /** Requests received, per method and URL (`GET /hello?x`). */
  requests: Record<string, number>;
  /** The X-Conn of every connection that served a request and is still open. */
  openConns: string[];
}

export interface HttpServers {
  readonly ports: { http: number; https: number; mixed: number; echo: number };
  counts(): Promise<ServerCounts>;
  /** Sends every response of GET /hold held so far; resolves with how many. */
  release(): Promise<number>;
  /** Forgets the peaks of held responses. */
  reset(): Promise<void>;
  /** Resolves once `count` responses of GET /hold are held under `key` (`<server>|<local ip>`). */
  holding(key: string, count: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts the servers of http-server-child.mjs, with `certs` as the HTTPS servers' identity. */
export async function startHttpServers(certs: Certs): Promise<HttpServers> {
  const script = fileURLToPath(new URL('http-server-child.mjs', import.meta.url));
  const child = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // One request at a time: each message gets the next answer.
  let queue: Promise<unknown> = Promise.resolve();
  const ask = <T>(message: unknown): Promise<T> => {
    const answer = queue.then(
      () =>
        new Promise<T>((resolve, reject) => {
          const onExit = (code: number | null): void => reject(new Error(`the server process exited (code ${code})`));
          child.once('exit', onExit);
          child.once('message', (reply) => {
            child.off('exit', onExit);
            resolve(reply as T);
          });
          child.send(message as object);
        }),
    );
    queue = answer.catch(() => {});
    return answer;
  };
  const { ports } = await ask<{ ports: HttpServers['ports'] }>({ key: certs.key.toString(), cert: certs.cert.toString() });
  return {
    ports,
    counts: () => ask<ServerCounts>('counts'),
    release: async () => (await ask<{ released: number }>('release')).released,
    reset: async () => {
      await ask('reset');
    },
    async holding(key, count) {
      for (let turn = 0; turn < 2_500; turn++) {
        if (((await ask<ServerCounts>('counts')).held[key] ?? 0) === count) return;
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      throw new Error(`gave up waiting for ${count} held responses on ${key}`);
    },
    async close() {
      if (child.connected) child.disconnect();
      await exited;
    },
  };
}

/** The sum of `table`'s values whose key starts with `prefix`. */
export function total(table: Record<string, number>, prefix = ''): number {
  let sum = 0;
  for (const [key, value] of Object.entries(table)) if (key.startsWith(prefix)) sum += value;
  return sum;
}

export interface Nginx {
  /** Plain HTTP on 127.0.0.1. */
  readonly httpPort: number;
  /** HTTPS on 127.0.0.1, certificate signed by the certs' CA. */
  readonly httpsPort: number;
  /** The bytes of GET /big.bin (1 MiB). */
  readonly big: Buffer;
  /** The text of GET /text.txt (served gzipped, hence chunked, to a client that accepts gzip). */
  readonly text: string;
  stop(): Promise<void>;
}

/** The nginx binary on PATH (or in the usual sbin directories); throws with how to install it if there is none. */
export function findNginx(): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const path = join(dir, 'nginx');
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  throw new Error(
    'nginx was not found on PATH nor in /usr/sbin: the nginx tests need it. ' +
      'Install it (Debian: apt-get install -y nginx-light), as .ci/run does.',
  );
}

/** A port that was free a moment ago on 127.0.0.1 (nginx cannot listen on port 0). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Starts nginx in the foreground (`daemon off`, one process) with a config in
 * a temporary directory that also holds its pid, logs, temp files and
 * document root.
 */
export async function startNginx(certs: Certs): Promise<Nginx> {
  const binary = findNginx();
  const dir = mkdtempSync(join(tmpdir(), 'connpool-nginx-'));
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const www = join(dir, 'www');
  mkdirSync(www);
  const big = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 10)) & 0xff;
  writeFileSync(join(www, 'big.bin'), big);
  const text = Array.from({ length: 20_000 }, (_, i) => `line ${i} of a text that compresses well\n`).join('');
  writeFileSync(join(www, 'text.txt'), text);
  writeFileSync(join(dir, 'server.pem'), certs.cert);
  writeFileSync(join(dir, 'server.key'), certs.key);
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, httpPort, httpsPort));

  const child = spawn(binary, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const fail = (why: string): never => {
    let log = '';
    try {
      log = readFileSync(join(dir, 'error.log'), 'utf8');
    } catch {
      // none yet
    }
    throw new Error(`nginx did not start (${why}):\n${stderr}${log}`);
  };
  let isUp = false;
  for (let attempt = 0; attempt < 500 && !isUp; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) fail(`exit code ${child.exitCode}`);
    isUp = (await canConnect(httpPort)) && (await canConnect(httpsPort));
    if (!isUp) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (!isUp) {
    child.kill('SIGKILL');
    await exited;
    fail('its ports never accepted a connection');
  }
  return {
    httpPort,
    httpsPort,
    big,
    text,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function nginxConfig(dir: string, httpPort: number, httpsPort: number): string {
  return `
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  default_type application/octet-stream;
  types { text/plain txt; }
  keepalive_timeout 60;
  keepalive_requests 10000;
  client_max_body_size 64m;
  gzip on;
  gzip_min_length 0;
  gzip_types text/plain;
  server {
    listen 127.0.0.1:${httpPort};
    listen 127.0.0.1:${httpsPort} ssl;
    ssl_certificate ${dir}/server.pem;
    ssl_certificate_key ${dir}/server.key;
    root ${dir}/www;
    add_header X-Conn $connection always;
    add_header X-Requests $connection_requests always;
    location = /hello { return 200 "hello from nginx\\n"; }
    location = /upload { return 200 "uploaded\\n"; }
    location = /204 { return 204; }
    location = /close { keepalive_timeout 0; return 200 "bye\\n"; }
    location = /short { keepalive_timeout 60 1; return 200 "short\\n"; }
  }
}
`;
}
