/**
 * The release a terminal host installs: `npm run release` packs the compiled bundle with its
 * production dependencies (better-sqlite3's binary built for this Node.js inside), and
 * `npm install --omit=dev --offline` of that tarball alone gives a working `pos-agent`, with no
 * compiler, no network and none of the simulators, dev entry, tests, bench or TypeScript.
 * The binary fits one Node.js major, so on a Node.js below `engines` the script refuses.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const RELEASE = path.join(ROOT, 'scripts', 'release.mjs');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  engines: { node: string };
};
const lowest = Number(/^>=(\d+)/.exec(pkg.engines.node)![1]);
const major = Number(process.versions.node.split('.')[0]);
const tmp = mkdtempSync(path.join(tmpdir(), 'pa-release-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// npm from the PATH runs under this test's node, so its scripts see the same Node.js.
const env = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` };

function du(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    bytes += statSync(path.join(e.parentPath, e.name)).size;
    files += 1;
  }
  return { bytes, files };
}

// One Node.js has one behaviour: CI's Node 20 pass checks the refusal, its Node 24 pass the rest.
if (major < lowest)
  describe(`the release on Node.js ${major} (below engines)`, () => {
    it('is refused: its native binary would not fit the terminals', () => {
      const r = spawnSync(process.execPath, [RELEASE, '--out', tmp], { encoding: 'utf8', env });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`does not satisfy engines ${pkg.engines.node}`);
      expect(readdirSync(tmp)).toEqual([]);
    });
  });
else
  describe(`the release on Node.js ${major}`, () => {
    const out = path.join(tmp, 'out');
    const prefix = path.join(tmp, 'host');
    let tarball = '';

    it('packs the compiled code and the production packages only', () => {
      const r = JSON.parse(
        execFileSync(process.execPath, [RELEASE, '--out', out], { encoding: 'utf8', env }),
      ) as { file: string; abi: string; arch: string };
      tarball = r.file;
      expect(path.basename(tarball)).toBe(
        `pos-agent-${pkg.version}-node${major}-${process.platform}-${process.arch}.tgz`,
      );
      expect(r.abi).toBe(process.versions.modules);
      const entries = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map((e) => e.replace(/^package\//, ''));
      expect(entries).toEqual(
        expect.arrayContaining([
          'package.json',
          'dist/main.js',
          'bin/pos-agent.mjs',
          'docs/install.md',
          'docs/pos-agent.service',
          'node_modules/better-sqlite3/build/Release/better_sqlite3.node',
        ]),
      );
      const ours = entries.filter((e) => !e.startsWith('node_modules/'));
      expect(
        ours.filter((e) =>
          /^(simulator|dev|test|bench|scripts|agent|storage|protocol|base)\//.test(e),
        ),
      ).toEqual([]);
      expect(ours.filter((e) => e.endsWith('.ts'))).toEqual([]);
      const packages = new Set(
        entries.flatMap((e) => /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(e)?.[1] ?? []),
      );
      for (const dev of ['tsx', 'esbuild', 'typescript', 'vitest', 'fastify', 'playwright-core'])
        expect(packages.has(dev), dev).toBe(false);
      // Neither SQLite's C sources nor the compiler's intermediates travel.
      expect(entries.filter((e) => /^node_modules\/better-sqlite3\/(deps|src)\//.test(e))).toEqual(
        [],
      );
    });

    it('installs offline with --omit=dev, builds nothing, and runs', () => {
      execFileSync(
        'npm',
        [
          'install',
          '--prefix',
          prefix,
          '--omit=dev',
          '--offline',
          '--no-audit',
          '--no-fund',
          tarball,
        ],
        { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const home = path.join(prefix, 'node_modules', 'pos-agent');
      const bin = path.join(prefix, 'node_modules', '.bin', 'pos-agent');
      const help = spawnSync(bin, ['--help'], { encoding: 'utf8', env });
      expect(help.status, help.stderr).toBe(0);
      expect(help.stdout).toContain('pos-agent run --config FILE');
      const pin = spawnSync(bin, ['hash-pin'], { input: '1234\n', encoding: 'utf8', env });
      expect(pin.status, pin.stderr).toBe(0);
      expect(pin.stdout).toMatch(/^scrypt\$/);
      // No dev entry in a release: the development commands are refused, not half-run.
      const demo = spawnSync(bin, ['demo'], { encoding: 'utf8', env });
      expect(demo.status).toBe(64);
      expect(demo.stderr).toContain('demo is a development command');
      const verify = spawnSync(bin, ['journal', 'verify', '--data', path.join(tmp, 'none')], {
        encoding: 'utf8',
        env,
      });
      expect(verify.stderr).toContain('STORAGE_NOT_FOUND');
      const size = du(home);
      const packages = readdirSync(path.join(home, 'node_modules'), { recursive: true }).filter(
        (p) => /(^|\/)package\.json$/.test(String(p)) && !String(p).includes('/test/'),
      ).length;
      // The footprint docs/install.md quotes; this bounds it so that it cannot creep unnoticed.
      process.stdout.write(
        `release footprint: ${(size.bytes / 1048576).toFixed(1)} MiB in ${size.files} files, ${packages} package.json\n`,
      );
      expect(size.bytes).toBeLessThan(40 * 1048576);
    });
  });
