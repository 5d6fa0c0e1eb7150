/**
 * Sharing the budget: connections take slots of the process-wide pool from
 * `getResourcePool()`, whose `max` fits the file-descriptor limit. Another
 * package that opens descriptors of its own (here: files, with
 * `fs.promises.open`) joins the same budget with `create({ allocate, release })`.
 * `get()` takes a slot and allocates, `put()` keeps the file open for the
 * next `get()` (an idle resource, like an idle socket), `release()` closes it
 * and frees the slot. `stats()` shows both kinds side by side.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout } from 'node:timers/promises';
import { getResourcePool, New } from 'connpool';
import { roundTrip, startEchoServer } from './support/servers.js';

const pool = getResourcePool();
const show = (when: string): void => {
  const { max, inUse, idle, releasing, waiting } = pool.stats();
  console.log(`${when.padEnd(34)} inUse=${inUse} idle=${idle} releasing=${releasing} waiting=${waiting} (max ${max})`);
};

/** A file opened through the shared pool: opening it takes one of the pool's slots. */
function pooledFile(path: string) {
  let handle: FileHandle | undefined;
  let opens = 0;
  const resource = pool.create({
    async allocate() {
      handle = await open(path, 'r');
      opens++;
    },
    async release() {
      await handle?.close();
      handle = undefined;
    },
  });
  return {
    resource,
    get opens() {
      return opens;
    },
    async read(): Promise<string> {
      const { buffer, bytesRead } = await handle!.read({ buffer: Buffer.alloc(64), position: 0 });
      return buffer.toString('utf8', 0, bytesRead);
    },
  };
}

const dir = mkdtempSync(join(tmpdir(), 'connpool-budget-'));
try {
  writeFileSync(join(dir, 'motd.txt'), 'hello from a pooled file');
  await using server = await startEchoServer();
  const res = New('tcp', server.address);
  const file = pooledFile(join(dir, 'motd.txt'));

  show('start');
  for (let i = 1; i <= 2; i++) {
    await using conn = await res.get(AbortSignal.timeout(2_000));
    await file.resource.get(AbortSignal.timeout(2_000));
    try {
      await roundTrip(conn, `ping ${i}`);
      console.log(`pass ${i}: echoed "ping ${i}", read ${JSON.stringify(await file.read())}`);
      show(`pass ${i}: connection and file in use`);
    } catch (error) {
      await conn.close();
      await file.resource.release();
      throw error;
    }
    file.resource.put();
    conn.put();
    show(`pass ${i}: both put, kept open`);
  }

  await file.resource.release();
  res.scheduleClose();
  while (pool.stats().idle + pool.stats().releasing > 0) await setTimeout(1);
  show('file released, connection closed');
  console.log(`the file was opened ${file.opens} time(s) and the server accepted ${server.accepted} connection(s) for 2 passes`);
  if (file.opens !== 1 || server.accepted !== 1 || pool.stats().idle !== 0) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
