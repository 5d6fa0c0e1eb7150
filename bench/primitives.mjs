// What the building blocks of a checkout cost on this machine, in ns each:
// `node bench/primitives.mjs`. Context for the profile of bench/profile.mjs.
import { Duplex } from 'node:stream';
import pLimit from 'p-limit';
import { gc, median } from './harness.mjs';

const N = 200_000;

async function time(name, body, { reps = 5, ops = N } = {}) {
  const samples = [];
  for (let rep = 0; rep < reps + 1; rep++) {
    gc();
    const start = performance.now();
    await body(ops);
    const ns = ((performance.now() - start) * 1e6) / ops;
    if (rep > 0) samples.push(ns);
  }
  console.log(`${median(samples).toFixed(0).padStart(7)} ns  ${name}`);
}

let last;
const registry = new FinalizationRegistry(() => {});
const tick = () => new Promise((resolve) => setImmediate(resolve));

await time('{} (baseline object)', async (n) => {
  for (let i = 0; i < n; i++) last = { i };
});
await time('new Duplex()', async (n) => {
  for (let i = 0; i < n; i++) last = new Duplex();
});
await time('new Duplex({ autoDestroy: false, emitClose: false })', async (n) => {
  for (let i = 0; i < n; i++) last = new Duplex({ autoDestroy: false, emitClose: false });
});
await time('new WeakRef({}), all in one job (kept alive until the job ends)', async (n) => {
  for (let i = 0; i < n; i++) last = new WeakRef({ i });
});
await time('new WeakRef({}), a macrotask every 1,000', async (n) => {
  for (let i = 0; i < n; i++) {
    last = new WeakRef({ i });
    if (i % 1000 === 999) await tick();
  }
});
await time('{} with a macrotask every 1,000 (baseline for the line above)', async (n) => {
  for (let i = 0; i < n; i++) {
    last = { i };
    if (i % 1000 === 999) await tick();
  }
});
await time('FinalizationRegistry register + unregister', async (n) => {
  for (let i = 0; i < n; i++) {
    const o = { i };
    registry.register(o, i, o);
    registry.unregister(o);
  }
});
await time('await of an async function returning a value', async (n) => {
  const f = async () => 1;
  for (let i = 0; i < n; i++) last = await f();
});
await time('await of a plain value (no async function)', async (n) => {
  for (let i = 0; i < n; i++) last = await i;
});
await time('new Promise + resolve + await', async (n) => {
  for (let i = 0; i < n; i++) last = await new Promise((resolve) => resolve(i));
});
const limit = pLimit(1);
const trivial = async () => {};
await time('p-limit(1) limit(async () => {}), one at a time', async (n) => {
  for (let i = 0; i < n; i++) await limit(trivial);
});
void last;
