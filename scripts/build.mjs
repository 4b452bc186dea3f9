#!/usr/bin/env node
/**
 * Builds the shipped code: agent/cli/main.ts and everything it reaches (agent, protocol,
 * storage, base; never simulator, dev, bench or test) bundled by esbuild into dist/ as ES
 * modules, with the plain-JavaScript dependencies it imports (zod, pino, protobufjs) bundled in:
 * loading them as a few files instead of hundreds of package modules took about 60 ms and 6 MB
 * off every start, and the release no longer carries them (they are development dependencies).
 * What stays in node_modules: the native packages (better-sqlite3, serialport and its
 * @serialport/* parts) and node-cron, which the agent loads only when it schedules (a lazy
 * require, scheduler.ts), after it is ready.
 *
 *   node scripts/build.mjs            build unless dist/ already matches the sources
 *   node scripts/build.mjs --force    build anyway
 *
 * `npm install` runs it (prepare), so does `npm pack`, and the test suite's global set-up, so
 * tests that spawn bin/pos-agent.mjs run what ships. In an unpacked release there are no
 * sources: dist/ came in the tarball and there is nothing to do.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = path.join(ROOT, 'agent', 'cli', 'main.ts');
const DIST = path.join(ROOT, 'dist');
const STAMP = path.join(DIST, 'build.json');
const RUNTIME_DIRS = ['base', 'storage', 'protocol', 'agent'];
/** Loaded from node_modules at run time, never bundled: native code, or required lazily. */
const UNBUNDLED_PACKAGES = ['better-sqlite3', 'serialport', '@serialport/*', 'node-cron'];

/** Hash of every input of the bundle, so an unchanged tree is not rebuilt. */
function sourceHash() {
  const h = createHash('sha256');
  const walk = (dir) => {
    const entries = readdirSync(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|js|mjs|json)$/.test(e.name))
        h.update(path.relative(ROOT, p)).update(readFileSync(p));
    }
  };
  for (const d of RUNTIME_DIRS) walk(path.join(ROOT, d));
  for (const f of ['tsconfig.json', 'tsconfig.build.json', 'scripts/build.mjs'])
    h.update(f).update(readFileSync(path.join(ROOT, f)));
  return h.digest('hex').slice(0, 20);
}

function upToDate(hash) {
  try {
    return JSON.parse(readFileSync(STAMP, 'utf8')).sourceHash === hash;
  } catch {
    return false;
  }
}

export async function build({ force = false, quiet = false } = {}) {
  if (!existsSync(ENTRY)) return { built: false, reason: 'no sources (an unpacked release)' };
  const hash = sourceHash();
  if (!force && upToDate(hash)) return { built: false, reason: 'up to date' };
  const esbuild = await import('esbuild').catch(() => {
    throw new Error(
      'esbuild, a development dependency, is missing: a checkout installs with them (npm ci); a terminal installs the release tarball (docs/install.md), which needs no build',
    );
  });
  // Built beside dist/ and swapped in whole, so a process starting meanwhile never sees half.
  const tmp = `${DIST}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: { main: ENTRY },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: UNBUNDLED_PACKAGES.flatMap((p) => (p.endsWith('/*') ? [p] : [p, `${p}/*`])),
    // pino and protobufjs are CommonJS and require() Node's built-ins: every output module gets
    // a real require, or esbuild's stand-in throws "Dynamic require of node:os".
    banner: {
      js: "import { createRequire as bundledCreateRequire } from 'node:module';\nconst require = bundledCreateRequire(import.meta.url);",
    },
    tsconfig: path.join(ROOT, 'tsconfig.build.json'),
    outdir: tmp,
    chunkNames: 'chunks/[name]-[hash]',
    // Whitespace and syntax only: names stay, so a stack trace in a terminal's log still reads;
    // a quarter fewer bytes to read and parse at every start.
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    sourcesContent: false,
    metafile: true,
    logLevel: 'warning',
    legalComments: 'none',
  });
  // A worktree's node_modules may be a symlink, which esbuild reports by its real path.
  const inputs = Object.keys(result.metafile.inputs).filter(
    (f) => !f.split('/').includes('node_modules'),
  );
  const stray = inputs.filter((f) => !RUNTIME_DIRS.some((d) => f.startsWith(`${d}/`)));
  if (stray.length) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`the shipped bundle would contain non-runtime code: ${stray.join(', ')}`);
  }
  writeFileSync(
    path.join(tmp, 'build.json'),
    JSON.stringify({ sourceHash: hash, esbuild: esbuild.version, inputs: inputs.length }, null, 2) +
      '\n',
  );
  const old = `${DIST}.old-${process.pid}`;
  if (existsSync(DIST)) renameSync(DIST, old);
  renameSync(tmp, DIST);
  rmSync(old, { recursive: true, force: true });
  if (!quiet) process.stderr.write(`built dist/ from ${inputs.length} runtime modules\n`);
  return { built: true, reason: 'built' };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const r = await build({ force: process.argv.includes('--force') });
  if (!r.built && !process.argv.includes('--quiet')) process.stderr.write(`dist/: ${r.reason}\n`);
}
