// The HTTP server of __tests__/http-emfile.test.ts, run in its own process
// with the ordinary descriptor limit, not the client's low `ulimit -n`. It
// listens on 0.0.0.0, so each loopback address 127.0.x.y is an origin of its
// own for the client. Answers every request with the body 'ok', keep-alive
// on; idle connections are kept 30 s (hint: timeout=30; nginx keeps 75 s).
// Prints its port; exits when its stdin closes (its parent is gone) or on SIGTERM.
import http from 'node:http';

const server = http.createServer((req, res) => {
  req.resume();
  res.end('ok');
});
server.keepAliveTimeout = 30_000;
server.on('connection', (socket) => socket.on('error', () => {}));
server.on('clientError', (_error, socket) => socket.destroy());
server.listen({ port: 0, host: '0.0.0.0', backlog: 4096 }, () => console.log(String(server.address().port)));
process.stdin.resume().on('end', () => process.exit(0));
