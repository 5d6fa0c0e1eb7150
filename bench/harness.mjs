// Timing: interleaved repetitions, medians, a forced GC before each sample.
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
/** A full GC, so that one subject's garbage is not collected on the next one's time. */
export const gc = globalThis.gc ?? runInNewContext('gc');

/**
 * Lets the event loop turn, then collects garbage. The turn matters: objects
 * given to `new WeakRef()` stay alive until the current job ends, and a loop
 * of `await`s on settled promises never ends its job, so without it a subject
 * could leave the next one a heap full of objects no GC can free.
 */
export async function settle() {
  await new Promise((resolve) => setImmediate(resolve));
  gc();
}

/** Progress goes to stderr; stdout carries only the table and the JSON lines. */
export function log(...args) {
  process.stderr.write(`${args.join(' ')}\n`);
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Measures each subject `reps` times, interleaved (A, B, C, A, B, C, ...),
 * after one untimed warm-up run each.
 *
 * A subject is `{ name, ops, warmupOps?, run(ops), before?(), after?() }`:
 * `run` does `ops` operations (or moves `ops` bytes) and resolves when done.
 * Each sample is `ops / seconds`. `before` and `after`, when given, run
 * around every `run` (warm-up included), untimed: to set up and tear down
 * what each run must start from afresh.
 *
 * With `slices` > 1, each repetition runs every subject's `ops` in that many
 * slices, interleaved slice by slice (A1, B1, A2, B2, ...), and a sample is
 * its total ops over its total time: subjects then see the same machine
 * weather even when it changes within a second (for I/O-bound figures).
 *
 * With `alternate`, every other slice (or repetition, without slices) runs
 * the subjects in reverse order (A, B, B, A, ...), so that no subject always
 * runs right after the same other one: on a busy machine, whatever a subject
 * leaves behind (garbage, sockets closing, a server catching up) is then paid
 * by each in turn.
 *
 * @returns {Promise<Array<{ name: string, samples: number[], median: number }>>}
 */
export async function interleave(figure, subjects, reps, { slices = 1, alternate = false } = {}) {
  for (const subject of subjects) {
    log(`  ${figure}: warm-up ${subject.name}`);
    await subject.before?.();
    await subject.run(subject.warmupOps ?? subject.ops);
    await subject.after?.();
  }
  const samples = subjects.map(() => []);
  for (let rep = 0; rep < reps; rep++) {
    const elapsed = subjects.map(() => 0);
    const sliceOps = subjects.map((subject) => Math.max(1, Math.round(subject.ops / slices)));
    if (slices > 1) await settle();
    for (let slice = 0; slice < slices; slice++) {
      const reversed = alternate && (slices > 1 ? slice : rep) % 2 === 1;
      for (const i of reversed ? [...subjects.keys()].reverse() : subjects.keys()) {
        const subject = subjects[i];
        await subject.before?.();
        if (slices === 1) await settle();
        const start = performance.now();
        await subject.run(sliceOps[i]);
        elapsed[i] += performance.now() - start;
        await subject.after?.();
      }
    }
    for (const i of subjects.keys()) samples[i].push((sliceOps[i] * slices) / (elapsed[i] / 1000));
    log(`  ${figure}: rep ${rep + 1}/${reps} ${subjects.map((s, i) => `${s.name}=${si(samples[i].at(-1))}`).join(' ')}`);
  }
  return subjects.map((subject, i) => ({ name: subject.name, samples: samples[i], median: median(samples[i]) }));
}

/** 1234567 -> "1.23M" */
export function si(value) {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${(value / 1e9).toFixed(2)}G`;
  if (abs >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (abs >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  if (abs >= 1e3) return `${(value / 1e3).toFixed(2)}k`;
  return value.toFixed(value >= 100 ? 0 : 1);
}

/** Runs `count` async jobs with at most `width` in flight. */
export async function inBatches(count, width, job) {
  let next = 0;
  const lane = async () => {
    while (next < count) await job(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, lane));
}

/** Resolves once `predicate()` holds, polling every few ms; rejects after `timeoutMs`. */
export async function until(predicate, what, timeoutMs = 30_000) {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
