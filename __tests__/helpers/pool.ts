import type { ResourcePool } from '../../lib/index.js';

/** Closes every idle socket of `pool`: fills all its slots with throwaway resources (evicting), then frees them. */
export async function drainPool(pool: ResourcePool): Promise<void> {
  const fillers = Array.from({ length: pool.max }, () => pool.create({ allocate: () => {}, release: () => {} }));
  await Promise.all(fillers.map((filler) => filler.get()));
  await Promise.all(fillers.map((filler) => filler.release()));
}
