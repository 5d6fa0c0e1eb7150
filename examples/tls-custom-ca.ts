/**
 * TLS with a private CA: `tlsDialer({ ca, timeout })` takes `tls.connect()`'s
 * options plus a connect-and-handshake timeout, and is passed to `get()`.
 * The peer is verified against the CA (`conn.authorized`), and the TLS
 * session is reused across `get()`s like a plain socket: one handshake for
 * all the round trips. Each dialer has its own pool key, so its connections
 * never reach a caller of another dialer; to share idle connections between
 * dialers with the same settings, give them the same `poolKey` (not `key`,
 * which is TLS's private-key option).
 */
import { New, tlsDialer } from 'connpool';
import { makeCerts, roundTrip, startTlsEchoServer } from './support/servers.js';

const certs = makeCerts();
await using server = await startTlsEchoServer(certs);
const res = New('tcp', server.address);
const dialer = tlsDialer({ ca: certs.ca, timeout: 2_000 });

for (let i = 1; i <= 3; i++) {
  await using conn = await res.get(AbortSignal.timeout(2_000), dialer);
  try {
    const reply = await roundTrip(conn, `secret ${i}`);
    const subject = conn.getPeerCertificate()?.subject?.CN;
    console.log(
      `round trip ${i}: ${JSON.stringify(reply)} authorized=${conn.authorized} peer CN=${subject} local port ${conn.localPort}`,
    );
    if (!conn.authorized) throw new Error('the server certificate was not verified');
  } catch (error) {
    await conn.close();
    throw error;
  }
}

console.log(`3 round trips over TLS, ${server.accepted} handshake(s)`);
if (server.accepted !== 1) {
  console.error('expected the three round trips to share one TLS connection');
  process.exitCode = 1;
}
