/**
 * A seeded random workload through the HTTP adapters: requests through
 * HttpAgent and HttpsAgent, each let go of at a random moment (destroyed at
 * once, on its socket, on its response, mid-body, by its signal or its
 * timeout) or read to the end, some seeds destroying an agent mid-run. See
 * helpers/http-workload-child.mjs for what one seed does and checks: every
 * request closes once, nothing escapes to the process, never more than max
 * sockets, and nothing left in use, waiting or open at the end.
 *
 * Seeds: FUZZ_SEED (default 1) and the FUZZ_RUNS seeds from it (default 4
 * with no FUZZ_SEED, 1 with one). Replay a failing seed with
 *   FUZZ_SEED=<seed> npm test -- __tests__/http-workload.test.ts
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runWorkloadSeed } from './helpers/child.js';
import { fuzzSeeds } from './helpers/fuzz-options.js';
import { startHttpServers, type HttpServers } from './helpers/http-servers.js';
import { makeCerts } from './helpers/servers.js';

const seeds = fuzzSeeds();

let servers: HttpServers;
let dir: string;
let caPath: string;

beforeAll(async () => {
  const certs = makeCerts();
  servers = await startHttpServers(certs);
  dir = mkdtempSync(join(tmpdir(), 'connpool-http-workload-'));
  caPath = join(dir, 'ca.pem');
  writeFileSync(caPath, certs.ca);
});

afterAll(async () => {
  await servers.close();
  rmSync(dir, { recursive: true, force: true });
});

test.each(seeds)(
  'HTTP adapters, seeded workload %i: requests destroyed at random moments each close once, nothing escapes, never more than max, nothing left',
  (seed) => runWorkloadSeed('http-workload-child.mjs', seed, '__tests__/http-workload.test.ts', [String(servers.ports.http), String(servers.ports.https), caPath]),
  120_000,
);
