/**
 * Cold start to ready with a large journal, each run in a fresh child process
 * (bench/cold-start-child.ts): wall time from spawn() to the child's "ready" line, and the
 * child's peak RSS (its VmHWM from /proc), against a child that only opens the same
 * file with raw better-sqlite3 and reads one row. Agent and raw children alternate.
 *
 * Two ways are measured. As shipped: `node bin/pos-agent.mjs run --config FILE`, the compiled
 * bundle in dist/ (scripts/build.mjs) exactly as a terminal starts it, ready at its
 * "pos-agent running" log line, peak RSS read from /proc (VmHWM) at that line, then SIGKILL.
 * And the bench child compiled by the project's tsc, which times the phases (imports,
 * construction, start). Both are compared with the same raw child in plain JavaScript.
 *
 * Before each run the self-test checkpoint is put back where a restart finds it: after the
 * last start's verification, with today's open batch (~1% of the journal) not yet verified.
 * One more variant removes the checkpoint: the chain walk from genesis a terminal does on its
 * first start with this journal (or after uptime that added as many rows).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { journalPath } from '../agent/runtime/core.ts';
import { loadDriver } from '../storage/db.ts';
import {
  acquirerSection,
  benchConfig,
  benchConfigInput,
  copyDataDir,
  ensureBenchTls,
  type BenchOptions,
} from './fixtures.ts';
import { ensureHistory, resetCheckpoint, type History } from './journal-builder.ts';
import type { Figure } from './report.ts';
import { median, msBetween, nowNs } from './stats.ts';

const REPO = path.resolve(import.meta.dirname, '..');

interface ChildRun {
  ms: number;
  rssMb: number;
  line: Record<string, unknown>;
}

/** Spawns a child and resolves when it printed its ready line and exited. */
function timeChild(args: string[]): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const t0 = nowNs();
    const child = spawn(process.execPath, args, {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    let ms = 0;
    child.stdout.on('data', (b: Buffer) => {
      if (!ms && (out += b.toString()).includes('\n')) ms = msBetween(t0);
      else if (ms) out += b.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0 || !ms)
        return reject(new Error(`cold-start child ${args.join(' ')} exited ${code}`));
      const line = JSON.parse(out.split('\n')[0]!) as Record<string, unknown>;
      resolve({ ms, rssMb: Number(line.maxRssKb) / 1024, line });
    });
  });
}

/**
 * The shipped entry as systemd starts it: ready when it logs "pos-agent running" (after the
 * journal opened, the self-test ran and the link was dialled); its peak RSS so far is read from
 * /proc at that moment, then it is killed, as the other children exit at ready.
 */
function timeShipped(configFile: string): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const t0 = nowNs();
    const child = spawn(
      process.execPath,
      [path.join(REPO, 'bin', 'pos-agent.mjs'), 'run', '--config', configFile],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    let run: ChildRun | undefined;
    child.stdout.on('data', (b: Buffer) => {
      if (run) return;
      out += b.toString();
      if (!out.includes('"msg":"pos-agent running"')) return;
      const ms = msBetween(t0);
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      run = { ms, rssMb: Number(hwm?.[1]) / 1024, line: {} };
      child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      run ? resolve(run) : reject(new Error(`pos-agent run exited ${code} before ready:\n${out}`)),
    );
  });
}

/** Files whose change means the compiled copy is stale. */
function sourceHash(): string {
  const h = createHash('sha256');
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|js|mjs)$/.test(e.name)) h.update(p).update(readFileSync(p));
    }
  };
  for (const d of ['agent', 'storage', 'protocol']) walk(path.join(REPO, d));
  for (const f of ['bench/cold-start-child.ts', 'tsconfig.json', 'package-lock.json'])
    h.update(f).update(readFileSync(path.join(REPO, f)));
  return h.digest('hex').slice(0, 16);
}

/**
 * The child and everything it imports compiled by the project's tsc into a temp dir (outside
 * the tree, so lint never sees it; node_modules is a symlink). Reused while sources are unchanged.
 */
