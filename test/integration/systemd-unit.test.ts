/**
 * The example unit (docs/pos-agent.service) as a payment device runs it: systemd's own
 * `systemd-analyze verify` accepts it without a word, its offline security review rates it, and
 * the hardening the install guide promises is there. verify checks that ExecStart's program
 * exists, so the test runs it on a copy whose Node.js path points at one the test creates.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const UNIT = readFileSync(path.join(ROOT, 'docs', 'pos-agent.service'), 'utf8');
const EXEC =
  'ExecStart=/usr/bin/node /opt/pos-agent/node_modules/pos-agent/bin/pos-agent.mjs run --config /etc/pos-agent/config.json';
const tmp = mkdtempSync(path.join(tmpdir(), 'pa-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The unit with ExecStart's node replaced by a link the test made; the rest byte for byte. */
function unitCopy(name: string, text = UNIT): string {
  const node = path.join(tmp, 'usr', 'bin', 'node');
  mkdirSync(path.dirname(node), { recursive: true });
  rmSync(node, { force: true });
  symlinkSync(process.execPath, node);
  const file = path.join(tmp, name);
  writeFileSync(file, text.replace('ExecStart=/usr/bin/node ', `ExecStart=${node} `));
  return file;
}

function verify(file: string) {
  // Without a tty systemd may log to the journal instead: its findings must reach stderr here.
  return spawnSync('systemd-analyze', ['verify', '--man=no', file], {
    encoding: 'utf8',
    env: { ...process.env, SYSTEMD_LOG_TARGET: 'console' },
  });
}

/** `[Section]` → its `Key=value` lines (comments and blanks dropped). */
function sections(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const head = /^\[(\w+)\]$/.exec(line);
    if (head) out.set((current = head[1]!), []);
    else out.get(current)!.push(line);
  }
  return out;
}

describe('docs/pos-agent.service', () => {
  it('runs the installed bin with the config the guide installs', () => {
    expect(UNIT.split('\n')).toContain(EXEC);
  });

  it('systemd-analyze verify accepts it with no warning', () => {
    const r = verify(unitCopy('pos-agent.service'));
    expect(r.error, 'systemd-analyze is missing: .ci/run installs the systemd package').toBe(
      undefined,
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('verify is not a rubber stamp: a misspelt hardening key is reported', () => {
    const r = verify(
      unitCopy(
        'pos-agent.service',
        UNIT.replace('\nProtectSystem=strict\n', '\nProtectSytem=strict\n'),
      ),
    );
    expect(r.stderr).toMatch(/Unknown key '?ProtectSytem'? in section \[Service\]/);
  });

  it('has the hardening of a payment device', () => {
    const s = sections(UNIT);
    const service = s.get('Service')!;
    expect(service).toEqual(
      expect.arrayContaining([
        'User=pos-agent',
        'Group=pos-agent',
        'NoNewPrivileges=yes',
        'ProtectSystem=strict',
        'ReadWritePaths=/var/lib/pos-agent',
        'StateDirectory=pos-agent',
        'StateDirectoryMode=0700',
        'PrivateTmp=yes',
        'ProtectHome=yes',
        'UMask=0077',
        'CapabilityBoundingSet=',
        'Restart=always',
      ]),
    );
    expect(service.some((l) => /^RestartSec=\d+$/.test(l))).toBe(true);
    // The start limit belongs to [Unit]: in [Service] systemd ignores it (and verify warns).
    const unit = s.get('Unit')!;
    expect(unit.some((l) => /^StartLimitIntervalSec=\d+$/.test(l))).toBe(true);
    expect(unit.some((l) => /^StartLimitBurst=\d+$/.test(l))).toBe(true);
    expect(service.some((l) => l.startsWith('DynamicUser=') || l.startsWith('User=root'))).toBe(
      false,
    );
  });

  it("systemd's offline security review rates its exposure low", () => {
    const out = execFileSync(
      'systemd-analyze',
      ['security', '--offline=true', unitCopy('pos-agent.service')],
      { encoding: 'utf8' },
    );
    const level = Number(/Overall exposure level for pos-agent\.service: ([\d.]+)/.exec(out)?.[1]);
    // 0 is a fully locked-down service, 10 an unprotected one; systemd calls < 3 "OK". The
    // agent needs a tty, TCP and a Unix socket, and Node's JIT needs W+X memory.
    expect(level).toBeGreaterThan(0);
    expect(level).toBeLessThanOrEqual(2.5);
  });
});
