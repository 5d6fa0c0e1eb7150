// The cases of __tests__/regressions.test.ts that jest cannot observe in its
// own process: exceptions thrown from stream internals on a later tick,
// unhandled rejections, garbage collection, a process out of descriptors.
// One scenario per process: argv[2] names it. Prints one JSON line with what
// it saw; `crashes` lists every uncaught exception and unhandled rejection
// (recorded instead of killing the process, so the report still comes out).
//
// The package is imported first, before any scenario runs (S11 needs that).
import { openSync, closeSync } from 'node:fs';
import net from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectionLimit, getResourcePool, New, ResourcePool } from '../../dist/index.js';

const crashes = [];
process.on('uncaughtException', (error) => crashes.push(`uncaught ${error?.code ?? ''} ${error?.message ?? error}`));
process.on('unhandledRejection', (reason) => crashes.push(`unhandled rejection ${reason?.code ?? ''} ${reason?.message ?? reason}`));

/** A TCP server on 127.0.0.1, port 0, that counts the connections it has open. */
async function serve(onConnection = () => {}) {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${server.address().port}`,
    /** The connections the server still has open, once the pool's closes have reached it (or after a while). */
    async open() {
      const count = () => new Promise((resolve) => server.getConnections((_error, n) => resolve(n)));
      for (let i = 0; i < 100 && (await count()) > 0; i++) await sleep(10);
      return count();
    },
  };
}

/** 'closed' once `pool.close()` resolves, or 'pending' if it is still pending after a generous wait. */
function closeOutcome(pool, ms = 2_000) {
  return Promise.race([pool.close().then(() => 'closed'), sleep(ms, 'pending')]);
}

function errorOf(error) {
  return { name: error?.name, code: error?.code, message: String(error?.message ?? error) };
}

const scenarios = {
  /** E9 (repro 2): connections dropped after reading to EOF, or after setTimeout(n) then setTimeout(0). */
  async leaks() {
    const warnings = [];
    process.on('warning', (warning) => warnings.push(warning.code ?? warning.name));
    const byeServer = await serve((socket) => socket.on('data', () => socket.end('bye\n')));
    const echoServer = await serve((socket) => socket.pipe(socket));
    const eofPool = new ResourcePool({ max: 1, name: 'eof' });
    const timeoutPool = new ResourcePool({ max: 1, name: 'timeout' });
    let received = '';
    await (async () => {
      // Half-open, so that it stays out after EOF (by default it would close itself, E14).
      const conn = await New('tcp', byeServer.address, { pool: eofPool, allowHalfOpen: true }).get();
      conn.write('hi\n');
      for await (const chunk of conn) received += chunk;
    })();
    await (async () => {
      const conn = await New('tcp', echoServer.address, { pool: timeoutPool }).get();
      conn.setTimeout(60_000);
      conn.setTimeout(0);
      conn.write('forgotten');
    })();
    // A connection is watched once it has been out across a whole leak sweep (1 s); then collected.
    const isOut = () => eofPool.stats().inUse + timeoutPool.stats().inUse > 0;
    for (let i = 0; i < 50 && isOut(); i++) {
      globalThis.gc();
      await sleep(100);
    }
    await sleep(20);
    const stats = { eof: eofPool.stats(), timeout: timeoutPool.stats() };
    const closed = { eof: await closeOutcome(eofPool, 1_000), timeout: await closeOutcome(timeoutPool, 1_000) };
    const serverOpen = { eof: await byeServer.open(), timeout: await echoServer.open() };
    return { crashes, received, warnings, stats, closed, serverOpen };
  },

  /** E10 (repro 3): a flowing connection closed: nothing thrown on a later tick. */
  async resumeThenClose() {
    return flowingThenClose((conn) => conn.resume());
  },

  /** E10 (repro 3): a piped connection closed: nothing thrown on a later tick. */
  async pipeThenClose() {
    return flowingThenClose((conn) => conn.pipe(new PassThrough()).resume());
  },

  /** E10 (repro 3b): a connection piped to a slow sink and put(): the sink's later 'drain' must not resume it. */
  async pipeDrainAfterPut() {
    const server = await serve((socket) => socket.on('data', () => socket.write('reply')));
    const pool = new ResourcePool({ max: 1 });
    const conn = await New('tcp', server.address, { pool }).get();
    let sunk = '';
    const sink = new Writable({
      highWaterMark: 1,
      write(chunk, _encoding, callback) {
        sunk += chunk;
        setTimeout(callback, 50);
      },
    });
    conn.pipe(sink);
    conn.write('req');
    for (let i = 0; i < 100 && sunk === ''; i++) await sleep(5);
    conn.put();
    await sleep(300); // the sink drains meanwhile
    const stats = pool.stats();
    const closed = await closeOutcome(pool);
    return { crashes, sunk, stats, closed, serverOpen: await server.open() };
  },

  /** E12 (repro 8): `{ aborted: false }` as the signal, nothing waiting, to a port that refuses. */
  async nonAbortSignalUncontended() {
    const refusing = net.createServer();
    await new Promise((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${refusing.address().port}`;
    await new Promise((resolve) => refusing.close(resolve));
    const pool = new ResourcePool({ max: 1 });
    const res = New('tcp', address, { pool });
    const first = await res.get({ aborted: false }).then(
      (conn) => (conn.put(), 'resolved'),
      (error) => errorOf(error),
    );
    const statsAfter = pool.stats();
    await sleep(200); // an abandoned dial would fail meanwhile
    const again = await res.get().then(
      (conn) => (conn.put(), 'resolved'),
      (error) => errorOf(error),
    );
    const stats = pool.stats();
    const closed = await closeOutcome(pool);
    return { crashes, first, statsAfter, again, stats, closed };
  },

  /** S11 (repro 11): under `ulimit -n 256`, every descriptor taken after connpool was imported. */
  async limitUnderExhaustion() {
    const held = [];
    let why = '';
    try {
      for (;;) held.push(openSync('/dev/null', 'r'));
    } catch (error) {
      why = error.code;
    }
    const seen = { opened: held.length, why, connectionLimit: connectionLimit(), globalMax: getResourcePool().max };
    for (const fd of held) closeSync(fd);
    return seen;
  },
};

async function flowingThenClose(startFlowing) {
  const server = await serve((socket) => socket.write('hello'));
  const pool = new ResourcePool({ max: 1 });
  const res = New('tcp', server.address, { pool });
  const conn = await res.get();
  startFlowing(conn);
  await conn.close();
  await sleep(200); // later ticks of the stream machinery
  const stats = pool.stats();
  const again = await res.get().then(
    (next) => (next.put(), 'resolved'),
    (error) => errorOf(error),
  );
  const closed = await closeOutcome(pool);
  return { crashes, stats, again, closed, serverOpen: await server.open() };
}

const scenario = scenarios[process.argv[2]];
// A scenario that hangs reports so instead of leaving the test to time out.
const watchdog = setTimeout(() => {
  console.log(JSON.stringify({ hung: true, crashes }));
  process.exit(0);
}, 10_000);
const result = await scenario();
clearTimeout(watchdog);
console.log(JSON.stringify(result));
process.exit(0);