function ensureCompiled(opts: BenchOptions): string {
  const out = path.join(tmpdir(), `pos-agent-bench-js-${sourceHash()}`);
  const child = path.join(out, 'bench', 'cold-start-child.js');
  if (existsSync(child)) return child;
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const tsconfig = path.join(out, 'tsconfig.json');
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: path.join(REPO, 'tsconfig.json'),
      compilerOptions: {
        outDir: out,
        rootDir: REPO,
        sourceMap: false,
        noEmit: false,
        declaration: false,
      },
      files: [path.join(REPO, 'bench', 'cold-start-child.ts')],
      include: [],
    }),
  );
  const tsc = spawnSync(
    process.execPath,
    [path.join(REPO, 'node_modules/typescript/bin/tsc'), '-p', tsconfig],
    {
      encoding: 'utf8',
    },
  );
  if (!existsSync(child))
    throw new Error(`tsc did not compile the cold-start child:\n${tsc.stdout}${tsc.stderr}`);
  // tsc copies no .js input: the generated protobuf code goes beside its importer by hand.
  cpSync(path.join(REPO, 'protocol', 'generated'), path.join(out, 'protocol', 'generated'), {
    recursive: true,
  });
  symlinkSync(path.join(REPO, 'node_modules'), path.join(out, 'node_modules'), 'dir');
  opts.log(`  compiled the agent to ${out}`);
  return child;
}

/** How long SQLite's full page check of the file takes by itself (the open does one). */
function pageCheckMs(file: string): number {
  const db = new (loadDriver())(file, { readonly: true });
  try {
    const t0 = nowNs();
    db.pragma('integrity_check(5)');
    return msBetween(t0);
  } finally {
    db.close();
  }
}

interface Series {
  agent: ChildRun[];
  raw: ChildRun[];
}

async function series(
  runs: number,
  agentArgs: string[] | (() => Promise<ChildRun>),
  rawArgs: string[],
  before: () => void,
  warm = true,
): Promise<Series> {
  const agent = typeof agentArgs === 'function' ? agentArgs : () => timeChild(agentArgs);
  if (warm) {
    // One untimed pair: the OS page cache is warm after it.
    before();
    await agent();
    await timeChild(rawArgs);
  }
  const s: Series = { agent: [], raw: [] };
  for (let i = 0; i < runs; i++) {
    before();
    s.agent.push(await agent());
    s.raw.push(await timeChild(rawArgs));
  }
  return s;
}

/** The shipped entry against the raw child, with the ratio targets. */
function shippedFigures(s: Series, history: History, note: string): Figure[] {
  const rows = `${(history.rows / 1e6).toLocaleString('en-US')}M-row journal`;
  const label = 'as shipped (bin/pos-agent.mjs run, compiled dist/)';
  return [
    {
      name: `cold start to ready, ${rows}, ${label}`,
      value: median(s.agent.map((r) => r.ms)),
      unit: 'ms',
      baseline: median(s.raw.map((r) => r.ms)),
      baselineIs:
        'a plain JavaScript child that opens the file with raw better-sqlite3 and reads the newest row',
      target: { on: 'ratio', op: '<', limit: 1.5 },
      note: `median of ${s.agent.length} runs of the real entry (spawn to its "pos-agent running" line); ${note}`,
    },
    {
      name: `cold start peak RSS, ${rows}, ${label}`,
      value: median(s.agent.map((r) => r.rssMb)),
      unit: 'MB',
      baseline: median(s.raw.map((r) => r.rssMb)),
      baselineIs: 'peak RSS of the same raw child',
      target: { on: 'ratio', op: '<', limit: 1.1 },
      note: `median of ${s.agent.length}; VmHWM of the agent when it logged ready, VmHWM of the raw child at its ready line`,
    },
  ];
}

