/**
 * The CLI as an operator meets it: bin/pos-agent.mjs as a real process, judged by its exit
 * code and what it prints. Usage errors are one line plus the usage (64, never a stack
 * trace); a bad configuration is refused before anything starts, every problem at once (78);
 * a data directory in use is refused (75); and the exit codes are the ones listed in --help
 * and docs/cli.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exitCodeTable } from '../../agent/cli/exit-codes.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'pos-agent.mjs');
const tmp = mkdtempSync(path.join(tmpdir(), 'pa-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const started = Date.now();
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: tmp,
    encoding: 'utf8',
    env: { ...process.env, POS_CONFIG: '', POS_DATA_DIR: '', ...env },
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started };
}

const GOOD_HASH = `scrypt$1024$8$1$${Buffer.alloc(16, 7).toString('base64')}$${Buffer.alloc(32, 1).toString('base64')}`;

function writeConfig(name: string, config: unknown): string {
  const file = path.join(tmp, name);
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

function tlsFiles(dir: string): void {
  mkdirSync(path.join(dir, 'tls'), { recursive: true });
  for (const f of ['ca.crt', 'terminal.crt', 'terminal.key'])
    writeFileSync(path.join(dir, 'tls', f), 'placeholder\n');
}

describe('usage errors: one line and the usage, exit 64, never a stack trace', () => {
  const cases: Array<[string[], RegExp]> = [
    [['status', '--data', 'D', '--bogus'], /^pos-agent status: unknown option --bogus$/],
    [['journal', 'tail', '--data', 'D', '-n'], /^pos-agent journal tail: -n needs a value$/],
    [['journal', 'tail', '--data', 'D', '-n', '-3'], /^pos-agent journal tail: -n needs a value/],
    [['journal', 'tail', '--data', 'D', '-n', 'ten'], /takes a whole number from 1 to 10000/],
    [['journal', 'tail', '--data', 'D', '-n', '0'], /takes a whole number from 1 to 10000/],
    [['journal', 'show', '--data', 'D'], /^pos-agent journal show: SEQ is missing$/],
    [
      ['batch', 'show', 'B1', 'B2', '--data', 'D'],
      /^pos-agent batch show: unexpected argument 'B2'$/,
    ],
    [['journal', 'bogus'], /^pos-agent: unknown command 'journal bogus'$/],
    [['frobnicate'], /^pos-agent: unknown command 'frobnicate'$/],
    [['status'], /^pos-agent status: --data is required \(or POS_DATA_DIR\)$/],
    [['run'], /^pos-agent run: --config is required \(or POS_CONFIG\)$/],
    [['config', 'check'], /^pos-agent config check: --config is required/],
    [['simulate', 'acquirer'], /^pos-agent simulate acquirer: --data is required$/],
    [['simulate', 'acquirer', '--data', 'D', '--port', '99999'], /--port takes a whole number/],
    [['demo', '--bogus'], /^pos-agent demo: unknown option --bogus$/],
  ];
  for (const [args, first] of cases) {
    it(args.join(' '), () => {
      const r = cli(args);
      expect(r.code, r.stderr).toBe(64);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines[0]).toMatch(first);
      expect(lines.slice(1).every((l) => l.startsWith('usage: '))).toBe(true);
      expect(r.stderr).not.toMatch(/\bat .*\.(ts|js):\d+/);
      expect(r.stdout).toBe('');
    });
  }

  it('COMMAND --help prints its usage and exits 0', () => {
    const r = cli(['journal', 'tail', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: pos-agent journal tail --data DIR \[-n N\]/);
  });

  it('a data directory without a journal is exit 66', () => {
    const r = cli(['status', '--data', tmp]);
    expect(r.code).toBe(66);
    expect(r.stderr).toContain(`no journal at ${path.join(tmp, 'journal.db')}`);
  });
});

describe('configuration: every problem at once, before anything starts, exit 78', () => {
  it('config check and run list every problem and create nothing', () => {
    const dataDir = path.join(tmp, 'never-made');
    const file = writeConfig('bad.json', {
      dataDir,
      timeZone: 'Mars/Olympus',
      acquirer: { prot: 18443 },
      settlement: { cutoverCron: '0 0 25 * * *' },
      console: { serailPath: '/dev/ttyS1', technicians: [{ id: 'tech', pinHash: 'x' }] },
    });
    for (const args of [
      ['config', 'check', '--config', file],
      ['run', '--config', file],
    ]) {
      const r = cli(args);
      expect(r.code, r.stderr).toBe(78);
      expect(r.stdout).toBe('');
      for (const problem of [
        'timeZone: not a time zone name',
        'acquirer.prot: unknown key (did you mean port?)',
        'settlement.cutoverCron: not a cron expression',
        'console.serailPath: unknown key (did you mean serialPath?)',
        'console.technicians.0.pinHash: a technician PIN hash is not valid',
        `acquirer.caFile: ${path.join(dataDir, 'tls', 'ca.crt')} does not exist`,
        'acquirer.keyFile:',
      ])
        expect(r.stderr).toContain(problem);
      expect(r.stderr).not.toMatch(/\bat .*\.(ts|js):\d+/);
      // Refused before anything started: no data directory, no socket, no log.
      expect(existsSync(dataDir)).toBe(false);
      expect(r.ms).toBeLessThan(15_000);
    }
  });

  it('a missing certificate alone is a config error too', () => {
    const dataDir = path.join(tmp, 'no-certs');
    mkdirSync(dataDir);
    const file = writeConfig('no-certs.json', { dataDir });
    const r = cli(['run', '--config', file]);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(
      `acquirer.certFile: ${path.join(dataDir, 'tls', 'terminal.crt')} does not exist`,
    );
    expect(existsSync(path.join(dataDir, 'journal.db'))).toBe(false);
    expect(existsSync(path.join(dataDir, 'payment.sock'))).toBe(false);
  });

  it('a file that is not JSON, and a config named by POS_CONFIG', () => {
    writeFileSync(path.join(tmp, 'broken.json'), '{ "terminalId": ');
    const broken = cli(['config', 'check', '--config', 'broken.json']);
    expect(broken.code).toBe(78);
    expect(broken.stderr).toMatch(/^error \(CONFIG_INVALID\): cannot read config file broken.json/);
    const dataDir = path.join(tmp, 'good');
    tlsFiles(dataDir);
    const file = writeConfig('good.json', {
      terminalId: 'T0042',
      dataDir,
      console: { technicians: [{ id: 'tech', pinHash: GOOD_HASH }] },
    });
    const ok = cli(['config', 'check'], { POS_CONFIG: file });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^config ok: .*good\.json\n {2}terminal T0042, data /);
    // Environment overrides are checked with the file.
    const env = cli(['config', 'check', '--config', file], { POS_ACQUIRER_PORT: 'https' });
    expect(env.code).toBe(78);
    expect(env.stderr).toContain('acquirer.port');
  });
});

describe('a data directory in use', () => {
  it('simulate acquirer refuses a directory another process holds, exit 75', async () => {
    const data = path.join(tmp, 'acq');
    const first = spawn(
      process.execPath,
      [BIN, 'simulate', 'acquirer', '--data', data, '--port', '0'],
      {
        cwd: tmp,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    first.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => first.once('exit', r));
    try {
      const deadline = Date.now() + 30_000;
      while (!out.includes('press Ctrl-C to stop')) {
        if (Date.now() > deadline || first.exitCode !== null)
          throw new Error(`no simulator: ${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const second = cli(['simulate', 'acquirer', '--data', data, '--port', '0']);
      expect(second.code).toBe(75);
      expect(second.stderr).toContain(`${data} is in use by process ${first.pid}`);
      first.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(existsSync(path.join(data, '.lock'))).toBe(false);
    } finally {
      if (first.exitCode === null) first.kill('SIGKILL');
    }
  });
});

describe('exit codes are listed in one place', () => {
  it('--help and docs/cli.md list exactly the codes the CLI uses', () => {
    const help = cli(['--help']);
    expect(help.code).toBe(0);
    const doc = readFileSync(path.join(ROOT, 'docs', 'cli.md'), 'utf8');
    for (const [code, meaning] of exitCodeTable) {
      expect(help.stdout).toContain(`${String(code).padStart(2)}  ${meaning}`);
      expect(doc).toContain(`| ${code} `);
      expect(doc).toContain(meaning);
    }
    const documented = [...doc.matchAll(/^\| (\d+) +\|/gm)].map((m) => Number(m[1]));
    expect(documented).toEqual(exitCodeTable.map(([c]) => c));
    // Help fits a 100-column terminal: nothing is cut with an ellipsis.
    expect(help.stdout).not.toContain('…');
    for (const line of help.stdout.split('\n')) expect(line.length).toBeLessThanOrEqual(100);
  });
});
