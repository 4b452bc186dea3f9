/**
 * The worked example of docs/protocol.md ("Payment app socket"), checked from the page itself:
 * the hex of the RecordRequest frame is what our encoder writes for the values the page names,
 * a real agent core answers that very frame with the reply frame the page shows (all but the
 * batch id, which has a random part), a repeat adds `duplicate` as the page says, and the
 * may_transact frame is right. Edit the page or the code and this fails until both agree again.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCore } from '../../agent/runtime/core.ts';
import { PaymentSocketServer } from '../../agent/runtime/payment-socket.ts';
import { ManualClock } from '../../base/clock.ts';
import { encodeFrame } from '../../protocol/framer.ts';
import {
  decodeLocalReply,
  decodeLocalRequest,
  encodeLocalReply,
  encodeLocalRequest,
  type pos,
} from '../../protocol/messages.ts';
import { activateForTest } from '../fixtures/core.ts';

const DOC = readFileSync(path.join(import.meta.dirname, '../../docs/protocol.md'), 'utf8');

/** The bytes of the code block after `<!-- payment-example: NAME -->`: hex pairs before each `#`. */
function exampleBytes(name: string): Buffer {
  const marker = DOC.indexOf(`<!-- payment-example: ${name} -->`);
  expect(marker, `docs/protocol.md has no ${name} example`).toBeGreaterThan(0);
  const start = DOC.indexOf('```\n', marker) + 4;
  const body = DOC.slice(start, DOC.indexOf('```', start));
  const hex: string[] = [];
  for (const line of body.split('\n')) {
    for (const token of line.split('#')[0]!.trim().split(/\s+/).filter(Boolean)) {
      expect(token, `in the ${name} example`).toMatch(/^[0-9a-f]{2}$/);
      hex.push(token);
    }
  }
  return Buffer.from(hex.join(''), 'hex');
}

const REQUEST: pos.v1.ILocalRequest = {
  requestId: 'r1',
  record: {
    type: 'sale',
    amount: 88_800,
    card: { pan: '4111111111111111' },
    status: 'approved',
    authCode: 'A1B2C3',
    localId: 'POS-0001',
  },
};

const dir = mkdtempSync(path.join(tmpdir(), 'pa-example-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the payment app worked example in docs/protocol.md', () => {
  const request = exampleBytes('request');
  const reply = exampleBytes('reply');

  it('the request frame is the page values, encoded', () => {
    expect(request.readUInt32BE(0)).toBe(request.length - 4);
    expect(request.toString('hex')).toBe(encodeFrame(encodeLocalRequest(REQUEST)).toString('hex'));
    expect(decodeLocalRequest(request.subarray(4))).toMatchObject(REQUEST);
  });

  it('a real agent core answers it with the reply frame on the page, and a repeat adds duplicate', () => {
    const core = openCore({ dataDir: dir }, { clock: new ManualClock(Date.UTC(2026, 11, 1, 2)) });
    try {
      activateForTest(core);
      const server = new PaymentSocketServer({
        payments: core.payments,
        terminal: core.terminal,
        store: core.store,
        log: core.log,
      });
      const pageReply = decodeLocalReply(reply.subarray(4));
      expect(reply.readUInt32BE(0)).toBe(reply.length - 4);
      const answer = (requestId: string): pos.v1.ILocalReply => {
        const r = server.handle(decodeLocalRequest(encodeLocalRequest({ ...REQUEST, requestId })));
        // The batch id's tail is random per terminal: the page shows one such id.
        expect(r.record?.batchId).toMatch(/^B000001-[0-9A-F]{12}$/);
        return {
          ...r,
          requestId: 'r1',
          record: { ...r.record, batchId: pageReply.record!.batchId },
        };
      };
      const first = server.handle(decodeLocalRequest(request.subarray(4)));
      expect(first.record?.batchId).toMatch(/^B000001-[0-9A-F]{12}$/);
      const firstOnPage = {
        ...first,
        record: { ...first.record, batchId: pageReply.record!.batchId },
      };
      expect(encodeFrame(encodeLocalReply(firstOnPage)).toString('hex')).toBe(
        reply.toString('hex'),
      );
      // "the same row with duplicate (8) set: 40 01 after the batch id, the lengths 2 bytes longer"
      const repeat = Buffer.concat([reply, Buffer.from('4001', 'hex')]);
      repeat.writeUInt32BE(0x55, 0);
      expect(repeat.subarray(6 + 2, 10).toString('hex')).toBe('524d');
      repeat.writeUInt8(0x4f, 9);
      expect(encodeFrame(encodeLocalReply(answer('again'))).toString('hex')).toBe(
        repeat.toString('hex'),
      );
    } finally {
      core.close();
    }
  });

  it('the may_transact frame', () => {
    const frame = '00 00 00 05 0a 01 6d 5a 00';
    expect(DOC).toContain(`\`${frame}\``);
    expect(
      encodeFrame(encodeLocalRequest({ requestId: 'm', mayTransact: {} })).toString('hex'),
    ).toBe(frame.replace(/ /g, ''));
  });
});
