/**
 * The windowed detail upload (docs/protocol.md, "Detail upload window") against the acquirer
 * simulator over mutual TLS on 127.0.0.1: several chunks in flight within the smaller of the two
 * windows, a link lost mid-upload resumes from the chunks not acknowledged (never from chunk 0),
 * a restarted settlement resumes from the acquirer's next_missing, and the batch is settled once,
 * on the detail, in every case.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openCore, type Core } from '../../agent/runtime/core.ts';
import { activateForTest } from '../fixtures/core.ts';
import { Settlement, type AcquirerLink } from '../../agent/policy/settlement.ts';
import { AcquirerChannel } from '../../protocol/channel.ts';
import { ensureTlsMaterial } from '../../protocol/tls-material.ts';
import type { Batch } from '../../storage/batches.ts';
import type { Envelope } from '../../protocol/messages.ts';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import type { BehaviourPatch } from '../../simulator/behaviour.ts';
import { CardSim } from '../../simulator/card-sim.ts';

const TID = 'T0001';
const ROWS_PER_CHUNK = 5;
const root = mkdtempSync(join(tmpdir(), 'pos-detail-'));
const tlsDir = join(root, 'tls');
const closers: Array<() => Promise<void>> = [];

beforeAll(() => ensureTlsMaterial(tlsDir, [TID]));
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What the terminal sent and heard, chunk by chunk, seen from its side of the link. */
class ChunkLog {
  sent: number[] = [];
  acked = new Set<number>();
  inFlight = 0;
  maxInFlight = 0;
  /** Chunks acknowledged when the first request failed (the link was lost). */
  ackedAtFailure: Set<number> | undefined;
  sentAtFailure = 0;
}

interface Rig {
  sim: AcquirerSimulator;
  core: Core;
  channel: AcquirerChannel;
  link: AcquirerLink;
  log: ChunkLog;
  settlement: Settlement;
  batch: Batch;
}

async function rig(opts: {
  behaviour?: BehaviourPatch;
  window?: number;
  sales?: number;
  /** A link with request() only: chunks go as DetailRow objects, not encoded rows. */
  objects?: boolean;
}): Promise<Rig> {
  const dir = mkdtempSync(join(root, 'scenario-'));
  const sim = await AcquirerSimulator.start({
    dataDir: join(dir, 'acquirer'),
    tlsDir,
    clientIds: [TID],
    behaviour: { settle: 'out-of-balance', ...opts.behaviour },
  });
  const core = openCore({
    terminalId: TID,
    dataDir: join(dir, 'agent'),
    settlement: { detailChunkRows: ROWS_PER_CHUNK, detailWindow: opts.window ?? 4 },
  });
  activateForTest(core);
  const channel = new AcquirerChannel({
    terminalId: TID,
    tls: sim.clientTls(TID),
    helloFactory: () => ({ firmwareVersion: 'test', lifecycleState: 'active' }),
    backoff: { initialMs: 10, maxMs: 100 },
    requestTimeoutMs: 5_000,
    heartbeatIntervalMs: 60_000,
  });
  closers.push(async () => {
    await channel.close();
    core.close();
    await sim.stop();
  });
  const log = new ChunkLog();
  const logged = (index: number, request: () => Promise<Envelope>): Promise<Envelope> => {
    // Only chunks that went onto a live link count as sent (a request made while the link
    // is down is refused at once and never reaches the acquirer).
    if (!channel.isUp) return request();
    log.sent.push(index);
    log.maxInFlight = Math.max(log.maxInFlight, ++log.inFlight);
    return request().then(
      (reply) => {
        log.inFlight--;
        if (reply.detailAck) log.acked.add(index);
        return reply;
      },
      (e: unknown) => {
        log.inFlight--;
        if (!log.ackedAtFailure) {
          log.ackedAtFailure = new Set(log.acked);
          log.sentAtFailure = log.sent.length;
        }
        throw e;
      },
    );
  };
  const link: AcquirerLink = {
    get isUp() {
      return channel.isUp;
    },
    request(body, o) {
      const index = body.batchDetailChunk?.chunkIndex;
      if (index === undefined || index === null) return channel.request(body, o);
      return logged(index, () => channel.request(body, o));
    },
    ...(opts.objects
      ? {}
      : {
          requestDetailChunk: (header, rows) =>
            logged(header.chunkIndex ?? 0, () => channel.requestDetailChunk(header, rows)),
        }),
  };
  await new CardSim(7).drive(core.payments, {
    count: opts.sales ?? 100,
    mix: { sale: 8, refund: 1, declined: 1 },
  });
  const settlement = newSettlement(core, link);
  const batch = settlement.cutover({ force: true, reason: 'test' })!;
  channel.start();
  await channel.waitUntilUp(5_000);
  return { sim, core, channel, link, log, settlement, batch };
}

function newSettlement(core: Core, link: AcquirerLink): Settlement {
  return new Settlement({
    store: core.store,
    clock: core.clock,
    log: core.log,
    config: core.config,
    link,
  });
}

/** settleAll until the batch is settled, waiting for the link to come back between tries. */
async function settleUntilDone(r: Rig, settlement = r.settlement): Promise<number> {
  let tries = 0;
  for (const end = Date.now() + 15_000; ;) {
    if (!r.channel.isUp) await r.channel.waitUntilUp(Math.max(1, end - Date.now()));
    tries++;
    const report = await settlement.settleAll();
    if (report.pending.length === 0) return tries;
    if (Date.now() > end) throw new Error(`no convergence: ${report.error?.message}`);
  }
}

