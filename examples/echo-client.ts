/**
 * The basic pattern: one `New()` handle per address, then for each exchange
 * `await using conn = await res.get(signal)`. Leaving the block puts the
 * connection back on the idle list, so the next `get()` reuses the same
 * socket (same local port, one connection accepted by the server) instead of
 * dialing again. If an exchange fails, `await conn.close()` before rethrowing:
 * a connection in an unknown state must never be reused, and the disposal
 * that follows does nothing once the connection is closed.
 */
import { New } from 'connpool';
import { roundTrip, startEchoServer } from './support/servers.js';

await using server = await startEchoServer();
const res = New('tcp', server.address);
const localPorts = new Set<number | undefined>();

for (let i = 1; i <= 3; i++) {
  await using conn = await res.get(AbortSignal.timeout(2_000));
  try {
    const reply = await roundTrip(conn, `hello ${i}`);
    console.log(`round trip ${i}: ${JSON.stringify(reply)} from local port ${conn.localPort}`);
    localPorts.add(conn.localPort);
  } catch (error) {
    await conn.close();
    throw error;
  }
}

console.log(`3 round trips, ${localPorts.size} local port(s), ${server.accepted} connection(s) accepted by the server`);
if (server.accepted !== 1 || localPorts.size !== 1) {
  console.error('expected the three round trips to share one connection');
  process.exitCode = 1;
}
