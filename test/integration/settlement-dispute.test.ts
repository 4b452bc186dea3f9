/**
 * A batch the acquirer refuses for good never stalls settlement silently (issue 11, item 3):
 * a real agent against the real simulator over mutual TLS, whose ledger already holds the
 * batch's id settled with another digest (as a reborn batch would meet it). The batch goes
 * to 'disputed' with the acquirer's words, the terminal locks settlement-dispute (no new
 * sales), later batches still settle exactly once, status and the journal say so, and only
 * the acquirer's signed unlock clears the lock.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { PAN, SimWorld, sell, until } from '../fixtures/lifecycle-rig.ts';

let world: SimWorld;
let sim: AcquirerSimulator;

beforeAll(async () => {
  world = await SimWorld.start('pa-dispute-');
  sim = world.sim;
});
afterEach(() => world.afterEachTest());
afterAll(() => world.close());

describe('a batch refused for good', () => {
  it('goes to disputed, locks settlement-dispute, and the next batch still settles', async () => {
    const { agent } = await world.activeAgent('TD01');
    sell(agent, 3);
    const first = agent.settlement.cutover({ force: true, reason: 'test' })!;
    // The acquirer already holds this id, settled with another digest.
    const other = 'f'.repeat(64);
    const totals = {
      byType: [],
      transactionCount: 0,
      netAmount: 0,
      netFee: 0,
      netSettlement: 0,
      currency: 'CNY',
    };
    sim.ledger.settle({
      terminalId: 'TD01',
      batchId: first.batchId,
      digest: other,
      settlementId: 'S-EARLIER',
      terminalTotals: totals,
      settledTotals: totals,
      settledAt: Date.now(),
      via: 'submit',
    } as never);

    const report = await agent.settleNow('test');
    // The refused batch is set aside; the cutover's own (empty) batch is not closed, so the
    // report names the disputed one and nothing pending.
    expect(report.disputed).toEqual([first.batchId]);
    expect(report.pending).toEqual([]);
    expect(agent.core.store.batches.get(first.batchId)).toMatchObject({
      state: 'disputed',
      problem: expect.stringMatching(/already settled with another digest/),
    });
    const status = agent.status();
    expect(status.locks).toContain('settlement-dispute');
    expect(status.mayTransact).toBe(false);
    expect(status.disputedBatches).toEqual([
      { batchId: first.batchId, problem: expect.stringMatching(/another digest/) },
    ]);
    expect(agent.core.store.journal.events('batch-disputed')).toHaveLength(1);
    expect(() =>
      agent.core.payments.record({ type: 'sale', amount: 5_000, card: { pan: PAN } }),
    ).toThrow(expect.objectContaining({ code: 'LIFECYCLE_LOCKED' }));

    // Not resent for ever: another settlement run does not send it again.
    const submissions = sim.ledger.submissions({ terminalId: 'TD01', batchId: first.batchId });
    await agent.settleNow('again');
    expect(sim.ledger.submissions({ terminalId: 'TD01', batchId: first.batchId })).toHaveLength(
      submissions.length,
    );
    expect(sim.ledger.settlement('TD01', first.batchId)?.digest).toBe(other);

    // The acquirer ends the dispute; later batches settle as usual, exactly once.
    sim.issueCommand('TD01', { unlock: { source: 'settlement-dispute', reason: 'reconciled' } });
    await until(() => agent.core.terminal.mayTransact().allowed, 'the acquirer unlock');
    sell(agent, 2, 7_000);
    const next = await agent.settleNow('after the dispute');
    expect(next.settled).toHaveLength(1);
    expect(next.error).toBeUndefined();
    expect(sim.ledger.settlementCount('TD01', next.settled[0]!)).toBe(1);
    expect(agent.core.store.batches.get(first.batchId)?.state).toBe('disputed');
  }, 60_000);
});
