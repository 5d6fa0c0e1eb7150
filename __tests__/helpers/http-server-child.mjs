// The HTTP and HTTPS servers of __tests__/http.test.ts and undici.test.ts, in
// a process of their own so that the test process's sockets are only the
// client's. Forked with an IPC channel by http-servers.ts; exits when the
// channel closes (its parent is gone or done).
//
// The parent's first message is { key, cert } (PEM), the HTTPS servers'
// identity. The child answers { ports: { http, https, mixed, echo } }:
//   http   HTTP/1.1 on 0.0.0.0 (so every 127.0.0.x is an origin of its own)
//   https  the same over TLS
//   mixed  one port on 127.0.0.1 that speaks HTTP or HTTPS, by the first byte
//          a client sends (0x16: a TLS handshake)
//   echo   a raw TCP echo server on 127.0.0.1
// Every response carries X-Conn (the server's serial number of the
// connection) and X-Tls (yes/no).
//
// Requests the parent may send, each answered by one message:
//   'counts'   { accepted, open, held, peakHeld, requests }: connections
//              accepted and open per '<server>|<local ip>', responses held
//              (GET /hold) now and at most at once, per '<server>|<local ip>',
//              requests received per '<method> <url>', and openConns: the
//              X-Conn of every connection that served a request and is open
//   'release'  ends every held response; answers { released }
//   'reset'    forgets the peaks of held responses; answers {}
//
// Routes (the query string is ignored):
//   /hello      200 "hello"
//   /digest     the request body's { bytes, sha256 } as JSON
//   /echo       the request body back, chunked
//   /chunked    64 chunks of 1 KiB (chunk i: bytes of value i), chunked
//   /204        204
//   /304        304 when If-None-Match is "v1", else 200 "fresh" with that ETag
//   /close      200 "bye" with Connection: close
//   /short      200 "short" with Keep-Alive: timeout=1
//   /hold       200 "held", sent when the parent says 'release'
//   /partial    Content-Length 1 MiB, 64 KiB of it, then nothing
//   /stall      nothing at all
//   /end-after  200 "ending", then the server ends the connection
// Expect: 100-continue is answered with 100, then the route as usual.
// Upgrade (any path): 101, then the connection echoes.
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { Duplex } from 'node:stream';

const CHUNKS = 64;
const CHUNK_BYTES = 1024;
const PARTIAL_BYTES = 1024 * 1024;
const PARTIAL_SENT = 64 * 1024;

const accepted = {};
const open = {};
const held = {};
const peakHeld = {};
const requests = {};
/** Responses of GET /hold, with the counter they were held under. */
const holding = new Set();
const sockets = new Set();
const serials = new WeakMap();
let nextSerial = 0;

const bump = (table, key, by = 1) => {
  table[key] = (table[key] ?? 0) + by;
};

/** Counts an accepted TCP connection of `server` under its local IP. */
function track(server, socket) {
  const key = `${server}|${socket.localAddress}`;
  bump(accepted, key);
  bump(open, key);
  sockets.add(socket);
  socket.on('error', () => {});
  socket.once('close', () => {
    bump(open, key, -1);
    sockets.delete(socket);
  });
  return key;
}

/** Serial numbers of the connections that served a request and are still open. */
const openSerials = new Set();

function serialOf(socket) {
  let serial = serials.get(socket);
  if (serial === undefined) {
    serials.set(socket, (serial = ++nextSerial));
    const id = serial;
    openSerials.add(id);
    socket.once('close', () => openSerials.delete(id));
  }
  return serial;
}