function figures(label: string, s: Series, history: History, note: string): Figure[] {
  const rows = `${(history.rows / 1e6).toLocaleString('en-US')}M-row journal`;
  const phases = ['importMs', 'constructMs', 'startMs', 'mayMs']
    .map(
      (k) => `${k.replace('Ms', '')} ${median(s.agent.map((r) => Number(r.line[k]))).toFixed(0)}`,
    )
    .join(', ');
  const mid = (k: string) => median(s.agent.map((r) => Number(r.line[k]))).toFixed(0);
  const boot = mid('bootMs');
  return [
    {
      name: `cold start to ready, ${rows}, ${label}`,
      value: median(s.agent.map((r) => r.ms)),
      unit: 'ms',
      baseline: median(s.raw.map((r) => r.ms)),
      baselineIs: `a child loaded the same way that opens the file with raw better-sqlite3 and reads the newest row`,
      target: { on: 'value', op: '<', limit: 300 },
      note: `median of ${s.agent.length} child runs; agent phases (ms, medians): node+loader ${boot}, ${phases}; ${note}`,
    },
    {
      name: `cold start peak RSS, ${rows}, ${label}`,
      value: median(s.agent.map((r) => r.rssMb)),
      unit: 'MB',
      baseline: median(s.raw.map((r) => r.rssMb)),
      baselineIs: 'peak RSS of the same raw child',
      target: { on: 'value', op: '<', limit: 80 },
      note: `median of ${s.agent.length}; agent RSS after its imports ${mid('rssImportedMb')} MB, after opening the journal ${mid('rssConstructedMb')} MB`,
    },
  ];
}

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const history = ensureHistory(opts.quick ? 100_000 : 1_000_000, opts);
  const runs = opts.quick ? 1 : 3;
  const dataDir = copyDataDir(history.dir, 'cold');
  const tls = ensureBenchTls();
  // Nothing listens on port 1: the link is dialled (TLS context and all) and refused, as at a
  // shop whose router is still booting; ready does not wait for the acquirer.
  const config = JSON.stringify(benchConfigInput(dataDir, { acquirer: acquirerSection(tls, 1) }));
  const file = journalPath(benchConfig(dataDir));
  const childJs = ensureCompiled(opts);
  // "As shipped" runs dist/: rebuilt here when the sources changed, or the figure would time
  // whatever was last built (npm install's prepare, or the last test run).
  spawnSync(process.execPath, [path.join(REPO, 'scripts', 'build.mjs'), '--quiet'], {
    stdio: 'inherit',
  });
  const check = pageCheckMs(file);
  const unverified = `self-test walks the ${history.rows - history.checkpoint.seq} rows journaled since the last start; PRAGMA integrity_check alone takes ${check.toFixed(0)} ms on this file`;
  const atCheckpoint = (): void => resetCheckpoint(dataDir, history.checkpoint);

  // The shipped entry logs its ready line at info; everything else as in the bench config.
  const shippedConfig = path.join(dataDir, 'cold-start-config.json');
  writeFileSync(
    shippedConfig,
    JSON.stringify({ ...(JSON.parse(config) as object), log: { level: 'info' } }),
  );
  const shipped = await series(
    opts.quick ? 1 : 5,
    () => timeShipped(shippedConfig),
    [childJs, 'raw', file],
    atCheckpoint,
  );
  opts.log(
    `  as shipped (bin, dist): agent ${median(shipped.agent.map((r) => r.ms)).toFixed(0)} ms, raw ${median(shipped.raw.map((r) => r.ms)).toFixed(0)} ms`,
  );
  const compiled = await series(
    runs,
    [childJs, 'agent', config],
    [childJs, 'raw', file],
    atCheckpoint,
  );
  opts.log(
    `  precompiled: agent ${median(compiled.agent.map((r) => r.ms)).toFixed(0)} ms, raw ${median(compiled.raw.map((r) => r.ms)).toFixed(0)} ms`,
  );
  // Already warm from the series before; one run, since it is long and its spread is small.
  const fresh = await series(
    1,
    [childJs, 'agent', config],
    [childJs, 'raw', file],
    () => resetCheckpoint(dataDir, null),
    false,
  );
  opts.log(`  no checkpoint: agent ${median(fresh.agent.map((r) => r.ms)).toFixed(0)} ms`);
  return [
    ...shippedFigures(shipped, history, unverified),
    ...figures('precompiled JS', compiled, history, unverified),
    figures(
      'precompiled JS, no self-test checkpoint',
      fresh,
      history,
      `self-test walks the whole chain from genesis`,
    )[0]!,
  ];
}
