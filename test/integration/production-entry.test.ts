/**
 * What a terminal runs: `pos-agent run` (and the offline commands) from bin/pos-agent.mjs as a
 * real process, with a preload that records every module it loads. It must run the compiled
 * bundle in dist/ built from the runtime layers only, and load nothing of the simulators, the
 * dev entry, the tests or the bench, no TypeScript and no development package (tsx included).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { installTls } from '../fixtures/lifecycle-rig.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'pos-agent.mjs');
const RECORDER = path.join(ROOT, 'test', 'fixtures', 'module-recorder.mjs');
const RUNTIME = ['base/', 'storage/', 'protocol/', 'agent/'];
// `debug` (under serialport) tries require('supports-color') in a try/catch: a checkout has it
// (a development package needs it), a production install does not, and debug goes without.
const OPTIONAL_WHEN_PRESENT = new Set(['supports-color', 'has-flag']);
const tmp = mkdtempSync(path.join(tmpdir(), 'pa-prod-entry-'));
let sim: AcquirerSimulator | undefined;
afterAll(async () => {
  await sim?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** Packages that `npm install --omit=dev` installs, from the lock file. */
function productionPackages(): Set<string> {
  const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>;
  };
  const names = new Set<string>();
  for (const [key, meta] of Object.entries(lock.packages)) {
    if (!key || meta.dev) continue;
    names.add(key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length));
  }
  return names;
}

interface Loaded {
  kind: 'esm' | 'cjs';
  where: string;
}

/** The record file's lines as absolute paths (file: URLs converted) or `node:` names. */
function readRecord(file: string): Loaded[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [kind, where] = [line.slice(0, 3), line.slice(4)] as ['esm' | 'cjs', string];
      return { kind, where: where.startsWith('file:') ? fileURLToPath(where) : where };
    });
}

/** Which package a node_modules path belongs to (`@scope/name` or `name`), else undefined. */
function packageOf(p: string): string | undefined {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*node_modules\/)/.exec(p);
  return m?.[1];
}

/**
 * A source of the bundle from a package (the build bundles the plain-JavaScript ones): under
 * node_modules/, or ../<checkout>/node_modules/ in a worktree whose node_modules is a symlink.
 */
const bundled = (source: string): boolean => /(^|\/)node_modules\//.test(source);

/** Fails with the offending modules listed; returns the project files loaded. */
function expectOnlyShippedCode(loaded: Loaded[]): string[] {
  const prod = productionPackages();
  const ours: string[] = [];
  const wrong: string[] = [];
  for (const { where } of loaded) {
    if (where.startsWith('node:') || !path.isAbsolute(where)) continue;
    const pkg = packageOf(where);
    if (pkg) {
      if (!prod.has(pkg) && !OPTIONAL_WHEN_PRESENT.has(pkg))
        wrong.push(`${where} (development package ${pkg})`);
      continue;
    }
    const rel = path.relative(ROOT, where);
    if (rel.startsWith('..')) wrong.push(`${where} (outside the package)`);
    else if (!rel.startsWith('dist/') && rel !== 'bin/pos-agent.mjs') wrong.push(rel);
    else ours.push(rel);
  }
  expect(wrong).toEqual([]);
  return ours;
}

/** Every original source a loaded bundle file was built from, by its source map. */
function sourcesOf(distFiles: string[]): string[] {
  const out = new Set<string>();
  for (const f of distFiles.filter((f) => f.endsWith('.js'))) {
    const map = JSON.parse(readFileSync(path.join(ROOT, `${f}.map`), 'utf8')) as {
      sources: string[];
    };
    for (const s of map.sources)
      out.add(path.relative(ROOT, path.resolve(ROOT, path.dirname(f), s)));
  }
  return [...out].sort();
}

