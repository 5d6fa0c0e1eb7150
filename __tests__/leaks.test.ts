import { execFileSync } from 'node:child_process';
import { New, ResourcePool } from '../lib/index.js';
import { distIndex } from './helpers/dist.js';
import { gc } from './helpers/gc.js';
import { drainPool } from './helpers/pool.js';
import { startServer, until, type TestServer } from './helpers/servers.js';

let server: TestServer;
let warnings: Error[];
const onWarning = (warning: Error): void => void warnings.push(warning);
beforeAll(async () => {
  server = await startServer();
  process.on('warning', onWarning);
});
afterAll(async () => {
  process.off('warning', onWarning);
  await server.close();
});
beforeEach(() => {
  warnings = [];
});

/**
 * Runs a child process that leaks one connection, collects it, and prints what
 * it saw as JSON: warnings (as Node emits them) and the pool's stats.
 */
function runLeakingChild(poolOptions: string, env: NodeJS.ProcessEnv = {}): { warnings: Array<{ code: string; detail: string }>; stats: Record<string, number>; serverClosed: boolean } {
  const script = `
    import net from 'node:net';
    import { New, ResourcePool } from ${JSON.stringify(distIndex)};
    const warnings = [];
    process.on('warning', (w) => warnings.push({ code: w.code, detail: w.detail }));
    const server = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); }).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const pool = new ResourcePool({ max: 1, ${poolOptions} });
    async function leakOne() {
      const conn = await New('tcp', '127.0.0.1:' + server.address().port, { pool }).get();
      conn.write('forgotten');
    }
    await leakOne();
    // A connection is watched for leaks once it has been out across a whole sweep (about 1 s).
    for (let i = 0; i < 100 && pool.stats().inUse > 0; i++) {
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 20));
    const serverClosed = await new Promise((r) => server.getConnections((e, n) => r(n === 0)));
    console.log(JSON.stringify({ warnings, stats: pool.stats(), serverClosed }));
    server.close();
  `;
  const output = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, NODE_DEBUG: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return JSON.parse(output) as ReturnType<typeof runLeakingChild>;
}

test('E9: a connection dropped while out is noticed: CONNPOOL_LEAK warning, socket closed, slot reclaimed', () => {
  const { warnings: seen, stats, serverClosed } = runLeakingChild('');
  expect(stats).toMatchObject({ inUse: 0, releasing: 0, idle: 0 });
  expect(serverClosed).toBe(true);
  expect(seen).toHaveLength(1);
  expect(seen[0]!.code).toBe('CONNPOOL_LEAK');
  expect(seen[0]!.detail).toContain('traceLeaks: true');
});

test.each([
  ['traceLeaks: true', 'traceLeaks: true', {}],
  ['NODE_DEBUG=connpool', '', { NODE_DEBUG: 'connpool' }],
])('E9: with %s the warning carries the stack of the get() that leaked', (_, options, env) => {
  const { warnings: seen } = runLeakingChild(options, env);
  expect(seen).toHaveLength(1);
  expect(seen[0]!.code).toBe('CONNPOOL_LEAK');
  expect(seen[0]!.detail).toContain('leakOne');
});

test('E9: the slot of a dropped connection comes back in this process too', async () => {
  const pool = new ResourcePool({ max: 1 });
  await (async () => {
    const conn = await New('tcp', server.address, { pool }).get();
    conn.write('forgotten');
  })();
  expect(pool.stats()).toMatchObject({ inUse: 1 });
  for (let i = 0; i < 100 && pool.stats().inUse > 0; i++) {
    await gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await until(() => pool.stats().inUse === 0 && pool.stats().releasing === 0, 'the leak to be reclaimed');
  (await New('tcp', server.address, { pool }).get()).put();
  await drainPool(pool);
});

test('a connection awaiting a reply, reachable only through its own listeners, is not collected', async () => {
  // The reply comes only once the connection is watched for leaks (out across
  // two sweeps, a second apart) and full collections have run.
  let replyNow: (() => void) | undefined;
  const slow = await startServer((socket) =>
    socket.once('data', (data) => {
      replyNow = () => socket.write(data);
    }),
  );
  const pool = new ResourcePool({ max: 1 });
  const reply = (async () => {
    const conn = await New('tcp', slow.address, { pool }).get();
    conn.write('wait for me');
    const chunk = await new Promise<Buffer>((resolve) => conn.once('data', resolve));
    conn.put();
    return String(chunk);
  })();
  // Sweeps at about 1 s (seen) and 2 s (registered); a margin for a loaded machine.
  await new Promise((resolve) => setTimeout(resolve, 3_300));
  await gc();
  await gc();
  expect(replyNow).toBeDefined();
  replyNow!();
  expect(await reply).toBe('wait for me');
  expect(warnings.filter((warning) => (warning as { code?: string }).code === 'CONNPOOL_LEAK')).toHaveLength(0);
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
  await drainPool(pool);
  await slow.close();
}, 60_000);
