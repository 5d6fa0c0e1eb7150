// The peer of every benchmark, in a child process so that it never shares
// the measuring process's event loop. Forked by run.mjs with an IPC channel:
//
//   parent -> { type: 'start', tls?: { key, cert } }     (no tls: no TLS port)
//   child  -> { type: 'ready', ports: { checkout, rtt, scale, dial, dials, bulk, tls, http, fanout } }
//   parent -> { type: 'census' }    (answered { type: 'census', peak, accepted, open }, then reset)
//   parent -> { type: 'stop' }      (or the channel closes)
//
// echo-like ports (checkout, rtt, scale, dial) echo every byte back; `dials`
// is an array of DIAL_SERVERS more echo servers (the round-robin of figure h);
// `tls` is a TLS echo; `bulk` speaks a tiny protocol for the throughput figure:
//   'U' + uint64 length: read `length` bytes, then answer one byte 'K';
//   'D' + uint64 length: send `length` bytes.
// `http` is a node:http server on 127.0.0.1 answering every request with the
// body 'ok' (keep-alive, Node's default 5 s idle timeout); `fanout` is the same
// on 0.0.0.0 (each loopback address 127.0.x.y is an origin of its own for the
// client), keeping idle connections 30 s as __tests__/helpers/http-fanout-server.mjs.
// The census: connections the fanout server accepted, and the most open at
// once, since the last census.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';

/** The echo servers of the round-robin dial figure. */
const DIAL_SERVERS = 300;

const CHUNK = Buffer.alloc(64 * 1024, 0x5a);
const servers = [];
const sockets = new Set();

function track(socket) {
  sockets.add(socket);
  socket.on('error', () => {});
  socket.on('close', () => sockets.delete(socket));
}

function echo(socket) {
  track(socket);
  socket.pipe(socket);
}

function bulk(socket) {
  track(socket);
  let header = Buffer.alloc(0);
  let uploadLeft = 0n;
  let downloading = false;

  const download = (length) => {
    downloading = true;
    socket.pause();
    let left = length;
    const pump = () => {
      while (left > 0n) {
        const n = left >= BigInt(CHUNK.length) ? CHUNK.length : Number(left);
        left -= BigInt(n);
        if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          socket.once('drain', pump);
          return;
        }
      }
      downloading = false;
      socket.resume();
    };
    pump();
  };

  socket.on('data', (chunk) => {
    let offset = 0;
    while (offset < chunk.length && !downloading) {
      if (uploadLeft > 0n) {
        const take = Math.min(chunk.length - offset, uploadLeft > BigInt(chunk.length) ? chunk.length : Number(uploadLeft));
        uploadLeft -= BigInt(take);
        offset += take;
        if (uploadLeft === 0n) socket.write('K');
        continue;
      }
      const need = 9 - header.length;
      header = Buffer.concat([header, chunk.subarray(offset, offset + need)]);
      offset += Math.min(need, chunk.length - offset);
      if (header.length < 9) break;
      const op = String.fromCharCode(header[0]);
      const length = header.readBigUInt64BE(1);
      header = Buffer.alloc(0);
      if (op === 'U') {
        uploadLeft = length;
        if (length === 0n) socket.write('K');
      } else if (op === 'D') {
        download(length);
      } else {
        socket.destroy();
        return;
      }
    }
  });
}

function listen(server, host = '127.0.0.1') {
  servers.push(server);
  server.on('error', (error) => {
    console.error('bench servers:', error);
  });
  return new Promise((resolve) => server.listen({ port: 0, host, backlog: 4096 }, () => resolve(server.address().port)));
}

const census = { open: 0, peak: 0, accepted: 0 };

function ok(req, res) {
  req.resume();
  res.end('ok');
}

function httpServer(keepAliveTimeout) {
  const server = http.createServer({ noDelay: true }, ok);
  if (keepAliveTimeout !== undefined) server.keepAliveTimeout = keepAliveTimeout;
  server.on('connection', track);
  server.on('clientError', (_error, socket) => socket.destroy());
  return server;
}

async function start({ tls: credentials }) {
  const ports = {};
  for (const name of ['checkout', 'rtt', 'scale', 'dial']) ports[name] = await listen(net.createServer({ noDelay: true }, echo));
  ports.dials = [];
  for (let i = 0; i < DIAL_SERVERS; i++) ports.dials.push(await listen(net.createServer({ noDelay: true }, echo)));
  ports.bulk = await listen(net.createServer({ noDelay: true }, bulk));
  ports.http = await listen(httpServer());
  const fanout = httpServer(30_000);
  fanout.on('connection', (socket) => {
    census.accepted++;
    census.peak = Math.max(census.peak, ++census.open);
    socket.on('close', () => census.open--);
  });
  ports.fanout = await listen(fanout, '0.0.0.0');
  if (credentials) ports.tls = await listen(tls.createServer({ key: credentials.key, cert: credentials.cert, noDelay: true }, echo));
  process.send({ type: 'ready', ports });
}

function stop() {
  for (const server of servers) server.close();
  for (const socket of sockets) socket.destroy();
  process.disconnect?.();
}

process.on('message', (message) => {
  if (message.type === 'start') start(message).catch((error) => {
    console.error(error);
    process.exit(1);
  });
  else if (message.type === 'census') {
    process.send({ type: 'census', peak: census.peak, accepted: census.accepted, open: census.open });
    census.peak = census.open;
    census.accepted = 0;
  } else if (message.type === 'stop') stop();
});
process.on('disconnect', () => {
  for (const server of servers) server.close();
  for (const socket of sockets) socket.destroy();
});
