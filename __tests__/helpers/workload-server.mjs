// The servers of __tests__/workload.test.ts, in a process of their own so that
// the workload's /proc/self/fd holds only client sockets. Started by
// workload-child.mjs; exits when its stdin closes (its parent is gone).
//
// argv: seed, number of servers, accept-fault rate (per mille).
// Prints one JSON line: { ports, refused } (refused: a port nothing listens on).
//
// The protocol is line-based. A request is
//   Q <id> <mode> <chunks> <delayMs> <cut> <idleMs> <payload>\n
// and its reply `R <id> <payload>\n`. Unsolicited bytes are junk lines, `J <n>\n`.
// Modes, what the server does on a request:
//   echo       the reply in one write
//   split      the reply in <chunks> writes, <delayMs> apart
//   end        the reply (split as above), then FIN
//   close      the first <cut> bytes of the reply, then FIN
//   reset      the first <cut> bytes of the reply, then RST
//   hang       nothing
//   junk       the reply, then a junk line <idleMs> later
//   idleclose  the reply, then FIN <idleMs> later
//   idlereset  the reply, then RST <idleMs> later
// A delayed junk line, FIN or RST is cancelled when the next request arrives
// first (as a keep-alive server restarts its idle timer). Once a connection is
// ended or reset it ignores further requests. Whatever the timing, a reply of
// echo, split, end, junk, idleclose and idlereset is sent whole before any FIN,
// and never with an RST, so a client that got part of one must get all of it.
//
// Independently of requests, a few accepted connections (<rate> per mille each)
// are reset, closed, or sent a junk line at once.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { mulberry32 } from './child-tools.mjs';

const [seedText, countText, rateText] = process.argv.slice(2);
const seed = Number(seedText);
const count = Number(countText);
const rate = Number(rateText) / 1000;

let junkSerial = 0;

function serve(socket, random) {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  let buffered = '';
  let isOver = false;
  let idleTimer;
  /** Replies go out one after another (split ones take time); the client sends one request at a time anyway. */
  let queue = Promise.resolve();

  const over = (how) => {
    if (isOver) return;
    isOver = true;
    clearTimeout(idleTimer);
    if (how === 'reset') socket.resetAndDestroy();
    else socket.end();
  };
  const sleep = (ms) => new Promise((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));
  async function sendSplit(text, chunks, delayMs) {
    const size = Math.max(1, Math.ceil(text.length / chunks));
    for (let at = 0; at < text.length && !isOver; at += size) {
      socket.write(text.slice(at, at + size));
      if (at + size < text.length) await sleep(delayMs);
    }
  }

  async function handle(line) {
    clearTimeout(idleTimer);
    if (isOver) return;
    const match = /^Q (\S+) (\S+) (\d+) (\d+) (\d+) (\d+) (.*)$/.exec(line);
    if (match === null) {
      // Bytes the client never sent as one request: say so, the client fails on it.
      socket.write(`X ${JSON.stringify(line.slice(0, 80))}\n`);
      return;
    }
    const [, id, mode, chunksText, delayText, cutText, idleText, payload] = match;
    const chunks = Number(chunksText);
    const delayMs = Number(delayText);
    const idleMs = Number(idleText);
    const reply = `R ${id} ${payload}\n`;
    const cut = Math.min(Number(cutText), reply.length - 1);
    const later = (action) => {
      idleTimer = setTimeout(action, idleMs);
    };
    switch (mode) {
      case 'echo':
        socket.write(reply);
        break;
      case 'split':
        await sendSplit(reply, chunks, delayMs);
        break;
      case 'end':
        await sendSplit(reply, chunks, delayMs);
        over('end');
        break;
      case 'close':
      case 'reset':
        if (cut > 0) socket.write(reply.slice(0, cut));
        if (mode === 'reset') await sleep(delayMs);
        over(mode);
        break;
      case 'hang':
        break;
      case 'junk':
        socket.write(reply);
        later(() => {
          if (!isOver) socket.write(`J ${junkSerial++}\n`);
        });
        break;
      case 'idleclose':
        socket.write(reply);
        later(() => over('end'));
        break;
      case 'idlereset':
        socket.write(reply);
        later(() => over('reset'));
        break;
      default:
        socket.write(`X unknown mode ${mode}\n`);
    }
  }

  socket.on('data', (data) => {
    buffered += data;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      queue = queue.then(() => handle(line));
    }
  });
  socket.on('end', () => over('end'));
  socket.on('close', () => {
    isOver = true;
    clearTimeout(idleTimer);
  });

  // A fault at accept ends the connection before any request is read: no reply is cut short by it.
  const fault = random();
  if (fault < rate) {
    isOver = true;
    setTimeout(() => socket.resetAndDestroy(), Math.floor(random() * 3));
  } else if (fault < 2 * rate) over('end');
  else if (fault < 3 * rate) socket.write(`J ${junkSerial++}\n`);
}

const ports = [];
for (let i = 0; i < count; i++) {
  const random = mulberry32((seed * 7919 + i * 104729) | 0);
  const server = net.createServer((socket) => serve(socket, random));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  ports.push(server.address().port);
}
const refused = await refusedPort();

/**
 * A port nothing listens on, below the ephemeral range: a port from that range
 * may later be a client socket's own, and a connect to it then reaches itself
 * (TCP simultaneous open) instead of being refused.
 */
async function refusedPort() {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // not Linux: the usual default
  }
  const random = mulberry32(seed);
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 1024 + Math.floor(random() * Math.max(1, low - 1024));
    const probe = net.createServer();
    const isFree = await new Promise((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (isFree) {
      await new Promise((resolve) => probe.close(resolve));
      return port;
    }
  }
  throw new Error('no free port below the ephemeral range');
}

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.stdout.write(`${JSON.stringify({ ports, refused })}\n`);
