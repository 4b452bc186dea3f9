import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openCore, type Core } from '../../agent/runtime/core.ts';
import { activateForTest } from '../fixtures/core.ts';
import { ManualClock } from '../../base/clock.ts';
import { Settlement, type AcquirerLink } from '../../agent/policy/settlement.ts';
import { Forwarder } from '../../agent/policy/forwarding.ts';
import { PaymentClient, PaymentSocketServer } from '../../agent/runtime/payment-socket.ts';
import { isAgentError } from '../../base/errors.ts';

/**
 * Offline approvals are journaled as pending-offline within the configured limits (per
 * transaction, total not yet answered by the acquirer, age), forwarded as advices, and
 * settled in their batch once answered (test/integration/store-and-forward.test.ts has the rest).
 */
const PAN = '4111111111111111';
let dir: string;
let core: Core;
let clock: ManualClock;

const code = (fn: () => unknown): string => {
  try {
    fn();
    return 'accepted';
  } catch (e) {
    if (isAgentError(e)) return e.code;
    throw e;
  }
};

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'pa-offline-'));
  clock = new ManualClock(Date.UTC(2026, 10, 26, 6));
  core = openCore(
    { dataDir: dir, offline: { maxAmount: 50_000, maxTotal: 120_000, maxAgeMs: 3_600_000 } },
    { clock },
  );
  activateForTest(core);
});

