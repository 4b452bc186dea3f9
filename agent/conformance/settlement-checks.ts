/**
 * Settlement as docs/protocol.md requires of the acquirer: a submit is settled once and
 * acknowledged with its key echoed and the acquirer's totals; a resend of the key is a duplicate
 * with the same settlement id; the same batch id with another digest is refused; a batch in
 * dispute is answered OutOfBalance, takes its detail in chunks and settles on the detail.
 */
import { createHash } from 'node:crypto';
import type { pos } from '../../protocol/messages.ts';
import { totalsEqual } from '../policy/batch-totals.ts';
import { totalsFromWire } from '../policy/settlement.ts';
import { syntheticBatch, type SyntheticBatch } from './batch.ts';
import { envelopeProblem, expectThat, type KitContext } from './kit.ts';

/** Batch ids with this prefix are answered OutOfBalance until their detail is in (docs). */
const OOB_PREFIX = 'CONFORMANCE-OOB-';

async function submit(ctx: KitContext, s: pos.v1.IBatchSubmit): Promise<pos.v1.Envelope> {
  const { reply } = await ctx.link.request({ batchSubmit: s }, ctx.o.timeoutMs);
  const problem = envelopeProblem(ctx, reply);
  expectThat(!problem, problem!);
  return reply;
}

function checkAck(b: SyntheticBatch, reply: pos.v1.Envelope): pos.v1.IBatchAck {
  expectThat(reply.body === 'batchAck', `answered with ${bodyText(reply)}, not BatchAck`);
  const ack = reply.batchAck!;
  expectThat(
    ack.batchId === b.batchId && ack.digest === b.digest,
    'BatchAck does not echo batch_id and digest',
  );
  expectThat(ack.settlementId, 'BatchAck has no settlement_id');
  expectThat(ack.acquirerTotals, 'BatchAck has no acquirer_totals');
  return ack;
}

function bodyText(env: pos.v1.Envelope): string {
  return env.body === 'error'
    ? `ErrorReply ${env.error?.code}: ${env.error?.message}`
    : String(env.body);
}

async function batchSubmit(ctx: KitContext): Promise<void> {
  const state = ctx.settle;
  const b = syntheticBatch('CONFORMANCE-');
  state.first = b;
  const ack = checkAck(b, await submit(ctx, b.submit));
  expectThat(!ack.duplicate, 'a first submit was acknowledged as a duplicate');
  expectThat(
    totalsEqual(totalsFromWire(ack.acquirerTotals!), b.totals),
    'acquirer_totals differ from the totals submitted',
  );
  state.firstSettlement = ack.settlementId ?? undefined;
  ctx.rec('batch submit', true, `settled ${b.batchId.slice(0, 24)}… as ${ack.settlementId}`);
}

async function resend(ctx: KitContext): Promise<void> {
  const state = ctx.settle;
  const b = state.first;
  expectThat(b && state.firstSettlement, 'no settled batch to resend');
  const ack = checkAck(b, await submit(ctx, b.submit));
  expectThat(ack.duplicate, 'a resend of a settled key was not marked duplicate');
  expectThat(
    ack.settlementId === state.firstSettlement,
    `a resend got settlement ${ack.settlementId}, the first ${state.firstSettlement}: settled twice`,
  );
  ctx.rec('resend same key', true, `duplicate=true, same settlement id ${ack.settlementId}`);
}

async function otherDigest(ctx: KitContext): Promise<void> {
  const state = ctx.settle;
  const b = state.first;
  expectThat(b, 'no settled batch');
  const digest = createHash('sha256').update(`${b.digest}/altered`).digest('hex');
  const reply = await submit(ctx, { ...b.submit, digest });
  expectThat(
    reply.body === 'error',
    `the same batch id with another digest got ${bodyText(reply)}`,
  );
  ctx.rec('same batch id, other digest', true, `refused with ${reply.error?.code}`);
}

async function outOfBalance(ctx: KitContext): Promise<void> {
  const state = ctx.settle;
  const b = syntheticBatch(OOB_PREFIX);
  state.oob = b;
  const reply = await submit(ctx, b.submit);
  expectThat(
    reply.body === 'outOfBalance',
    `a ${OOB_PREFIX} batch got ${bodyText(reply)}, not OutOfBalance`,
  );
  const oob = reply.outOfBalance!;
  expectThat(
    oob.batchId === b.batchId && oob.digest === b.digest,
    'OutOfBalance does not echo batch_id and digest',
  );
  expectThat(oob.acquirerTotals, 'OutOfBalance has no acquirer_totals');
  expectThat(
    !totalsEqual(totalsFromWire(oob.acquirerTotals), b.totals),
    'OutOfBalance claims the very totals submitted',
  );
  ctx.rec('out of balance', true, 'OutOfBalance with the key echoed and other totals');
}

async function detailUpload(ctx: KitContext): Promise<void> {
  const state = ctx.settle;
  const b = state.oob;
  expectThat(b, 'no batch in dispute');
  const half = Math.ceil(b.rows.length / 2);
  const chunks = [b.rows.slice(0, half), b.rows.slice(half)];
  let last: pos.v1.IDetailAck | undefined;
  for (let i = 0; i < chunks.length; i++) {
    const chunk = {
      batchId: b.batchId,
      digest: b.digest,
      chunkIndex: i,
      chunkCount: chunks.length,
      rows: chunks[i],
    };
    const { reply } = await ctx.link.request({ batchDetailChunk: chunk }, ctx.o.timeoutMs);
    expectThat(reply.body === 'detailAck', `chunk ${i} answered with ${bodyText(reply)}`);
    const got = reply.detailAck!;
    last = got;
    expectThat(
      got.batchId === b.batchId && got.digest === b.digest && got.chunkIndex === i,
      `DetailAck ${i} does not echo the key and index`,
    );
  }
  expectThat(last?.complete, 'the last DetailAck is not complete');
  expectThat(last.acquirerTotals, 'the last DetailAck has no acquirer_totals');
  expectThat(
    totalsEqual(totalsFromWire(last.acquirerTotals), b.totals),
    'totals computed from the detail differ from the rows',
  );
  const ack = checkAck(b, await submit(ctx, b.submit));
  expectThat(
    totalsEqual(totalsFromWire(ack.acquirerTotals!), b.totals),
    'settled on other totals than the detail',
  );
  ctx.rec(
    'detail upload, then settled',
    true,
    `${chunks.length} chunks acknowledged; settled ${ack.settlementId} on the detail totals`,
  );
}

export const settlementChecks: Array<[string, (c: KitContext) => Promise<void>]> = [
  ['batch submit', batchSubmit],
  ['resend same key', resend],
  ['same batch id, other digest', otherDigest],
  ['out of balance', outOfBalance],
  ['detail upload, then settled', detailUpload],
];