/** Settled once, on the rows, and every chunk of the key is at the acquirer. */
function expectSettledOnDetail(r: Rig): Map<number, number> {
  const b = r.core.store.batches.get(r.batch.batchId)!;
  expect(b.state).toBe('resolved');
  expect(r.sim.ledger.settlementCount(TID, b.batchId)).toBe(1);
  expect(r.sim.ledger.settlement(TID, b.batchId)).toMatchObject({
    via: 'detail',
    digest: b.digest,
    settlementId: b.settlementId,
  });
  const count = Math.ceil(b.txnCount! / ROWS_PER_CHUNK);
  expect(r.sim.ledger.outOfBalance(TID, b.batchId, b.digest!)).toMatchObject({
    detailDigestOk: true,
    chunkCount: count,
  });
  expect(r.sim.ledger.detailRows(TID, b.batchId, b.digest!)).toHaveLength(b.txnCount!);
  const receipts = r.sim.ledger.detailReceipts(TID, b.batchId, b.digest!);
  expect(receipts.size).toBe(count);
  return receipts;
}

describe('windowed detail upload', () => {
  it('keeps several chunks in flight, never more than the smaller window', async () => {
    const r = await rig({ window: 4 });
    // A slow acquirer (every answer 100 ms late), so the window fills before the first ack.
    r.sim.behave({ slowMs: 100 });
    expect(await settleUntilDone(r)).toBe(1);
    const receipts = expectSettledOnDetail(r);
    expect(r.log.maxInFlight).toBe(4);
    // Nothing was lost, so nothing went twice.
    expect([...receipts.values()].every((n) => n === 1)).toBe(true);
    expect(r.log.sent).toHaveLength(receipts.size);
  });

  it("takes the acquirer's smaller window, and one chunk at a time from one that says nothing", async () => {
    const two = await rig({ window: 8, behaviour: { detailWindow: 2 } });
    two.sim.behave({ slowMs: 100 });
    await settleUntilDone(two);
    expectSettledOnDetail(two);
    expect(two.log.maxInFlight).toBe(2);
    const silent = await rig({ window: 8, behaviour: { detailWindow: 0 } });
    await settleUntilDone(silent);
    expectSettledOnDetail(silent);
    expect(silent.log.maxInFlight).toBe(1);
  });

  it('a link lost mid-upload resumes from the chunks not acknowledged, settled once', async () => {
    const r = await rig({ window: 4 });
    let chunks = 0;
    r.sim.on('received', (_cn: string, env: { body?: string }) => {
      // The 7th chunk is stored, then the link drops without its ack.
      if (env.body === 'batchDetailChunk' && ++chunks === 7)
        r.sim.behave({ dropAfterDetailChunk: 1 });
    });
    expect(await settleUntilDone(r)).toBeGreaterThan(1);
    const receipts = expectSettledOnDetail(r);
    const ackedBefore = r.log.ackedAtFailure!;
    expect(ackedBefore.size).toBeGreaterThanOrEqual(5);
    const after = r.log.sent.slice(r.log.sentAtFailure);
    // Resumed where the acknowledgements stopped: no acknowledged chunk went again, not chunk 0.
    expect(after.filter((i) => ackedBefore.has(i))).toEqual([]);
    expect(after[0]).toBe(Math.min(...[...receipts.keys()].filter((i) => !ackedBefore.has(i))));
    for (const i of ackedBefore) expect(receipts.get(i)).toBe(1);
    // At most a window's worth went twice (the stored chunk whose ack was lost among them).
    const twice = [...receipts.values()].filter((n) => n > 1).length;
    expect(twice).toBeGreaterThanOrEqual(1);
    expect(twice).toBeLessThanOrEqual(4);
  });

  it('after a restart the probe learns next_missing and skips what the acquirer holds', async () => {
    const r = await rig({ window: 4 });
    let chunks = 0;
    r.sim.on('received', (_cn: string, env: { body?: string }) => {
      if (env.body === 'batchDetailChunk' && ++chunks === 9)
        r.sim.behave({ dropAfterDetailChunk: 1 });
    });
    const first = await r.settlement.settleAll();
    expect(first.pending).toEqual([r.batch.batchId]);
    const { batchId, digest } = r.batch;
    const count = Math.ceil(r.batch.txnCount! / ROWS_PER_CHUNK);
    const held = r.sim.ledger.nextMissingChunk(TID, batchId, digest!, count);
    expect(held).toBeGreaterThanOrEqual(5);
    // A fresh Settlement knows nothing of the upload: as after a restart of the agent.
    const restarted = newSettlement(r.core, r.link);
    const sentBefore = r.log.sent.length;
    await settleUntilDone(r, restarted);
    const receipts = expectSettledOnDetail(r);
    const after = r.log.sent.slice(sentBefore);
    expect(after[0]).toBe(0);
    expect(after.filter((i) => i > 0 && i < held)).toEqual([]);
    for (let i = 1; i < held; i++) expect(receipts.get(i)).toBe(1);
    expect(receipts.get(0)).toBe(2);
  });

  it('sends the same rows whether the link takes encoded rows or DetailRow objects', async () => {
    const encoded = await rig({ window: 4, sales: 37 });
    const objects = await rig({ window: 4, sales: 37, objects: true });
    for (const r of [encoded, objects]) {
      await settleUntilDone(r);
      expectSettledOnDetail(r);
    }
    const rowsOf = (r: Rig) =>
      r.sim.ledger.detailRows(TID, r.batch.batchId, r.batch.digest!).map((x) => ({ ...x, seq: 0 }));
    // Two journals of the same card simulator's sales: the same rows but for seq and hash.
    const strip = (r: Rig) =>
      rowsOf(r).map(({ hash: _h, localId: _l, createdAtMs: _c, ...x }) => x);
    expect(strip(encoded)).toEqual(strip(objects));
    expect(encoded.log.sent.length).toBe(objects.log.sent.length);
  });
});