afterEach(() => {
  core.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('offline approvals', () => {
  it('are journaled pending-offline within the per-transaction, total and age limits', () => {
    const offline =
      (amount: number, approvedAt = clock.now()) =>
      () =>
        core.payments.record({
          type: 'sale',
          amount,
          card: { pan: PAN },
          status: 'pending-offline',
          approvedAt,
        });
    expect(code(offline(50_001))).toBe('TXN_OFFLINE_LIMIT');
    expect(code(offline(50_000))).toBe('accepted');
    expect(code(offline(50_000))).toBe('accepted');
    // 100,000 pending: 20,000 more fits under 120,000, one fen more does not.
    expect(code(offline(20_001))).toBe('TXN_OFFLINE_LIMIT');
    expect(code(offline(20_000))).toBe('accepted');
    expect(code(offline(1_000, clock.now() - 3_600_001))).toBe('TXN_OFFLINE_LIMIT');
    expect(core.payments.pendingOfflineTotal()).toBe(120_000);
    expect(core.store.journal.events('txn-refused')).toHaveLength(3);
  });

  it('are forwarded as advices before their batch closes, and the answer frees the allowance', async () => {
    core.payments.record({
      type: 'sale',
      amount: 50_000,
      card: { pan: PAN },
      status: 'pending-offline',
    });
    core.payments.record({ type: 'sale', amount: 10_000, card: { pan: PAN } });
    const acquirer: AcquirerLink = {
      isUp: true,
      request: async (body) => {
        if (body.adviceBatch) {
          return {
            adviceBatchAck: {
              outcomes: body.adviceBatch.advices!.map((a) => ({
                key: a.key,
                outcome: 'accepted',
                reference: 'ADV-1',
              })),
            },
          } as never;
        }
        const b = body.batchSubmit!;
        return {
          batchAck: {
            batchId: b.batchId,
            digest: b.digest,
            settlementId: 'S1',
            acquirerTotals: b.totals,
          },
        } as never;
      },
    };
    const deps = { store: core.store, clock, log: core.log, config: core.config, link: acquirer };
    const settlement = new Settlement(deps);
    // The batch does not close while its offline approval is unanswered.
    expect(settlement.cutover({ reason: 'test' })).toBeNull();
    expect(settlement.deferred).toMatchObject({ reason: 'test' });
    expect(core.payments.pendingOfflineTotal()).toBe(50_000);
    const round = await new Forwarder(deps).drain();
    expect(round).toMatchObject({ sent: 1, accepted: 1, remaining: 0 });
    expect(core.payments.pendingOfflineTotal()).toBe(0);
    const batch = settlement.cutover({ reason: 'test' })!;
    expect(batch.totals!.byType.find((t) => t.type === 'sale')).toMatchObject({
      count: 2,
      amount: 60_000,
    });
    await settlement.settleAll();
    expect(core.store.batches.get(batch.batchId)!.state).toBe('acked');
  });

  it('carry their approval time over the payment-app socket', async () => {
    const socketPath = path.join(dir, 'pay.sock');
    const server = new PaymentSocketServer({
      payments: core.payments,
      terminal: core.terminal,
      store: core.store,
      log: core.log,
    });
    await server.listen(socketPath);
    const client = await PaymentClient.connect(socketPath);
    try {
      await expect(
        client.record({
          type: 'sale',
          amount: 1_000,
          card: { pan: PAN },
          status: 'pending-offline',
          approvedAt: clock.now() - 7_200_000,
          localId: 'OFF-OLD',
        }),
      ).rejects.toMatchObject({ code: 'TXN_OFFLINE_LIMIT' });
      // Over the socket the approval time is required, and one from the future (a wrong unit,
      // another epoch) would dodge the age limit: both refused, as docs/protocol.md says.
      const offlineSale = { type: 'sale', amount: 1_000, card: { pan: PAN } } as const;
      const status = 'pending-offline';
      await expect(
        client.record({ ...offlineSale, status, localId: 'OFF-NO-TIME' }),
      ).rejects.toMatchObject({ code: 'TXN_INVALID', message: /approved_at_ms/ });
      await expect(
        client.record({
          ...offlineSale,
          status,
          localId: 'OFF-FUTURE',
          approvedAt: clock.now() + 60_001,
        }),
      ).rejects.toMatchObject({ code: 'TXN_INVALID', message: /later than the terminal clock/ });
      expect(
        (
          await client.record({
            ...offlineSale,
            status,
            localId: 'OFF-LEEWAY',
            approvedAt: clock.now() + 60_000,
          })
        ).status,
      ).toBe('pending-offline');
      const ok = await client.record({
        type: 'sale',
        amount: 1_000,
        card: { pan: PAN },
        status: 'pending-offline',
        approvedAt: clock.now(),
        localId: 'OFF-OK',
      });
      expect(ok.status).toBe('pending-offline');
    } finally {
      client.close();
      await server.close();
    }
  });

  it('outcomes too many for one reply frame come in pages that fit, never as a reply left unsent', async () => {
    const n = 40;
    for (let i = 0; i < n; i++)
      core.payments.record({
        type: 'sale',
        amount: 1_000,
        card: { pan: PAN },
        status: 'pending-offline',
        localId: `OFFLINE-${String(i).padStart(3, '0')}-${'x'.repeat(48)}`,
      });
    const link: AcquirerLink = {
      isUp: true,
      request: async (body) =>
        ({
          adviceBatchAck: {
            outcomes: body.adviceBatch!.advices!.map((a) => ({
              key: a.key,
              outcome: 'accepted',
              reference: `ADV-${'R'.repeat(56)}`,
            })),
          },
        }) as never,
    };
    const deps = { store: core.store, clock, log: core.log, config: core.config, link };
    expect(await new Forwarder(deps).drain()).toMatchObject({ accepted: n });
    // A small frame limit stands in for 1,000 outcomes against the real 64 KiB.
    const socketPath = path.join(dir, 'pages.sock');
    const maxFrameBytes = 2_048;
    const server = new PaymentSocketServer({
      payments: core.payments,
      terminal: core.terminal,
      store: core.store,
      log: core.log,
      maxFrameBytes,
    });
    await server.listen(socketPath);
    const client = await PaymentClient.connect(socketPath, { requestTimeoutMs: 3_000 });
    try {
      const seen: string[] = [];
      let after = 0;
      for (let page = 0; page < n; page++) {
        const r = await client.adviceOutcomes(after, 1_000);
        if (!r.outcomes!.length) break;
        expect(r.outcomes!.length).toBeLessThan(n);
        seen.push(...r.outcomes!.map((o) => o.localId!));
        after = Number(r.outcomes!.at(-1)!.outcomeSeq);
      }
      expect(seen).toHaveLength(n);
      expect(seen).toEqual([...seen].sort());
    } finally {
      client.close();
      await server.close();
    }
  });
});
