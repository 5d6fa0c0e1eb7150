import { distIndex } from './helpers/dist.js';
import { runModule } from './helpers/child.js';
import { startChildServers } from './helpers/servers.js';
import { reportFigure } from './helpers/figures.js';

/** What a child saw running its 2,000 tasks. */
interface Outcome {
  done: number;
  emfile: number;
  other: Record<string, number>;
  limit: number;
  stats?: Record<string, number>;
}

const TASKS = 2_000;
const ULIMIT = 256;

/**
 * argv: address, mode ('pooled' through the global pool, or 'raw' net.connect
 * per task). Each task makes one round trip to the echo server; the child
 * prints how many tasks finished, failed with EMFILE, or failed otherwise.
 */
const CHILD = `
import net from 'node:net';
import { New, connectionLimit, getResourcePool } from ${JSON.stringify(distIndex)};
const [address, mode] = process.argv.slice(1);
const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];

async function readEcho(stream, text) {
  let received = '';
  for await (const chunk of stream) {
    received += chunk;
    if (received.length >= text.length) break;
  }
  if (received !== text) throw new Error('bad echo: ' + received);
}

async function pooled(id) {
  const conn = await New('tcp', address).get();
  const text = 'pooled ' + id;
  conn.write(text);
  await readEcho(conn, text);
  conn.put();
}

async function raw(id) {
  const socket = net.connect({ host, port });
  try {
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const text = 'raw ' + id;
    socket.write(text);
    await readEcho(socket, text);
  } finally {
    socket.destroy();
  }
}

const outcome = { done: 0, emfile: 0, other: {}, limit: connectionLimit() };
const task = mode === 'pooled' ? pooled : raw;
await Promise.all(Array.from({ length: ${TASKS} }, (_, id) => task(id).then(
  () => void outcome.done++,
  (error) => {
    if (error.code === 'EMFILE') outcome.emfile++;
    else outcome.other[error.code ?? error.message] = (outcome.other[error.code ?? error.message] ?? 0) + 1;
  },
)));
if (mode === 'pooled') {
  outcome.stats = getResourcePool().stats();
  await getResourcePool().close();
}
console.log(JSON.stringify(outcome));
`;

let servers: Awaited<ReturnType<typeof startChildServers>>;
beforeAll(async () => {
  // The echo server runs in its own process, with this process's fd limit, not the child's.
  servers = await startChildServers(1);
});
afterAll(() => servers.close());

test(`S1/S11: under ulimit -n ${ULIMIT}, ${TASKS} concurrent round trips through the global pool all finish with zero EMFILE; raw net.connect hits EMFILE`, async () => {
  const [pooled, raw] = await Promise.all([
    runModule<Outcome>(CHILD, [servers.addresses[0]!, 'pooled'], { ulimit: ULIMIT }),
    runModule<Outcome>(CHILD, [servers.addresses[0]!, 'raw'], { ulimit: ULIMIT }),
  ]);
  reportFigure(`emfile: under ulimit -n ${ULIMIT}: pooled ${JSON.stringify(pooled)}; raw net.connect ${JSON.stringify(raw)}`);

  expect(pooled.limit).toBe(200);
  expect(pooled).toMatchObject({ done: TASKS, emfile: 0, other: {} });
  expect(pooled.stats).toMatchObject({ max: 200, inUse: 0, waiting: 0 });
  expect(raw.limit).toBe(200);
  expect(raw.emfile).toBeGreaterThan(0);
  expect(raw.done + raw.emfile + Object.values(raw.other).reduce((sum, n) => sum + n, 0)).toBe(TASKS);
});
