// Compiles and runs every ts/js code block of README.md against the built
// package, so that the README's examples cannot drift from the code.
//
//   node scripts/readme-check.mjs [--keep] [--readme FILE]      (npm run build first; about 15 s)
//
// Each ```ts block is type-checked (strict, as the README's Requirements ask:
// target ES2022, lib ES2022 + ESNext.Disposable, module NodeNext) against
// dist/ through the package's own name (`import ... from 'connpool'`), then
// run with node; each ```js block is run as an ES module. A block passes if
// it compiles and its run exits with 0 within 30 s.
//
// The blocks talk to made-up hosts under `.internal`; the check points them
// at servers of its own on 127.0.0.1, by this convention:
//   `http://NAME.internal`, `https://NAME.internal`  an HTTP / HTTPS server
//   `stalled.internal:PORT`                          accepts, never answers
//   `NAME.internal:443`                              a TLS echo server
//   `NAME.internal:PORT` (any other port)            a TCP echo server
//   `host: 'NAME.internal', port: PORT`               the same, in connect options
// TLS servers' certificates chain to `ca.pem`, and `data.bin` exists: both in
// the blocks' working directory. A block that cannot run at all says so with
// a comment in it, `// readme-check: skip (why)`; it is listed, never run.
//
// KNOWN_FAILING lists the blocks, by section heading, known not to pass yet
// (with why): they are checked and reported, and do not fail the check.
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { basename, dirname, join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeCertificates } from '../bench/certs.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({ options: { keep: { type: 'boolean', default: false }, readme: { type: 'string', default: join(root, 'README.md') } } });
const readmeName = basename(args.readme);

const KNOWN_FAILING = {};

/** The ts/js blocks of the README, with the heading above each and the README line of its first code line. */
function blocksOf(markdown) {
  const blocks = [];
  const lines = markdown.split('\n');
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\w*)\s*$/.exec(lines[i]);
    if (fence === null) {
      if (/^#{1,6} /.test(lines[i])) heading = lines[i].trim();
      continue;
    }
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++;
    const lang = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js', mjs: 'js' }[fence[1]];
    if (lang !== undefined) blocks.push({ lang, heading, line: start + 1, code: lines.slice(start, end).join('\n') });
    i = end;
  }
  return blocks;
}

/** Points the `.internal` hosts of `code` at the local servers (same line count). */
function localize(code, ports) {
  return code
    .replace(/\b(https?):\/\/[a-z0-9-]+\.internal(?::\d+)?/g, (_, scheme) => `${scheme}://127.0.0.1:${ports[scheme]}`)
    .replace(/\b([a-z0-9-]+)\.internal:(\d+)/g, (_, name, port) => `127.0.0.1:${ports[serverFor(name, port)]}`)
    .replace(/host: '([a-z0-9-]+)\.internal', port: (\d+)/g, (_, name, port) => `host: '127.0.0.1', port: ${ports[serverFor(name, port)]}`);
}

/** Which local server a made-up `NAME.internal:PORT` stands for. */
function serverFor(name, port) {
  return name === 'stalled' ? 'stalled' : port === '443' ? 'tlsEcho' : 'echo';
}

async function startServers(credentials) {
  const sockets = new Set();
  const track = (server) => {
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
  };
  const answer = (req, res) => {
    req.resume();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ok: true, path: req.url }));
  };
  const servers = {
    echo: await track(net.createServer((socket) => socket.pipe(socket))),
    stalled: await track(net.createServer(() => {})),
    tlsEcho: await track(tls.createServer({ key: credentials.key, cert: credentials.cert }, (socket) => socket.pipe(socket))),
    http: await track(http.createServer(answer)),
    https: await track(https.createServer({ key: credentials.key, cert: credentials.cert }, answer)),
  };
  const ports = Object.fromEntries(Object.entries(servers).map(([kind, server]) => [kind, server.address().port]));
  const close = () => {
    for (const socket of sockets) socket.destroy();
    return Promise.all(Object.values(servers).map((server) => new Promise((resolve) => server.close(resolve))));
  };
  return { ports, close };
}

