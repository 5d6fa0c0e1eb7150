// The HTTP servers of __tests__/undici-workload.test.ts, in a process of their
// own so that the workload's /proc/self/fd holds only client sockets. Started
// by undici-workload-child.mjs; exits when its stdin closes (its parent is gone).
//
// argv: number of servers. Prints one JSON line: { ports }.
//
// A request names what the server does in its query string:
//   id      echoed in every line of the body, so a body that reaches the
//           wrong caller is seen
//   mode    ok: the body in one write; chunks: <n> writes <delay> ms apart;
//           slow: the headers after <delay> ms, then as ok; hang: nothing;
//           close: as ok, with Connection: close; hint: as ok, with
//           Keep-Alive: timeout=1; reset: half the body, then RST;
//           end: half the body, then FIN (the response is cut short)
//   n       lines in the body (each `<id>\n`)
//   delay   ms, for chunks and slow
// A POST's body is read whole first and its length reported in X-Received.
import http from 'node:http';

const count = Number(process.argv[2] ?? 1);

function handle(req, res) {
  const url = new URL(req.url, 'http://x');
  const id = url.searchParams.get('id') ?? '0';
  const mode = url.searchParams.get('mode') ?? 'ok';
  const lines = Number(url.searchParams.get('n') ?? 1);
  const delay = Number(url.searchParams.get('delay') ?? 0);
  let received = 0;
  req.on('data', (chunk) => (received += chunk.length));
  req.on('error', () => {});
  res.on('error', () => {});
  req.on('end', () => {
    const line = `${id}\n`;
    const body = line.repeat(lines);
    const headers = { 'content-length': Buffer.byteLength(body), 'x-id': id, 'x-received': String(received) };
    const timers = [];
    res.on('close', () => timers.forEach(clearTimeout));
    switch (mode) {
      case 'hang':
        return;
      case 'slow':
        timers.push(setTimeout(() => res.writeHead(200, headers).end(body), delay));
        return;
      case 'close':
        res.writeHead(200, { ...headers, connection: 'close' }).end(body);
        return;
      case 'hint':
        res.writeHead(200, { ...headers, 'keep-alive': 'timeout=1' }).end(body);
        return;
      case 'reset':
      case 'end': {
        res.writeHead(200, headers);
        res.write(body.slice(0, body.length >> 1));
        timers.push(
          setTimeout(() => {
            if (mode === 'reset') req.socket.resetAndDestroy();
            else req.socket.end();
          }, delay),
        );
        return;
      }
      case 'chunks': {
        res.writeHead(200, headers);
        let sent = 0;
        const next = () => {
          if (sent === lines) return void res.end();
          sent++;
          res.write(line);
          timers.push(setTimeout(next, delay));
        };
        next();
        return;
      }
      default:
        res.writeHead(200, headers).end(body);
    }
  });
}

const servers = [];
for (let i = 0; i < count; i++) {
  const server = http.createServer(handle);
  server.keepAliveTimeout = 60_000;
  server.on('clientError', (error, socket) => socket.destroy());
  await new Promise((resolve) => server.listen(0, '0.0.0.0', resolve));
  servers.push(server);
}
console.log(JSON.stringify({ ports: servers.map((server) => server.address().port) }));
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
