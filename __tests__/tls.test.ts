import { New, ResourcePool, tlsDialer } from '../lib/index.js';
import { drainPool } from './helpers/pool.js';
import { makeCerts, roundTrip, startTlsServer, until, type Certs, type TestServer } from './helpers/servers.js';

let certs: Certs;
let server: TestServer;
let pool: ResourcePool;
beforeAll(async () => {
  certs = makeCerts();
  server = await startTlsServer(certs, undefined, { ALPNProtocols: ['echo/1'] });
});
afterAll(() => server.close());
beforeEach(() => {
  pool = new ResourcePool({ max: 4 });
});
afterEach(async () => {
  await until(() => pool.stats().releasing === 0);
  expect(pool.stats()).toMatchObject({ inUse: 0, waiting: 0 });
  await drainPool(pool);
});

test('a TLS dialer with a private CA connects, verifies the peer, and its connections are reused', async () => {
  const dialer = tlsDialer({ ca: certs.ca, ALPNProtocols: ['echo/1'] });
  const res = New('tcp', server.address, { pool });
  const conn = await res.get(AbortSignal.timeout(5_000), dialer);
  expect(conn.encrypted).toBe(true);
  expect(conn.authorized).toBe(true);
  expect(conn.alpnProtocol).toBe('echo/1');
  expect(conn.getPeerCertificate()?.subject?.CN).toBe('localhost');
  expect(await roundTrip(conn, 'over tls')).toBe('over tls');
  const port = conn.localPort;
  conn.put();
  const again = await res.get(undefined, dialer);
  expect(again.localPort).toBe(port);
  expect(server.accepted).toBe(1);
  again.put();
});

test('the host name is checked: localhost passes, a wrong servername fails with ERR_TLS_CERT_ALTNAME_INVALID', async () => {
  const byName = New('tcp', `localhost:${server.port}`, { pool });
  const conn = await byName.get(undefined, tlsDialer({ ca: certs.ca }));
  expect(conn.authorized).toBe(true);
  await conn.close();
  const wrong = tlsDialer({ ca: certs.ca, servername: 'wrong.example' });
  await expect(byName.get(undefined, wrong)).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  expect(pool.stats()).toMatchObject({ inUse: 0 });
});

test('a certificate from an unknown CA fails the dial and frees the slot', async () => {
  const res = New('tcp', server.address, { pool });
  await expect(res.get(undefined, tlsDialer())).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
});

test('a plain socket never reaches a caller that asked for TLS, nor the reverse', async () => {
  const dialer = tlsDialer({ ca: certs.ca });
  const res = New('tcp', server.address, { pool });
  const secure = await res.get(undefined, dialer);
  secure.put();
  const plain = await res.get(); // TCP connects; no handshake is made
  expect(plain.encrypted).toBe(false);
  await plain.close();
  const secureAgain = await res.get(undefined, dialer);
  expect(secureAgain.encrypted).toBe(true);
  expect(secureAgain.authorized).toBe(true);
  secureAgain.put();
});

test('each tlsDialer() has its own key; dialers given the same poolKey share idle connections', async () => {
  const [one, two] = [tlsDialer({ ca: certs.ca }), tlsDialer({ ca: certs.ca })];
  expect(one.key).not.toBe(two.key);
  expect(tlsDialer({ ca: certs.ca, poolKey: 'internal-ca' }).key).toBe('internal-ca');
  const res = New('tcp', server.address, { pool });
  const first = await res.get(undefined, tlsDialer({ ca: certs.ca, poolKey: 'internal-ca' }));
  const port = first.localPort;
  first.put();
  const shared = await res.get(undefined, tlsDialer({ ca: certs.ca, poolKey: 'internal-ca' }));
  expect(shared.localPort).toBe(port);
  shared.put();
  const separate = await res.get(undefined, one);
  expect(separate.localPort).not.toBe(port);
  separate.put();
  expect(pool.stats()).toMatchObject({ idle: 2 });
});

test('a new connection through the same dialer resumes the TLS session of the last one', async () => {
  const dialer = tlsDialer({ ca: certs.ca });
  const res = New('tcp', server.address, { pool });
  const first = await res.get(undefined, dialer);
  expect(await roundTrip(first, 'ticket')).toBe('ticket'); // TLS 1.3 tickets come after the handshake
  await first.close();
  const second = await res.get(undefined, dialer);
  expect(second.authorized).toBe(true);
  expect(await roundTrip(second, 'resumed')).toBe('resumed');
  expect(server.resumed).toBeGreaterThanOrEqual(1);
  second.put();
});
