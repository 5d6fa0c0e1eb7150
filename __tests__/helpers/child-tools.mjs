// Small tools shared by the child-process scripts of the tests (.mjs, run by node directly).
import { readdirSync, readlinkSync } from 'node:fs';

/** Socket descriptors open in the process, every thread's (they share one table); exact while none opens or closes. */
export function openSocketFds() {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')) n++;
    } catch {
      // Closed while we looked (the directory read's own descriptor among them).
    }
  }
  return n;
}

/** A small seeded generator of numbers in [0, 1): the same seed, the same sequence. */
export function mulberry32(state) {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
