// Node's own tests for the installed Node major, taken from Debian's source
// package (the `.orig` tarball carries test/common, test/fixtures and
// test/parallel) and cached; nothing of it is committed.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';

/**
 * One source tarball per supported Node major. The sha256 is checked before
 * anything is extracted; a new entry needs its hash computed from a download.
 */
export const SOURCES = {
  20: {
    version: '20.19.2',
    url: 'http://deb.debian.org/debian/pool/main/n/nodejs/nodejs_20.19.2+dfsg.orig.tar.xz',
    // snapshot.debian.org keeps every file by its sha1 for good: the way in
    // once the pool has moved on to a newer upload.
    fallbackUrls: ['https://snapshot.debian.org/file/7ed7a340dc165334953d0a57eb4c2600e4d3081a'],
    sha256: '5e5559381ad031d245a8efa403458abbb73755f74c3e6380f185a4dd342b7949',
    topDir: 'node-v20.19.2',
  },
};

export function sourceFor(nodeVersion = process.versions.node) {
  const major = Number(nodeVersion.split('.')[0]);
  return SOURCES[major] ?? null;
}

async function sha256Of(file) {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

async function download(url, file, log) {
  log(`downloading ${url}`);
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`GET ${url}: HTTP ${res.status}`);
  await pipeline(Readable.fromWeb(res.body), createWriteStream(file));
}

/**
 * Returns the directory holding `test/` for `source`, downloading and
 * extracting it into `cacheDir` the first time. Safe to call from several
 * processes at once: each extracts into a directory of its own and the first
 * rename wins.
 */
export async function ensureNodeTests(source, cacheDir, log = console.error) {
  const root = path.join(cacheDir, source.topDir);
  const marker = path.join(root, '.complete');
  if (existsSync(marker)) return root;

  await mkdir(cacheDir, { recursive: true });
  const work = await mkdtemp(path.join(cacheDir, '.work-'));
  try {
    let tarball = process.env.CONNPOOL_CONFORMANCE_TARBALL;
    if (!tarball) {
      tarball = path.join(work, path.basename(new URL(source.url).pathname));
      const failures = [];
      for (const url of [source.url, ...(source.fallbackUrls ?? [])]) {
        try {
          await download(url, tarball, log);
          failures.length = 0;
          break;
        } catch (err) {
          failures.push(`${url}: ${err.cause?.message ?? err.message}`);
        }
      }
      if (failures.length > 0) throw new Error(`download failed:\n  ${failures.join('\n  ')}`);
    }
    const actual = await sha256Of(tarball);
    if (actual !== source.sha256) {
      throw new Error(`${tarball}: sha256 ${actual}, expected ${source.sha256}`);
    }
    const dirs = ['common', 'fixtures', 'parallel'].map((d) => `${source.topDir}/test/${d}`);
    const tar = spawnSync('tar', ['-xJf', tarball, '-C', work, ...dirs], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (tar.error || tar.status !== 0) {
      throw new Error(`tar -xJf ${tarball} failed (tar and xz are needed): ${tar.error?.message ?? `exit ${tar.status}`}`);
    }
    await writeFile(path.join(work, source.topDir, '.complete'), `${source.url}\n${source.sha256}\n`);
    try {
      await rename(path.join(work, source.topDir), root);
    } catch (err) {
      if (!existsSync(marker)) throw err;
    }
    return root;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
