import { fileURLToPath } from 'node:url';

/** The built package, for child processes (npm test builds it first). */
export const distIndex = fileURLToPath(new URL('../../dist/index.js', import.meta.url));

/** The built `connpool/undici` subpath, for child processes. */
export const distUndici = fileURLToPath(new URL('../../dist/undici/index.js', import.meta.url));
