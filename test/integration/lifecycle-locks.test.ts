/**
 * Risk and locks per source, against a real acquirer simulator over mutual TLS with real
 * in-process agents: a risk flag landing in the middle of an online authorisation, the offline
 * unlock code, local risk rules reported on contact, and every lock source cleared only by its
 * own unlock (maintenance draining an authorisation in flight first).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { formatUnlockCode } from '../../agent/policy/unlock-code.ts';
import {
  PAN,
  SimWorld,
  codeOf,
  sell,
  sleep,
  until,
  type AgentRig,
} from '../fixtures/lifecycle-rig.ts';

let world: SimWorld;
let sim: AcquirerSimulator;

beforeAll(async () => {
  world = await SimWorld.start('pa-locks-');
  sim = world.sim;
});
afterEach(() => world.afterEachTest());
afterAll(() => world.close());

const activeAgent = (id: string, extra?: Record<string, unknown>) => world.activeAgent(id, extra);
const locks = (r: AgentRig) => r.agent.core.terminal.status().locks;

describe('risk', () => {
  it('a risk flag during an online authorisation declines it, reverses it and locks until an unlock code', async () => {
    const r = await activeAgent('TR01');
    const { agent } = r;
    const earlier = sell(agent, 3);
    let release!: () => void;
    let hostCalls = 0;
    const gate = new Promise<void>((res) => (release = res));
    const pending = agent.core.payments.authorize(
      { type: 'sale', amount: 25_000, card: { pan: PAN }, localId: 'POS-A1' },
      async () => {
        hostCalls++;
        await gate;
        return { approved: true, authCode: 'H0ST01' };
      },
    );
    await until(() => hostCalls === 1, 'the host to be asked');
    sim.issueCommand('TR01', { riskFlag: { code: 'R-CT', severity: 7, reason: 'card testing' } });
    await until(() => locks(r).includes('risk'), 'the risk lock');
    release();
    const answer = await pending;
    expect(answer.status).toBe('declined');
    expect(answer.declinedBecause).toMatch(/risk/);
    const sale = agent.core.store.journal.getTxn(answer.seq)!;
    const reversal = agent.core.store.journal.getTxn(answer.reversedSeq!)!;
    expect([sale.type, sale.status, sale.authCode]).toEqual(['sale', 'approved', 'H0ST01']);
    expect([reversal.type, reversal.originalSeq, reversal.amount]).toEqual([
      'reversal',
      sale.seq,
      25_000,
    ]);
    expect(reversal.fee).toBe(sale.fee);
    let asked = false;
    const next = agent.core.payments.authorize(
      { type: 'sale', amount: 3_000, card: { pan: PAN } },
      async () => ((asked = true), { approved: true }),
    );
    expect(await codeOf(() => next)).toBe('LIFECYCLE_LOCKED');
    expect(asked).toBe(false);
    // Earlier transactions still settle while risk-locked, exactly once.
    const settled = await agent.settleNow('test');
    expect(settled.error).toBeUndefined();
    expect(settled.settled).toHaveLength(1);
    expect(sim.ledger.settlementCount('TR01', settled.settled[0]!)).toBe(1);
    const batch = agent.core.store.batches.get(settled.settled[0]!)!;
    expect(batch.txnCount).toBe(earlier.length + 2);
    // A technician alone cannot clear it.
    expect(
      await codeOf(() =>
        agent.core.terminal.applyOrRecord(
          { type: 'unlock', source: 'risk', by: 'technician' },
          'please',
          'console:tech1',
        ),
      ),
    ).toBe('LIFECYCLE_REFUSED');
    expect(agent.core.store.journal.events('lifecycle-refused')).toHaveLength(1);
    // Offline unlock codes: expired, other terminal and reused ones are refused.
    const now = Date.now();
    const codeFor = (terminalId: string, challenge: string, expiresAt: number) =>
      formatUnlockCode(expiresAt, sim.signUnlockGrant(terminalId, challenge, expiresAt).signature);
    const c1 = agent.unlockCodes.challenge('risk').challenge;
    const bad: Array<[string, string]> = [
      ['expired', codeFor('TR01', c1, now - 1_000)],
      ['other terminal', codeFor('TR02', c1, now + 600_000)],
    ];
    for (const [name, code] of bad) {
      expect(await codeOf(() => agent.unlockCodes.redeem(c1, code, 'console:tech1')), name).toBe(
        'UNLOCK_CODE_INVALID',
      );
      expect(locks(r), name).toEqual(['risk']);
    }
    const good = codeFor('TR01', c1, now + 600_000);
    agent.unlockCodes.redeem(c1, good, 'console:tech1');
    expect(locks(r)).toEqual([]);
    sim.issueCommand('TR01', { riskFlag: { code: 'R-CT2', severity: 9, reason: 'again' } });
    await until(() => locks(r).includes('risk'), 'the second risk lock');
    expect(await codeOf(() => agent.unlockCodes.redeem(c1, good, 'console:tech1'))).toBe(
      'UNLOCK_CODE_INVALID',
    );
    expect(locks(r)).toEqual(['risk']);
    expect(agent.core.store.journal.events('unlock-code-refused')).toHaveLength(3);
    expect(agent.core.store.journal.events('unlock-code-accepted')).toHaveLength(1);
  });

  it('a risk flag below the configured severity only records; a local rule tripped offline is reported on contact', async () => {
    const r = await activeAgent('TR02', { risk: { lockSeverity: 6 } });
    sim.issueCommand('TR02', { riskFlag: { code: 'R-LOW', severity: 5, reason: 'watch' } });
    await until(() => r.agent.core.store.journal.events('risk-flag').length === 1, 'risk flag');
    expect(locks(r)).toEqual([]);
    sim.behave({ refuseConnections: true, riskFlagSeverity: 8 });
    await until(() => !r.agent.channel.isUp, 'the link to drop');
    for (let i = 0; i < 5; i++)
      r.agent.core.payments.record({ type: 'sale', amount: 50, card: { pan: PAN } });
    expect(locks(r)).toEqual(['risk']);
    expect(sim.ledger.riskReports('TR02')).toHaveLength(0);
    sim.behave({ refuseConnections: false });
    await until(() => sim.ledger.riskReports('TR02').length === 1, 'the risk report');
    expect(sim.ledger.riskReports('TR02')[0]!.rule).toBe('tiny-burst');
    // The acquirer answers the report with a signed flag: recorded, the lock stays risk.
    await until(() => r.agent.core.store.journal.events('risk-flag').length === 2, 'answer flag');
    expect(locks(r)).toEqual(['risk']);
    expect(r.agent.core.store.state.getJson<unknown[]>('risk_reports_pending')).toEqual([]);
  });
});

describe('locks per source', () => {
  it('technician, remote, hardware-fault and maintenance: each unlock clears only its own', async () => {
    const r = await activeAgent('TL01');
    const { agent, config } = r;
    const t = agent.core.terminal;
    t.applyOrRecord({ type: 'lock', source: 'technician', by: 'technician' }, 'x', 'console:t1');
    sim.issueCommand('TL01', { lock: { reason: 'audit' } });
    await until(() => locks(r).includes('remote'), 'remote lock');
    config.selftest.minFreeBytes = Number.MAX_SAFE_INTEGER; // the disk now looks full
    expect((await agent.runSelfTest(false)).ok).toBe(false);
    expect(await agent.enterMaintenance('console:t1')).toEqual({ drained: true });
    expect(locks(r)).toEqual(['hardware-fault', 'maintenance', 'remote', 'technician']);
    const steps: Array<[string, () => Promise<unknown> | unknown, string[], string?]> = [
      [
        'technician may not clear remote',
        () => t.applyOrRecord({ type: 'unlock', source: 'remote', by: 'technician' }, 'x', 'c'),
        ['hardware-fault', 'maintenance', 'remote', 'technician'],
        'LIFECYCLE_REFUSED',
      ],
      [
        'a second failing self-test changes nothing',
        () => agent.runSelfTest(false),
        ['hardware-fault', 'maintenance', 'remote', 'technician'],
      ],
      [
        'remote unlock',
        async () => {
          sim.issueCommand('TL01', { unlock: { source: 'remote', reason: 'done' } });
          await until(() => !locks(r).includes('remote'), 'remote unlock');
        },
        ['hardware-fault', 'maintenance', 'technician'],
      ],
      [
        'self-test pass',
        () => {
          config.selftest.minFreeBytes = 0;
          return agent.runSelfTest(false);
        },
        ['maintenance', 'technician'],
      ],
      [
        'maintenance unlock',
        () =>
          t.applyOrRecord({ type: 'unlock', source: 'maintenance', by: 'technician' }, 'x', 'c'),
        ['technician'],
      ],
    ];
    for (const [name, step, left, code = 'ok'] of steps) {
      expect(await codeOf(step), name).toBe(code);
      expect(locks(r), name).toEqual(left);
      expect(t.mayTransact().allowed, name).toBe(false);
      expect(await codeOf(() => sell(agent, 1)), name).toBe('LIFECYCLE_LOCKED');
    }
    t.applyOrRecord({ type: 'unlock', source: 'technician', by: 'technician' }, 'x', 'c');
    expect(t.mayTransact().allowed).toBe(true);
    expect(sell(agent, 1)).toHaveLength(1);
  });

  it('maintenance waits for an authorisation in flight, refusing new ones; past the drain timeout it locks anyway', async () => {
    const r = await activeAgent('TL02', { maintenance: { drainTimeoutMs: 5_000 } });
    const { agent, config } = r;
    const gated = () => {
      let release!: () => void;
      let called = false;
      const gate = new Promise<void>((res) => (release = res));
      const host = async () => ((called = true), await gate, { approved: true, authCode: 'A1' });
      return { host, release: () => release(), called: () => called };
    };
    const first = gated();
    const inFlight = agent.core.payments.authorize(
      { type: 'sale', amount: 8_000, card: { pan: PAN } },
      first.host,
    );
    await until(first.called, 'the host');
    const maintenance = agent.enterMaintenance('console:t1');
    await sleep(100);
    expect(locks(r)).toEqual([]);
    expect(await codeOf(() => sell(agent, 1))).toBe('LIFECYCLE_LOCKED');
    first.release();
    expect((await inFlight).status).toBe('approved');
    expect(await maintenance).toEqual({ drained: true });
    expect(locks(r)).toEqual(['maintenance']);
    agent.core.terminal.apply(
      { type: 'unlock', source: 'maintenance', by: 'technician' },
      'x',
      'c',
    );
    // An authorisation that outlives the drain timeout: the lock lands, the approval is reversed.
    config.maintenance.drainTimeoutMs = 200;
    const slow = gated();
    const late = agent.core.payments.authorize(
      { type: 'sale', amount: 9_000, card: { pan: PAN } },
      slow.host,
    );
    await until(slow.called, 'the slow host');
    expect(await agent.enterMaintenance('console:t1')).toEqual({ drained: false });
    expect(locks(r)).toEqual(['maintenance']);
    slow.release();
    const answer = await late;
    expect(answer.status).toBe('declined');
    expect(agent.core.store.journal.getTxn(answer.reversedSeq!)?.type).toBe('reversal');
  });
});
