import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openCore, type Core } from '../../agent/runtime/core.ts';
import { activateForTest } from '../fixtures/core.ts';
import { Settlement, type AcquirerLink } from '../../agent/policy/settlement.ts';
import { Scheduler } from '../../agent/runtime/scheduler.ts';
import { SerialRunner } from '../../agent/runtime/serial-runner.ts';
import { ManualClock } from '../../base/clock.ts';
import { parseConfig } from '../../agent/config.ts';
import { businessDate } from '../../agent/policy/business-date.ts';
import { silentLogger } from '../../base/log.ts';
import { isAgentError } from '../../base/errors.ts';

/**
 * A cron tick only asks; the journal decides. Missed, late and doubled ticks neither
 * lose nor double a cutover, and jobs on the serial runner never interleave.
 */

const PAN = '4111111111111111';
const offline: AcquirerLink = {
  isUp: false,
  request: () => Promise.reject(new Error('offline')),
};

let dir: string;
let core: Core;
let clock: ManualClock;
let settlement: Settlement;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'pa-sched-'));
  // 22:30 in Shanghai on 26 Nov 2026.
  clock = new ManualClock(Date.UTC(2026, 10, 26, 14, 30));
  const config = parseConfig({ dataDir: dir, timeZone: 'Asia/Shanghai' });
  core = openCore(config, { clock });
  activateForTest(core);
  settlement = new Settlement({ store: core.store, clock, log: core.log, config, link: offline });
});

afterEach(() => {
  core.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('business date', () => {
  it('follows the time zone and the configured start hour', () => {
    const t = Date.UTC(2026, 10, 26, 17, 0); // 01:00 on the 27th in Shanghai
    expect(businessDate(t, 'Asia/Shanghai')).toBe('2026-11-27');
    expect(businessDate(t, 'UTC')).toBe('2026-11-26');
    expect(businessDate(t, 'Asia/Shanghai', 3)).toBe('2026-11-26');
  });
});

describe('cutover by tick', () => {
  it('a doubled tick closes one batch per business date', () => {
    core.payments.record({ type: 'sale', amount: 10_000, card: { pan: PAN } });
    const first = settlement.cutover({ reason: 'tick' });
    expect(first?.state).toBe('closed');
    core.payments.record({ type: 'sale', amount: 20_000, card: { pan: PAN } });
    expect(settlement.cutover({ reason: 'doubled tick' })).toBeNull();
    expect(core.store.batches.list().filter((b) => b.state !== 'open')).toHaveLength(1);
    // The next business date cuts over what was left, nothing lost.
    clock.advance(24 * 3600_000);
    const second = settlement.cutover({ reason: 'next night' });
    expect(second?.txnCount).toBe(1);
    expect(second?.totals?.netAmount).toBe(20_000);
  });

  it('missed ticks lose nothing: the next tick closes everything since the last cutover', () => {
    core.payments.record({ type: 'sale', amount: 10_000, card: { pan: PAN } });
    clock.advance(3 * 24 * 3600_000);
    core.payments.record({ type: 'sale', amount: 30_000, card: { pan: PAN } });
    const b = settlement.cutover({ reason: 'late tick' });
    expect(b?.txnCount).toBe(2);
    expect(b?.totals?.netAmount).toBe(40_000);
  });

  it('an empty batch is never closed; an explicit settle forces a second cutover the same day', () => {
    expect(settlement.cutover({ reason: 'tick' })).toBeNull();
    core.payments.record({ type: 'sale', amount: 10_000, card: { pan: PAN } });
    settlement.cutover({ reason: 'tick' });
    core.payments.record({ type: 'sale', amount: 10_000, card: { pan: PAN } });
    expect(settlement.cutover({ force: true, reason: 'settle now' })?.txnCount).toBe(1);
  });

  it('offline: batches queue in order and nothing is lost', async () => {
    for (let day = 0; day < 3; day++) {
      core.payments.record({ type: 'sale', amount: 1_000 * (day + 1), card: { pan: PAN } });
      settlement.cutover({ reason: 'tick' });
      clock.advance(24 * 3600_000);
    }
    const report = await settlement.settleAll();
    expect(report.settled).toEqual([]);
    expect(report.pending).toHaveLength(3);
    expect(core.store.batches.unsettled().map((b) => b.number)).toEqual([1, 2, 3]);
    expect(settlement.unsettledTransactions()).toBe(3);
  });
});

describe('serial runner', () => {
  it('never interleaves jobs and keeps going after a failing one', async () => {
    const runner = new SerialRunner(silentLogger());
    const trace: string[] = [];
    const job =
      (name: string, ms: number, fail = false) =>
      async () => {
        trace.push(`${name}:start`);
        await new Promise((r) => setTimeout(r, ms));
        trace.push(`${name}:end`);
        if (fail) throw new Error(name);
        return name;
      };
    const results = await Promise.allSettled([
      runner.run('a', job('a', 30)),
      runner.run('b', job('b', 5, true)),
      runner.run('c', job('c', 1)),
    ]);
    expect(trace).toEqual(['a:start', 'a:end', 'b:start', 'b:end', 'c:start', 'c:end']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(runner.depth).toBe(0);
  });
});

describe('node-cron scheduler', () => {
  it('fires real ticks in the configured time zone and never overlaps a slow one', async () => {
    let running = 0;
    let maxRunning = 0;
    let ticks = 0;
    const scheduler = new Scheduler({
      log: silentLogger(),
      timeZone: 'Asia/Shanghai',
      cutoverCron: '0 0 3 1 1 *',
      heartbeatCron: '* * * * * *',
      onCutover: async () => {},
      onHeartbeat: async () => {
        ticks++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setTimeout(r, 1500));
        running--;
      },
    });
    scheduler.start();
    await new Promise((r) => setTimeout(r, 3300));
    await scheduler.stop();
    expect(ticks).toBeGreaterThanOrEqual(1);
    expect(maxRunning).toBe(1);
  });

  it('refuses a bad cron expression with a typed config error', () => {
    try {
      new Scheduler({
        log: silentLogger(),
        timeZone: 'UTC',
        cutoverCron: 'every night',
        heartbeatCron: '* * * * *',
        onCutover: async () => {},
        onHeartbeat: async () => {},
      });
      expect.unreachable();
    } catch (e) {
      expect(isAgentError(e, 'CONFIG_INVALID')).toBe(true);
    }
  });
});
