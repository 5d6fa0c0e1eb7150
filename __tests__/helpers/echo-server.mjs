// An echo server for __tests__/threads.test.ts, in a process of its own with
// the ordinary descriptor limit, so that the client's /proc/self/fd holds only
// client sockets. It listens on 0.0.0.0: each loopback address 127.0.x.y is
// a server of its own to the client. Prints its port; exits when its stdin
// closes (its parent is gone).
import net from 'node:net';

const server = net.createServer((socket) => {
  socket.on('error', () => {});
  socket.pipe(socket);
});
server.listen({ port: 0, host: '0.0.0.0', backlog: 4096 }, () => console.log(String(server.address().port)));
process.stdin.resume().on('end', () => process.exit(0));
