/**
 * Store-and-forward of offline approvals against the acquirer simulator over mutual TLS: each
 * offline sale (and refund of one) goes to the acquirer as an advice in journal order, is
 * answered accepted or declined, and the answer is journaled as its own row referencing the
 * sale. A decline leaves the merchant's settlement and its fee; an advice nobody answers
 * expires into a visible problem; deactivation waits for the queue; the offline allowance is
 * freed only by the acquirer's answer. Every scenario reads the acquirer's own ledger.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { PaymentClient, PaymentSocketServer } from '../../agent/runtime/payment-socket.ts';
import { terminalCommands } from '../../agent/console/terminal-commands.ts';
import type { Agent } from '../../agent/runtime/agent.ts';
import { computeTotals } from '../../agent/policy/batch-totals.ts';
import type { CommandContext } from '../../agent/console/commands.ts';
import { formatTable, type TableSpec } from '../../agent/console/table.ts';
import { SimWorld, codeOf, until } from '../fixtures/lifecycle-rig.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const VISA = '4111111111111111';
const MASTERCARD = '5555555555554444';
let world: SimWorld;

beforeAll(async () => {
  world = await SimWorld.start('pa-saf-');
});
afterEach(async () => {
  await world.afterEachTest();
  world.sim.behave({
    advice: {
      mode: 'accept',
      declineOver: null,
      declineCardPrefixes: [],
      dropAfter: 0,
      dropBefore: 0,
    },
    duplicateAcks: false,
    deactivation: 'manual',
  });
});
afterAll(async () => {
  await world.close();
});

const offline = (agent: Agent, amount: number, pan = VISA) =>
  agent.core.payments.record({ type: 'sale', amount, card: { pan }, status: 'pending-offline' });

const outcomes = (agent: Agent) =>
  ['advice-accepted', 'advice-declined', 'advice-expired'].flatMap((e) =>
    agent.core.store.journal.events(e),
  );

async function consoleRun(agent: Agent, line: string[]): Promise<string> {
  const reg = terminalCommands(agent, agent['opts'].config, () => {});
  const printed: string[] = [];
  const ctx: CommandContext = {
    name: line[0]!,
    args: line.slice(1),
    flags: {},
    json: false,
    technician: 'tech1',
    loggedInAt: 0,
    signal: new AbortController().signal,
    print: (s: string) => void printed.push(s),
    logout: () => {},
    clearScreen: () => {},
  } as unknown as CommandContext;
  const out = await reg.get(line[0]!)!.run(ctx);
  const text =
    typeof out === 'string'
      ? out
      : out && typeof out === 'object' && 'columns' in out
        ? formatTable(out as TableSpec, { width: 200 }).join('\n')
        : JSON.stringify(out);
  return [...printed, text].join('\n');
}

describe('offline approvals are forwarded as advices', () => {
  it('in journal order, answered once each, journaled as rows referencing the sale', async () => {
    const { agent } = await world.activeAgent('TSAF01');
    const a = offline(agent, 12_000);
    const b = offline(agent, 8_000);
    const online = agent.core.payments.record({ type: 'sale', amount: 5_000, card: { pan: VISA } });
    const refund = agent.core.payments.record({
      type: 'refund',
      amount: 2_000,
      originalSeq: a.seq,
    });
    await until(
      () => agent.core.store.advices.stats().pending === 0 && outcomes(agent).length === 3,
      'answers',
    );
    const ledger = world.sim.ledger.advices.list('TSAF01');
    expect(ledger.map((x) => x.seq)).toEqual([a.seq, b.seq, refund.seq]);
    expect(ledger.every((x) => x.outcome === 'accepted' && x.receipts === 1)).toBe(true);
    expect(ledger.find((x) => x.seq === online.seq)).toBeUndefined();
    // Each answer is its own row, pointing at the advised row, carrying the acquirer's reference.
    const rows = agent.core.store.journal.events('advice-accepted');
    expect(rows.map((r) => agent.core.store.journal.get(r.seq)!)).toHaveLength(3);
    for (const x of ledger) {
      const q = agent.core.store.advices.get(x.seq)!;
      const row = agent.core.store.db
        .prepare('SELECT original_seq, detail FROM journal WHERE seq = ?')
        .get(q.outcomeSeq) as { original_seq: number; detail: string };
      expect(row.original_seq).toBe(x.seq);
      expect(JSON.parse(row.detail)).toMatchObject({ key: x.key, reference: x.reference });
    }
    // The originals were never touched: still pending-offline, and the chain verifies.
    expect(agent.core.store.journal.getTxn(a.seq)!.status).toBe('pending-offline');
    expect(agent.core.store.journal.verify().ok).toBe(true);
    const r = await agent.settleNow('test');
    expect(r.settled).toEqual([r.closed]);
    const batch = agent.core.store.batches.get(r.closed!)!;
    expect(batch.totals!.byType.find((t) => t.type === 'sale')).toMatchObject({
      count: 3,
      amount: 25_000,
    });
    expect(world.sim.ledger.settlement('TSAF01', batch.batchId)!.settledTotals).toEqual(
      batch.totals,
    );
  });

  it('a resend after a lost answer, and doubled answers, are never counted twice', async () => {
    const { agent } = await world.activeAgent('TSAF02');
    world.sim.behave({ advice: { dropAfter: 1 }, duplicateAcks: true });
    const seqs = [offline(agent, 1_500).seq, offline(agent, 2_500).seq];
    await until(
      () => agent.core.store.advices.stats().pending === 0,
      'answers after the lost one',
      15_000,
    );
    const ledger = world.sim.ledger.advices.list('TSAF02');
    expect(ledger.map((x) => x.seq)).toEqual(seqs);
    expect(Math.max(...ledger.map((x) => x.receipts))).toBeGreaterThanOrEqual(2);
    expect(outcomes(agent)).toHaveLength(2);
    expect(outcomes(agent).some((e) => e.detail.duplicate === true)).toBe(true);
  });
});

describe('a declined offline approval', () => {
  it('is journaled, leaves the batch totals and its fee, and reaches the payment app, console and CLI', async () => {
    const r = await world.activeAgent('TSAF03');
    const { agent } = r;
    world.sim.behave({ advice: { declineOver: 30_000, declineCardPrefixes: ['555555'] } });
    const socketPath = path.join(r.dataDir, 'pay.sock');
    const server = new PaymentSocketServer({
      payments: agent.core.payments,
      terminal: agent.core.terminal,
      store: agent.core.store,
      log: agent.log,
    });
    await server.listen(socketPath);
    const client = await PaymentClient.connect(socketPath);
    try {
      const big = offline(agent, 40_000);
      const card = offline(agent, 9_000, MASTERCARD);
      const ok = offline(agent, 10_000);
      const online = agent.core.payments.record({
        type: 'sale',
        amount: 20_000,
        card: { pan: VISA },
      });
      await until(() => agent.core.store.advices.stats().pending === 0, 'answers');
      const declined = agent.core.store.journal.events('advice-declined');
      expect(declined.map((e) => e.detail.reasonCode)).toEqual(['AMOUNT_LIMIT', 'CARD_RANGE']);
      // The payment app hears of it: by query, and on the outcome cursor.
      expect(await client.query(big.seq)).toMatchObject({
        adviceState: 'declined',
        adviceReasonCode: 'AMOUNT_LIMIT',
      });
      expect(await client.query(ok.seq)).toMatchObject({ adviceState: 'accepted' });
      expect((await client.query(online.seq)).adviceState).toBe('');
      const seen = await client.adviceOutcomes(0);
      expect(seen.pending).toBe(0);
      expect(seen.outcomes!.map((o) => [Number(o.seq), o.outcome])).toEqual([
        [big.seq, 'declined'],
        [card.seq, 'declined'],
        [ok.seq, 'accepted'],
      ]);
      const after = Number(seen.outcomes![1]!.outcomeSeq);
      expect((await client.adviceOutcomes(after)).outcomes!.map((o) => Number(o.seq))).toEqual([
        ok.seq,
      ]);
      // Console and CLI name it with its reason.
      expect(await consoleRun(agent, ['advices', 'declined'])).toMatch(
        /AMOUNT_LIMIT[\s\S]*CARD_RANGE/,
      );
      expect(await consoleRun(agent, ['status'])).toMatch(/0 waiting; 1 accepted, 2 declined/);
      // Into the batch: only the accepted offline sale and the online one, fees of those only.
      const s = await agent.settleNow('test');
      const batch = agent.core.store.batches.get(s.closed!)!;
      const sales = batch.totals!.byType.find((t) => t.type === 'sale')!;
      expect(sales).toMatchObject({ count: 2, amount: 30_000, fee: ok.fee + online.fee });
      expect(batch.totals!.netFee).toBe(ok.fee + online.fee);
      expect(batch.txnCount).toBe(4);
      expect(world.sim.ledger.settlement('TSAF03', batch.batchId)!.settledTotals).toEqual(
        batch.totals,
      );
      expect(agent.core.payments.pendingOfflineTotal()).toBe(0);
      // The declined sale cannot be refunded: the acquirer never paid it.
      expect(
        await codeOf(() =>
          agent.core.payments.record({ type: 'refund', amount: 100, originalSeq: big.seq }),
        ),
      ).toBe('TXN_ORIGINAL_NOT_FOUND');
    } finally {
      client.close();
      await server.close();
    }
    await agent.stop();
    const cli = execFileSync(
      process.execPath,
      ['bin/pos-agent.mjs', 'advices', '--only', 'declined', '--data', r.dataDir],
      {
        cwd: REPO,
      },
    ).toString();
    expect(cli).toMatch(/AMOUNT_LIMIT/);
    expect(cli).toMatch(/CARD_RANGE/);
  });
});

describe('nothing is stuck unseen', () => {
  it('an advice nobody answers expires into a visible problem and leaves the batch', async () => {
    const { agent } = await world.activeAgent('TSAF04', {
      forwarding: { expiryMs: 400, backoffInitialMs: 50, backoffMaxMs: 100 },
    });
    world.sim.behave({ advice: { mode: 'ignore' } });
    const sale = offline(agent, 7_000);
    const online = agent.core.payments.record({ type: 'sale', amount: 3_000, card: { pan: VISA } });
    await until(() => agent.status().advices.lastError !== null, 'a failed round');
    expect(agent.status().advices).toMatchObject({ pending: 1, expired: 0 });
    expect(agent.status().advices.oldestAgeMs).toBeGreaterThanOrEqual(0);
    // The batch waits for the advice: settle closes nothing yet.
    expect((await agent.settleNow('test')).closed).toBeNull();
    await until(() => {
      agent.forwarder.expireDue();
      return agent.status().advices.expired === 1;
    }, 'expiry');
    expect(agent.core.store.journal.events('advice-expired')[0]!.detail).toMatchObject({
      reasonCode: 'EXPIRED',
    });
    expect(await consoleRun(agent, ['status'])).toMatch(/1 EXPIRED/);
    // Still reserved against the offline allowance until the acquirer settles without it.
    expect(agent.core.payments.pendingOfflineTotal()).toBe(7_000);
    // The forwarding loop may have run the waiting cutover already; either way it settles once.
    await agent.settleNow('test');
    await until(() => agent.core.store.batches.list().some((b) => b.state === 'acked'), 'settled');
    expect(world.sim.ledger.settledBatches('TSAF04')).toHaveLength(1);
    const settled = agent.core.store.batches.list().find((b) => b.state === 'acked')!;
    expect(settled.totals!.byType.find((t) => t.type === 'sale')).toMatchObject({
      count: 1,
      amount: 3_000,
      fee: online.fee,
    });
    expect(agent.core.payments.pendingOfflineTotal()).toBe(0);
    expect(world.sim.ledger.advices.list('TSAF04')).toHaveLength(0);
    void sale;
  });

  it('the offline allowance is freed only by the answer, accepted or declined', async () => {
    const { agent } = await world.activeAgent('TSAF05', {
      offline: { maxAmount: 50_000, maxTotal: 50_000 },
    });
    world.sim.behave({ advice: { mode: 'ignore' } });
    offline(agent, 30_000);
    expect(await codeOf(() => offline(agent, 30_000))).toBe('TXN_OFFLINE_LIMIT');
    // Link up, advice sent, no answer: still reserved, whatever settlement does.
    await until(() => agent.status().advices.lastError !== null, 'a failed round');
    await agent.settleNow('test');
    expect(agent.core.payments.pendingOfflineTotal()).toBe(30_000);
    expect(await codeOf(() => offline(agent, 30_000))).toBe('TXN_OFFLINE_LIMIT');
    world.sim.behave({ advice: { mode: 'decline-all' } });
    await agent.forwardAdvices({ ignoreBackoff: true });
    expect(agent.core.payments.pendingOfflineTotal()).toBe(0);
    world.sim.behave({ advice: { mode: 'accept' } });
    const next = offline(agent, 30_000);
    await until(() => agent.core.store.advices.get(next.seq)?.outcome === 'accepted', 'accepted');
    expect(agent.core.payments.pendingOfflineTotal()).toBe(0);
    expect(await codeOf(() => offline(agent, 50_000))).toBe('ok');
  });
});

describe('deactivation', () => {
  it('waits for the advice queue to drain, then settles and deactivates', async () => {
    const { agent } = await world.activeAgent('TSAF06');
    world.sim.behave({ advice: { mode: 'ignore' }, deactivation: 'approve' });
    const sale = offline(agent, 6_000);
    const online = agent.core.payments.record({ type: 'sale', amount: 4_000, card: { pan: VISA } });
    await agent.requestDeactivation('closing the shop', 'console:tech1');
    await until(() => agent.core.terminal.status().state === 'deactivating', 'approval');
    expect(await agent.finalizeDeactivation()).toBe(false);
    expect(agent.core.terminal.status().state).toBe('deactivating');
    world.sim.behave({ advice: { mode: 'accept' } });
    await agent.forwardAdvices({ ignoreBackoff: true });
    await until(() => agent.core.terminal.status().state === 'deactivated', 'deactivated');
    expect(world.sim.ledger.advices.list('TSAF06').map((x) => [x.seq, x.outcome])).toEqual([
      [sale.seq, 'accepted'],
    ]);
    const [batch] = world.sim.ledger.settledBatches('TSAF06');
    expect(batch!.settledTotals).toEqual(
      computeTotals(agent.core.store.journal.batchSums(batch!.batchId), 'CNY'),
    );
    expect(batch!.settledTotals.netAmount).toBe(10_000);
    void online;
  });
});
