// The built package, for child scripts run by the tests (npm test builds it first).
import { fileURLToPath } from 'node:url';
export const distIndex = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
