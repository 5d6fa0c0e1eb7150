/**
 * A worker whose parent never loaded connpool cannot share the process's
 * budget: it must say so (CONNPOOL_BUDGET), once, when its global pool is
 * first used. The parent here is a fresh node process that never imports
 * connpool (jest's own process has loaded it, so its workers would share).
 */
import { pathToFileURL } from 'node:url';
import { runModule } from './helpers/child.js';
import { distIndex } from './helpers/dist.js';

interface Report {
  warnings: { code: string; message: string }[];
  max: number;
  limit: number;
}

/** Starts `workers` workers that use the global pool twice each; `parentLoads`: whether the parent imports connpool first. */
function script(parentLoads: boolean, workers: number): string {
  const dist = JSON.stringify(pathToFileURL(distIndex).href);
  const worker = `
    const { parentPort } = await import('node:worker_threads');
    const warnings = [];
    process.on('warning', (warning) => warnings.push({ code: warning.code, message: warning.message }));
    const { connectionLimit, getResourcePool } = await import(${dist});
    const max = getResourcePool().stats().max;
    getResourcePool();
    await new Promise((resolve) => setImmediate(resolve));
    parentPort.postMessage({ warnings, max, limit: connectionLimit() });
  `;
  return `
    import { Worker } from 'node:worker_threads';
    ${parentLoads ? `await import(${dist});` : ''}
    const reports = await Promise.all(Array.from({ length: ${workers} }, () => new Promise((resolve, reject) => {
      const worker = new Worker(${JSON.stringify(worker)}, { eval: true });
      worker.once('message', resolve);
      worker.once('error', reject);
    })));
    console.log(JSON.stringify(reports));
  `;
}

test('a worker started by a thread that never loaded connpool warns CONNPOOL_BUDGET once, when its global pool is first used', async () => {
  const reports = await runModule<Report[]>(script(false, 2));
  expect(reports).toHaveLength(2);
  for (const report of reports) {
    expect(report.warnings.map((warning) => warning.code)).toEqual(['CONNPOOL_BUDGET']);
    expect(report.warnings[0]!.message).toContain(`has a budget of its own (max ${report.limit})`);
    expect(report.warnings[0]!.message).toContain("import 'connpool' in the parent");
  }
});

test('a worker started after its parent loaded connpool shares the budget and does not warn', async () => {
  const reports = await runModule<Report[]>(script(true, 2));
  expect(reports.map((report) => report.warnings)).toEqual([[], []]);
});