function handle(server, req, res) {
  const socket = req.socket;
  const key = `${server}|${socket.localAddress}`;
  res.setHeader('X-Conn', String(serialOf(socket)));
  res.setHeader('X-Tls', socket.encrypted ? 'yes' : 'no');
  bump(requests, `${req.method} ${req.url}`);
  const path = req.url.split('?')[0];
  switch (path) {
    case '/hello':
      return void res.setHeader('Content-Length', 5).end(req.method === 'HEAD' ? undefined : 'hello');
    case '/digest': {
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (chunk) => {
        bytes += chunk.length;
        hash.update(chunk);
      });
      req.on('end', () => {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }));
      });
      return;
    }
    case '/echo':
      return void req.pipe(res);
    case '/chunked': {
      let i = 0;
      const next = () => {
        if (i === CHUNKS) return void res.end();
        res.write(Buffer.alloc(CHUNK_BYTES, i++));
        setImmediate(next);
      };
      return next();
    }
    case '/204':
      res.statusCode = 204;
      return void res.end();
    case '/304':
      if (req.headers['if-none-match'] === '"v1"') {
        res.statusCode = 304;
        res.setHeader('ETag', '"v1"');
        return void res.end();
      }
      res.setHeader('ETag', '"v1"');
      return void res.setHeader('Content-Length', 5).end('fresh');
    case '/close':
      res.setHeader('Connection', 'close');
      return void res.setHeader('Content-Length', 3).end('bye');
    case '/short':
      res.setHeader('Connection', 'keep-alive');
      res.setHeader('Keep-Alive', 'timeout=1');
      return void res.setHeader('Content-Length', 5).end('short');
    case '/hold': {
      bump(held, key);
      peakHeld[key] = Math.max(peakHeld[key] ?? 0, held[key]);
      const entry = { res, key };
      holding.add(entry);
      res.once('close', () => {
        if (holding.delete(entry)) bump(held, key, -1);
      });
      return;
    }
    case '/partial':
      res.setHeader('Content-Length', PARTIAL_BYTES);
      res.write(Buffer.alloc(PARTIAL_SENT, 0x61));
      return;
    case '/stall':
      return;
    case '/end-after':
      res.once('finish', () => setImmediate(() => socket.end()));
      return void res.setHeader('Content-Length', 6).end('ending');
    default:
      res.statusCode = 404;
      return void res.end();
  }
}

/** An HTTP server (`tls`: HTTPS) named `name`, counting its connections. */
function makeServer(name, tls, identity) {
  const server = tls ? https.createServer({ ...identity }) : http.createServer();
  server.keepAliveTimeout = 60_000;
  server.on('request', (req, res) => handle(name, req, res));
  server.on('checkContinue', (req, res) => {
    res.writeContinue();
    handle(name, req, res);
  });
  // Upgrade: echo, 101 Switching Protocols first, then every byte back.
  server.on('upgrade', (req, socket, head) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  server.on('clientError', (error, socket) => socket.destroy());
  if (tls) server.on('tlsClientError', () => {});
  return server;
}

function listen(server, host) {
  return new Promise((resolve) => server.listen(0, host, () => resolve(server.address().port)));
}

process.once('message', async (identity) => {
  const httpServer = makeServer('http', false);
  httpServer.on('connection', (socket) => track('http', socket));
  const httpsServer = makeServer('https', true, identity);
  httpsServer.on('connection', (socket) => track('https', socket));

  // One port, two protocols: the first byte decides which server gets the
  // connection. The servers get a plain Duplex over the socket (TLS would take
  // over a net.Socket's handle and lose the byte read to decide).
  const mixedHttp = makeServer('mixed', false);
  const mixedHttps = makeServer('mixed', true, identity);
  const mixed = net.createServer((socket) => {
    track('mixed', socket);
    const relay = new Duplex({
      read: () => void socket.resume(),
      write: (chunk, encoding, callback) => void socket.write(chunk, encoding, callback),
      final: (callback) => void socket.end(callback),
      destroy: (error, callback) => {
        socket.destroy();
        callback(error);
      },
    });
    socket.on('data', (chunk) => {
      if (!relay.push(chunk)) socket.pause();
    });
    socket.once('end', () => relay.push(null));
    socket.once('close', () => relay.destroy());
    socket.once('data', (chunk) => (chunk[0] === 0x16 ? mixedHttps : mixedHttp).emit('connection', relay));
  });

  const echo = net.createServer((socket) => {
    track('echo', socket);
    socket.pipe(socket);
  });

  const ports = {
    http: await listen(httpServer, '0.0.0.0'),
    https: await listen(httpsServer, '0.0.0.0'),
    mixed: await listen(mixed, '127.0.0.1'),
    echo: await listen(echo, '127.0.0.1'),
  };

  process.on('message', (message) => {
    if (message === 'counts') {
      process.send({ accepted, open, held, peakHeld, requests, openConns: [...openSerials].map(String) });
    } else if (message === 'release') {
      const released = holding.size;
      for (const entry of holding) entry.res.setHeader('Content-Length', 4).end('held');
      process.send({ released });
    } else if (message === 'reset') {
      for (const key of Object.keys(peakHeld)) delete peakHeld[key];
      process.send({});
    }
  });
  process.once('disconnect', () => {
    for (const server of [httpServer, httpsServer, mixed, echo]) server.close();
    for (const socket of sockets) socket.destroy();
  });
  process.send({ ports });
});
