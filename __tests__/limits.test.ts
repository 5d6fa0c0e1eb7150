import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connectionLimit, getResourcePool } from '../lib/index.js';
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
