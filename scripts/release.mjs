#!/usr/bin/env node
/**
 * Makes the release tarball a terminal host installs with no compiler and no network:
 *
 *   node scripts/release.mjs [--out DIR]      (npm run release)
 *
 * It holds the compiled bundle (dist/), the bin, the install guide and the systemd unit, and,
 * bundled, the production dependencies as this checkout installed them, with better-sqlite3's
 * native binary built for the Node.js running this script. That binary fits one Node.js major
 * (its ABI), one OS and one CPU, so the tarball says so: its name, `engines`, `os` and `cpu`.
 * Build the release on a host (or container) with the terminals' Node.js major and CPU, after
 * `npm ci` there. No simulator, dev entry, test, bench or TypeScript source is in it.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from './build.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHIPPED = ['dist', 'bin/pos-agent.mjs', 'docs/install.md', 'docs/pos-agent.service'];
const NATIVE = 'node_modules/better-sqlite3';
const BINARY = 'build/Release/better_sqlite3.node';

const fail = (msg) => {
  process.stderr.write(`release: ${msg}\n`);
  process.exit(1);
};

/** `>=22`-style engines: the lowest major this package supports. */
function lowestMajor(range) {
  const m = /^>=\s*(\d+)/.exec(range ?? '');
  return m ? Number(m[1]) : 0;
}

/** Every production package of the lock file that is installed here (relative paths). */
function productionPackages(lock) {
  return Object.entries(lock.packages)
    .filter(([key, meta]) => key && !meta.dev && existsSync(path.join(ROOT, key)))
    .map(([key]) => key);
}

/** Copies the production packages; a nested node_modules comes only through its own entry. */
function copyPackages(keys, stage) {
  for (const key of keys) {
    const from = path.join(ROOT, key);
    cpSync(from, path.join(stage, key), {
      recursive: true,
      dereference: true,
      filter: (src) => !path.relative(from, src).split(path.sep).includes('node_modules'),
    });
  }
}

/**
 * better-sqlite3 as it runs: its binary kept, its C sources, SQLite amalgamation and build
 * intermediates dropped, and its install script removed, since that script compiles (or
 * downloads) a binary and a terminal host can do neither. Its `files` names the binary so that
 * npm packs it.
 */
function trimNative(stage) {
  const dir = path.join(stage, NATIVE);
  const binary = readFileSync(path.join(dir, BINARY));
  for (const d of ['build', 'deps', 'src'])
    rmSync(path.join(dir, d), { recursive: true, force: true });
  mkdirSync(path.dirname(path.join(dir, BINARY)), { recursive: true });
  writeFileSync(path.join(dir, BINARY), binary);
  const pkgFile = path.join(dir, 'package.json');
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  delete pkg.scripts.install;
  pkg.files = ['lib/**', BINARY];
  writeFileSync(pkgFile, JSON.stringify(pkg, null, 2) + '\n');
}

/** The staged driver opens a database under this Node.js, in a child process. */
function checkNative(stage) {
  const probe = `const D = require(${JSON.stringify(path.join(stage, NATIVE))});
    const db = new D(':memory:');
    process.stdout.write(db.prepare('select sqlite_version() v').get().v);`;
  try {
    return execFileSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
  } catch (e) {
    fail(
      `the SQLite driver does not load on this Node.js; run npm ci (or npm rebuild better-sqlite3) first: ${e.message}`,
    );
  }
}

function release(outDir) {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
  const major = Number(process.versions.node.split('.')[0]);
  if (major < lowestMajor(pkg.engines?.node))
    fail(
      `Node.js ${process.versions.node} does not satisfy engines ${pkg.engines.node}: build the release with the Node.js the terminals run`,
    );

  const stage = mkdtempSync(path.join(tmpdir(), 'pos-agent-release-'));
  try {
    for (const f of SHIPPED) cpSync(path.join(ROOT, f), path.join(stage, f), { recursive: true });
    cpSync(path.join(ROOT, 'README.md'), path.join(stage, 'README.md'));
    copyPackages(productionPackages(lock), stage);
    trimNative(stage);
    const sqlite = checkNative(stage);
    const target = {
      node: process.versions.node,
      abi: process.versions.modules,
      platform: process.platform,
      arch: process.arch,
    };
    const manifest = {
      name: pkg.name,
      version: pkg.version,
      description: pkg.description,
      type: pkg.type,
      license: pkg.license,
      private: true,
      // The native binary inside fits this Node.js major, OS and CPU only.
      engines: { node: `>=${major} <${major + 1}` },
      os: [process.platform],
      cpu: [process.arch],
      bin: pkg.bin,
      files: SHIPPED,
      dependencies: pkg.dependencies,
      bundleDependencies: Object.keys(pkg.dependencies),
      posAgentRelease: { ...target, sqlite },
    };
    writeFileSync(path.join(stage, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
    mkdirSync(outDir, { recursive: true });
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--pack-destination', outDir], {
        cwd: stage,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    )[0];
    const name = `${pkg.name}-${pkg.version}-node${major}-${process.platform}-${process.arch}.tgz`;
    const file = path.join(outDir, name);
    renameSync(path.join(outDir, packed.filename), file);
    const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
    return {
      file,
      size: packed.size,
      unpackedSize: packed.unpackedSize,
      entries: packed.entryCount,
      bundled: packed.bundled.length,
      sha256,
      ...target,
      sqlite,
    };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  const major = Number(process.versions.node.split('.')[0]);
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  if (major < lowestMajor(pkg.engines?.node))
    fail(
      `Node.js ${process.versions.node} does not satisfy engines ${pkg.engines.node}: build the release with the Node.js the terminals run`,
    );
  await build({ force: true, quiet: true });
  const r = release(path.resolve(values.out ?? path.join(ROOT, 'release')));
  process.stdout.write(JSON.stringify(r, null, 2) + '\n');
}
