// The peer of every benchmark, in a child process so that it never shares
// the measuring process's event loop. Forked by run.mjs with an IPC channel:
//
//   parent -> { type: 'start', tls?: { key, cert } }     (no tls: no TLS port)
//   child  -> { type: 'ready', ports: { echo, checkout, rtt, tls, bulk, scale } }
//   parent -> { type: 'stop' }      (or the channel closes)
//
// echo-like ports (checkout, rtt, scale) echo every byte back; `tls` is a TLS
// echo; `bulk` speaks a tiny protocol for the throughput figure:
//   'U' + uint64 length: read `length` bytes, then answer one byte 'K';
//   'D' + uint64 length: send `length` bytes.
import net from 'node:net';
import tls from 'node:tls';

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

function listen(server) {
  servers.push(server);
  server.on('error', (error) => {
    console.error('bench servers:', error);
  });
  return new Promise((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => resolve(server.address().port)));
}

async function start({ tls: credentials }) {
  const ports = {};
  for (const name of ['checkout', 'rtt', 'scale']) ports[name] = await listen(net.createServer({ noDelay: true }, echo));
  ports.bulk = await listen(net.createServer({ noDelay: true }, bulk));
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
  else if (message.type === 'stop') stop();
});
process.on('disconnect', () => {
  for (const server of servers) server.close();
  for (const socket of sockets) socket.destroy();
});
