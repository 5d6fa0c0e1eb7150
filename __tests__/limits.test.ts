import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { connectionLimit, getResourcePool } from '../lib/index.js';
import { runModule } from './helpers/child.js';
import { distIndex } from './helpers/dist.js';

const limitOf = (soft: number): number => Math.max(1, Math.floor((soft - 50) / 100) * 100);

test('S11: connectionLimit() is the soft RLIMIT_NOFILE minus 50, rounded down to a multiple of 100', () => {
  const soft = Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'latin1'))![1]);
  expect(connectionLimit()).toBe(limitOf(soft));
});

test('S11: the global pool is made on first use with max = connectionLimit()', () => {
  expect(getResourcePool()).toBe(getResourcePool());
  expect(getResourcePool().stats().max).toBe(connectionLimit());
});

test.each([
  [256, 200],
  [1024, 900],
  [150, 100],
  [149, 1],
  [120, 1],
  [100, 1],
  [64, 1],
])('S11: a process started under ulimit -n %i gets connectionLimit() %i', (ulimit, expected) => {
  const output = execFileSync(
    '/bin/sh',
    ['-c', `ulimit -n ${ulimit} && exec "$0" --input-type=module -e "$1"`, process.execPath, CHILD],
    { encoding: 'utf8' },
  );
  expect(Number(output.trim())).toBe(expected);
});

const CHILD = `import { connectionLimit } from ${JSON.stringify(distIndex)}; console.log(connectionLimit());`;

test('S11: under ulimit -n 100 the global pool holds one connection at a time: a second address closes the first one idle (README, low limits)', async () => {
  const script = `
    import net from 'node:net';
    const { New, getResourcePool } = await import(${JSON.stringify(pathToFileURL(distIndex).href)});
    const listen = () => new Promise((resolve) => { const server = net.createServer((s) => s.pipe(s)); server.listen(0, '127.0.0.1', () => resolve(server)); });
    const [a, b] = [await listen(), await listen()];
    const first = await New('tcp', '127.0.0.1:' + a.address().port).get();
    const second = New('tcp', '127.0.0.1:' + b.address().port).get(AbortSignal.timeout(200)).then(() => 'got', (error) => error.code);
    const whileHeld = await second;
    first.put();
    const afterPut = await New('tcp', '127.0.0.1:' + b.address().port).get();
    afterPut.put();
    const { max, dials, evictions, idle } = getResourcePool().stats();
    await getResourcePool().close();
    a.close(); b.close();
    console.log(JSON.stringify({ max, whileHeld, dials, evictions, idle }));
  `;
  const result = await runModule<Record<string, unknown>>(script, [], { ulimit: 100 });
  expect(result).toEqual({ max: 1, whileHeld: 'ERR_RESOURCE_LIMIT_EXCEEDED', dials: 2, evictions: 1, idle: 1 });
});
