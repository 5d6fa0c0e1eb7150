// Installs connpool the ways a user does and compiles a user's code against it.
//
//   node scripts/consumer-check.mjs [--keep] [--no-folder]      (about a minute and a half)
//
// 1. `npm pack`s this package, installs the tarball into a new project with
//    @types/node 20, undici 7, and TypeScript twice (5.9, and the registry's
//    latest), and compiles scripts/consumer/consumer.ts with `strict` and
//    `skipLibCheck: false` with each: the published .d.ts files must compile
//    as a user's would, and the internal constructors must not type-check
//    (its `// @ts-expect-error` lines). consumer.ts must import every export
//    of every entry point (listed by the TypeScript API), so a new export
//    is compiled too.
// 2. Unless --no-folder: copies the tracked files (a fresh clone, no
//    node_modules, no dist/) and checks the README's "Installing from a
//    clone": `npm install <clone>` before anything is built there fails with
//    prepare's message (not `tsc: not found`); after `npm ci` in the clone it
//    installs, and the package imports. Then installs the last commit by a
//    git URL (npm builds it with `prepare`), and imports it.
//
// Needs the npm registry. Temp files go under os.tmpdir(); --keep keeps them.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({ options: { keep: { type: 'boolean', default: false }, 'no-folder': { type: 'boolean', default: false } } });
const work = mkdtempSync(join(os.tmpdir(), 'connpool-consumer-'));
const npmFlags = ['--no-audit', '--no-fund', '--loglevel=error'];
let failures = 0;

function run(command, argv, cwd, options = {}) {
  const result = spawnSync(command, argv, { cwd, encoding: 'utf8', ...options });
  return { status: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
}

function must(command, argv, cwd) {
  const { status, output } = run(command, argv, cwd);
  if (status !== 0) throw new Error(`${command} ${argv.join(' ')} (in ${cwd}) exited with ${status}:\n${output}`);
  return output;
}

function check(ok, what, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) {
    failures++;
    if (detail) console.log(detail.replace(/^/gm, '     '));
  }
}

function project(dir, name) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name, private: true, type: 'module' }, null, 2)}\n`);
}

/** The bin script of an installed TypeScript (an npm alias installs it under another name). */
function tscOf(dir, name) {
  const manifest = JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8'));
  const bin = typeof manifest.bin === 'string' ? manifest.bin : manifest.bin.tsc;
  return { path: join(dir, 'node_modules', name, bin), version: manifest.version };
}

/** The exports of each module consumer.ts imports, and those it leaves out, by TypeScript 5.9's API. */
function missingImports(dir, file) {
  const ts = createRequire(join(dir, 'package.json'))('typescript');
  const config = ts.getParsedCommandLineOfConfigFile(join(dir, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
  const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  const missing = [];
  for (const statement of source.statements) {
    if (!ts.isImportDeclaration(statement)) continue;
    const specifier = statement.moduleSpecifier.text;
    if (specifier !== 'connpool' && !specifier.startsWith('connpool/')) continue;
    const imported = new Set(statement.importClause?.namedBindings?.elements?.map((element) => (element.propertyName ?? element.name).text) ?? []);
    const moduleSymbol = checker.getSymbolAtLocation(statement.moduleSpecifier);
    for (const symbol of checker.getExportsOfModule(moduleSymbol)) {
      if (!imported.has(symbol.name)) missing.push(`${specifier}: ${symbol.name}`);
    }
  }
  return missing;
}

try {
  console.log(`connpool consumer check in ${work}`);
  must('npm', ['run', 'build'], root);
  const packed = JSON.parse(must('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work, ...npmFlags], root));
  const tarball = join(work, packed[0].filename);
  console.log(`packed ${packed[0].filename} (${packed[0].entryCount} files)`);

  const app = join(work, 'app');
  project(app, 'connpool-consumer');
  must(
    'npm',
    ['install', ...npmFlags, tarball, 'typescript@~5.9', 'typescript-latest@npm:typescript@latest', '@types/node@20', 'undici@7'],
    app,
  );
  mkdirSync(join(app, 'src'));
  copyFileSync(join(root, 'scripts', 'consumer', 'consumer.ts'), join(app, 'src', 'consumer.ts'));
  // What the README asks of a TypeScript project, with every strictness flag a user may have on.
  const tsconfig = {
    compilerOptions: {
      target: 'ES2022',
      lib: ['ES2022', 'ESNext.Disposable'],
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      types: ['node'],
      strict: true,
      skipLibCheck: false,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      noEmit: true,
    },
    include: ['src'],
  };
  writeFileSync(join(app, 'tsconfig.json'), `${JSON.stringify(tsconfig, null, 2)}\n`);

  for (const name of ['typescript', 'typescript-latest']) {
    const tsc = tscOf(app, name);
    const { status, output } = run(process.execPath, [tsc.path, '-p', '.'], app);
    check(status === 0, `TypeScript ${tsc.version}: consumer.ts compiles against the packed types (strict, skipLibCheck: false), internal constructors rejected`, output);
  }
  const missing = missingImports(app, join(app, 'src', 'consumer.ts'));
  check(missing.length === 0, 'consumer.ts imports every export of connpool, connpool/http and connpool/undici', `not imported: ${missing.join(', ')}`);

  if (!args['no-folder']) {
    const clone = join(work, 'connpool');
    mkdirSync(clone);
    // What a clone of this working tree would hold: tracked files, and new ones not ignored.
    const tracked = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' })
      .split('\0')
      .filter((file) => file !== '' && existsSync(join(root, file)));
    for (const file of tracked) {
      mkdirSync(dirname(join(clone, file)), { recursive: true });
      copyFileSync(join(root, file), join(clone, file));
    }
    const linked = join(work, 'linked');
    project(linked, 'connpool-from-folder');
    const unbuilt = run('npm', ['install', ...npmFlags, clone], linked);
    check(
      unbuilt.status !== 0 && unbuilt.output.includes('Run `npm ci` in that folder first') && !unbuilt.output.includes('tsc: not found'),
      'npm install <fresh clone> says to run `npm ci` there first',
      unbuilt.output,
    );
    must('npm', ['ci', ...npmFlags], clone);
    const built = run('npm', ['install', ...npmFlags, clone], linked);
    check(built.status === 0, 'after `npm ci` in the clone, npm install <clone> installs it', built.output);
    const imports = (dir) => run(process.execPath, ['--input-type=module', '-e', "const c = await import('connpool'); console.log(typeof c.New, c.connectionLimit() > 0)"], dir);
    const imported = imports(linked);
    check(imported.status === 0 && imported.output.trim() === 'function true', 'the folder install imports', imported.output);

    // A git URL: npm clones the commit, installs its dev dependencies, runs prepare, packs.
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const fromGit = join(work, 'from-git');
    project(fromGit, 'connpool-from-git');
    const cloned = run('npm', ['install', ...npmFlags, `git+file://${root}#${head}`], fromGit);
    const gitImported = cloned.status === 0 ? imports(fromGit) : cloned;
    check(gitImported.status === 0 && gitImported.output.trim() === 'function true', `npm install git+file://…#${head.slice(0, 7)} (the last commit) builds and imports`, gitImported.output);
  }
} catch (error) {
  failures++;
  console.log(`FAIL ${error instanceof Error ? error.message : error}`);
} finally {
  if (args.keep) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
console.log(failures === 0 ? 'consumer check: ok' : `consumer check: ${failures} failure(s)`);
process.exitCode = failures === 0 ? 0 : 1;