describe('the production entry', () => {
  const dataDir = path.join(tmp, 'data');

  it('`run`, activated over mTLS from its console, loads only the shipped bundle and production packages', async () => {
    // The acquirer simulator lives in this test process; the terminal is a real `pos-agent run`.
    sim = await AcquirerSimulator.start({ dataDir: path.join(tmp, 'acquirer') });
    sim.registerTerminal({ terminalId: 'T0001', activationCode: 'CODE-T0001' });
    installTls(sim, 'T0001', dataDir);
    const hashed = spawnSync(process.execPath, [BIN, 'hash-pin'], {
      input: '2468\n',
      encoding: 'utf8',
    });
    expect(hashed.status, hashed.stderr).toBe(0);
    const config = path.join(tmp, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        terminalId: 'T0001',
        dataDir,
        console: { mode: 'stdio', technicians: [{ id: 'tech1', pinHash: hashed.stdout.trim() }] },
        paymentSocket: { path: 'payment.sock' },
        acquirer: { host: '127.0.0.1', port: sim.port, backoffInitialMs: 50, backoffMaxMs: 400 },
        log: { level: 'info', file: path.join(tmp, 'agent.log') },
      }),
    );
    const record = path.join(tmp, 'run.modules');
    const child = spawn(process.execPath, ['--import', RECORDER, BIN, 'run', '--config', config], {
      cwd: tmp,
      env: { ...process.env, POS_MODULE_RECORD: record },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let mark = 0;
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    const expectOut = async (text: string): Promise<void> => {
      const deadline = Date.now() + 30_000;
      while (out.indexOf(text, mark) < 0) {
        if (Date.now() > deadline || child.exitCode !== null) {
          child.kill('SIGKILL');
          throw new Error(`no ${JSON.stringify(text)} from pos-agent run; it said:\n${out}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      mark = out.indexOf(text, mark) + text.length;
    };
    try {
      await expectOut('login: ');
      child.stdin.write('tech1\n');
      await expectOut('PIN: ');
      child.stdin.write('2468\n');
      await expectOut('T0001 unactivated> ');
      child.stdin.write('activate CODE-T0001\n');
      await expectOut('activated: ');
      await expectOut('T0001 active> ');
      const deadline = Date.now() + 30_000;
      while (!sim.connectedTerminals().includes('T0001')) {
        if (Date.now() > deadline) throw new Error(`the link never came up:\n${out}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      child.stdin.write('status\n');
      await expectOut('T0001 active> ');
      expect(out.slice(out.lastIndexOf('status'))).toMatch(/link: +up/);
    } finally {
      if (child.exitCode === null) child.kill('SIGTERM');
    }
    expect(await exited, out).toBe(0);

    const loaded = readRecord(record);
    const ours = expectOnlyShippedCode(loaded);
    // The recorder saw the entry, the bundle and the daemon's lazily loaded chunk, the native
    // SQLite driver through require(): it records what it must, so the checks above mean something.
    expect(ours).toContain('bin/pos-agent.mjs');
    expect(ours).toContain('dist/main.js');
    expect(ours.some((f) => /^dist\/chunks\/daemon-\w+\.js$/.test(f))).toBe(true);
    expect(loaded.some((l) => l.kind === 'cjs' && packageOf(l.where) === 'better-sqlite3')).toBe(
      true,
    );
    const sources = sourcesOf(ours.filter((f) => f.startsWith('dist/')));
    expect(sources).toContain('agent/runtime/daemon.ts');
    expect(sources).toContain('storage/journal.ts');
    expect(sources.filter((s) => !RUNTIME.some((d) => s.startsWith(d)) && !bundled(s))).toEqual([]);
    // The plain-JavaScript dependencies it imports are in the bundle, not loaded from
    // node_modules; the native ones and the lazily required node-cron are not in it.
    expect(sources.some((s) => packageOf(s) === 'zod')).toBe(true);
    expect(loaded.some((l) => packageOf(l.where) === 'zod')).toBe(false);
    expect(
      sources.filter((s) =>
        /^(better-sqlite3|serialport|@serialport\/|node-cron)/.test(packageOf(s) ?? ''),
      ),
    ).toEqual([]);
  });

  it('status and journal verify on that data run the bundle too', () => {
    for (const args of [
      ['status', '--data', dataDir, '--json'],
      ['journal', 'verify', '--data', dataDir],
    ]) {
      const record = path.join(tmp, `${args[0]}.modules`);
      const r = spawnSync(process.execPath, ['--import', RECORDER, BIN, ...args], {
        cwd: tmp,
        env: { ...process.env, POS_MODULE_RECORD: record },
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      const ours = expectOnlyShippedCode(readRecord(record));
      expect(ours).toContain('dist/main.js');
    }
  });

  it('refuses the development commands where there is no dev entry', () => {
    // The release has no dev/: the bundle's own CLI answers demo and simulate.
    const r = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { main } = await import(${JSON.stringify(path.join(ROOT, 'dist', 'main.js'))}); process.exitCode = await main(['demo']);`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(64);
    expect(r.stderr).toContain('demo is a development command');
  });
});