// Inside the package folder, so that `import 'connpool'` resolves to dist/ by the package's own name.
const work = join(root, '.scratch', 'readme-check');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const credentials = makeCertificates();
writeFileSync(join(work, 'ca.pem'), credentials.ca);
writeFileSync(join(work, 'data.bin'), 'connpool README check\n');
const { ports, close } = await startServers(credentials);

let failures = 0;
try {
  const blocks = blocksOf(readFileSync(args.readme, 'utf8')).map((block, index) => {
    const name = `block-${String(index + 1).padStart(2, '0')}`;
    const skip = /\/\/ readme-check: skip\b(.*)/.exec(block.code)?.[1]?.trim();
    return { ...block, name, skip, errors: [], run: undefined };
  });
  for (const block of blocks) {
    const source = localize(block.code, ports);
    // `export {}` keeps each block a module of its own (its names, its top-level await).
    if (block.lang === 'ts') writeFileSync(join(work, `${block.name}.ts`), `${source}\nexport {};\n`);
    else writeFileSync(join(work, `${block.name}.mjs`), source);
  }
  const tsconfig = {
    compilerOptions: {
      target: 'ES2022',
      lib: ['ES2022', 'ESNext.Disposable'],
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      types: ['node'],
      strict: true,
      skipLibCheck: true,
      rootDir: '.',
      outDir: 'out',
    },
    files: blocks.filter((block) => block.lang === 'ts' && block.skip === undefined).map((block) => `${block.name}.ts`),
  };
  writeFileSync(join(work, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.', '--pretty', 'false'], {
    cwd: work,
    encoding: 'utf8',
  });
  for (const match of tsc.stdout.matchAll(/^(block-\d+)\.ts\((\d+),(\d+)\): error (TS\d+): (.*)$/gm)) {
    const block = blocks.find((candidate) => candidate.name === match[1]);
    block.errors.push(`${readmeName}:${block.line + Number(match[2]) - 1}:${match[3]} ${match[4]}: ${match[5]}`);
  }
  if (tsc.status !== 0 && !blocks.some((block) => block.errors.length > 0)) throw new Error(`tsc failed:\n${tsc.stdout}${tsc.stderr}`);

  for (const block of blocks) {
    if (block.skip !== undefined || block.errors.length > 0) continue;
    const file = block.lang === 'ts' ? join(work, 'out', `${block.name}.js`) : join(work, `${block.name}.mjs`);
    // Asynchronously: the servers answer from this process's event loop.
    block.run = await new Promise((resolve) => {
      execFile(process.execPath, [file], { cwd: work, encoding: 'utf8', timeout: 30_000 }, (error, stdout, stderr) => {
        resolve({ status: error === null ? 0 : (error.code ?? 1), signal: error?.signal ?? null, output: `${stdout}${stderr}`.trim() });
      });
    });
  }

  for (const block of blocks) {
    const where = `${readmeName}:${block.line} (${block.lang}, ${block.heading})`;
    if (block.skip !== undefined) {
      console.log(`skip ${where}: ${block.skip}`);
      continue;
    }
    const passed = block.errors.length === 0 && block.run?.status === 0;
    const detail = block.errors.length > 0 ? block.errors.join('\n') : `exit ${block.run.status ?? block.run.signal}\n${block.run.output}`;
    const known = KNOWN_FAILING[block.heading];
    if (passed) {
      console.log(`ok   ${where}`);
      if (known !== undefined) console.log(`     note: listed in KNOWN_FAILING but passes: remove it from scripts/readme-check.mjs`);
    } else if (known !== undefined) {
      console.log(`known failure ${where}: ${known}\n${detail.replace(/^/gm, '     ')}`);
    } else {
      failures++;
      console.log(`FAIL ${where}\n${detail.replace(/^/gm, '     ')}`);
    }
  }
  const stale = Object.keys(KNOWN_FAILING).filter((heading) => !blocks.some((block) => block.heading === heading));
  for (const heading of stale) console.log(`note: KNOWN_FAILING lists "${heading}", which heads no block any more`);
  console.log(failures === 0 ? `readme check: ok (${blocks.length} blocks)` : `readme check: ${failures} failure(s)`);
} finally {
  await close();
  if (!args.keep) rmSync(work, { recursive: true, force: true });
}
process.exitCode = failures === 0 ? 0 : 1;
