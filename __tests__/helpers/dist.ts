import { fileURLToPath } from 'node:url';

/** The built package, for child processes (npm test builds it first). */
export const distIndex = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
