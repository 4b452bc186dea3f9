import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { openCore, type Core } from '../../agent/runtime/core.ts';
import { activateForTest } from '../fixtures/core.ts';
import { RiskMonitor, type RiskHit } from '../../agent/policy/risk-monitor.ts';
import { SelfTest } from '../../agent/policy/selftest.ts';
import { ManualClock } from '../../base/clock.ts';
import { parseConfig } from '../../agent/config.ts';
import type { TxnRow } from '../../storage/journal.ts';

const PAN = '4111111111111111';
let dir: string;
let core: Core;
let clock: ManualClock;
let hits: RiskHit[];
let monitor: RiskMonitor;

function open(): void {
  const config = parseConfig({ dataDir: dir });
  core = openCore(config, { clock, onRecorded: (row: TxnRow) => monitor?.observe(row) });
  monitor = new RiskMonitor({
    clock,
    log: core.log,
    config,
    terminal: core.terminal,
    report: (h) => hits.push(h),
  });
}

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'pa-risk-'));
  clock = new ManualClock(Date.UTC(2026, 10, 26, 9));
  hits = [];
  open();
  activateForTest(core);
});

afterEach(() => {
  core.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('local risk rules', () => {
  it('a burst of declines locks with source risk and reports it; the next sale is refused', () => {
    for (let i = 0; i < 4; i++) {
      core.payments.record({ type: 'sale', amount: 5000, card: { pan: PAN }, status: 'declined' });
      clock.advance(1000);
    }
    expect(core.terminal.status().locks).toEqual([]);
    core.payments.record({ type: 'sale', amount: 5000, card: { pan: PAN }, status: 'declined' });
    expect(core.terminal.status().locks).toEqual(['risk']);
    expect(hits.map((h) => h.rule)).toEqual(['decline-burst']);
    expect(() => core.payments.record({ type: 'sale', amount: 5000, card: { pan: PAN } })).toThrow(
      /locked by risk/,
    );
  });

  it('declines spread beyond the window do not trip the rule', () => {
    for (let i = 0; i < 10; i++) {
      core.payments.record({ type: 'sale', amount: 5000, card: { pan: PAN }, status: 'declined' });
      clock.advance(20_000);
    }
    expect(core.terminal.status().locks).toEqual([]);
  });

  it('many tiny authorisations (card testing) lock with source risk', () => {
    for (let i = 0; i < 5; i++)
      core.payments.record({ type: 'sale', amount: 1, card: { pan: PAN } });
    expect(core.terminal.status().locks).toEqual(['risk']);
    expect(hits[0]?.rule).toBe('tiny-burst');
  });
});

describe('self-test', () => {
  const selftest = () =>
    new SelfTest({
      store: core.store,
      clock,
      log: core.log,
      config: parseConfig({ dataDir: dir }),
      terminal: core.terminal,
      clockOffsetMs: () => null,
    });

  it('passes on a healthy journal and moves the verify checkpoint', () => {
    core.payments.record({ type: 'sale', amount: 5000, card: { pan: PAN } });
    const r = selftest().run({ full: true });
    expect(r.ok).toBe(true);
    expect(core.store.state.getJson<{ seq: number }>('verify_checkpoint')?.seq).toBe(
      core.store.journal.headOf().seq,
    );
  });

  it('a tampered row fails the chain check and locks hardware-fault', () => {
    const sale = core.payments.record({ type: 'sale', amount: 5000, card: { pan: PAN } });
    const evil = new Database(path.join(dir, 'journal.db'));
    evil.exec('DROP TRIGGER journal_immutable_update');
    evil.prepare('UPDATE journal SET amount = 1 WHERE seq = ?').run(sale.seq);
    evil.close();
    const r = selftest().run({ full: true });
    expect(r.ok).toBe(false);
    expect(r.checks.find((c) => c.name === 'hash chain')?.detail).toContain(`row ${sale.seq}`);
    expect(core.terminal.status().locks).toContain('hardware-fault');
    expect(core.store.journal.events('selftest-failed')).toHaveLength(1);
  });

  it('an insane clock fails the self-test', () => {
    clock.set(Date.UTC(2001, 0, 1));
    const r = selftest().run({ full: false });
    expect(r.checks.find((c) => c.name === 'clock')?.ok).toBe(false);
    expect(core.terminal.status().locks).toContain('hardware-fault');
    clock.set(Date.UTC(2026, 10, 26, 10));
    expect(selftest().run({ full: false }).ok).toBe(true);
    expect(core.terminal.status().locks).toEqual([]);
  });
});

describe('self-test checkpoint', () => {
  it('a journal cut short after a verified checkpoint fails the self-test', () => {
    const st = () =>
      new SelfTest({
        store: core.store,
        clock,
        log: core.log,
        config: parseConfig({ dataDir: dir }),
        terminal: core.terminal,
        clockOffsetMs: () => null,
      });
    for (let i = 0; i < 5; i++)
      core.payments.record({ type: 'sale', amount: 5000 + i, card: { pan: PAN } });
    expect(st().run({ full: true }).ok).toBe(true);
    const head = core.store.journal.headOf().seq;
    const evil = new Database(path.join(dir, 'journal.db'));
    evil.exec('DROP TRIGGER journal_immutable_delete');
    evil.prepare('DELETE FROM journal WHERE seq >= ?').run(head - 2);
    evil.close();
    // The remaining chain still links from genesis; only the checkpoint shows the loss.
    expect(core.store.journal.verify().ok).toBe(true);
    const r = st().run({ full: true });
    expect(r.ok).toBe(false);
    expect(r.checks.find((c) => c.name === 'hash chain')?.detail).toMatch(/truncated or rewritten/);
  });
});
