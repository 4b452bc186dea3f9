/**
 * The acquirer simulator's envelope decoder (simulator/detail-wire.ts) answers as protobufjs
 * does: the rows it reads off the wire equal protobufjs's rows field for field, every other
 * envelope decodes exactly as decodeEnvelope decodes it, and whatever it does not read itself
 * (non-ASCII where it reads, negative or huge integers, unknown fields, a second chunk field)
 * goes to protobufjs, which accepts or refuses it as it always did (invalid UTF-8 is refused).
 */
import { describe, expect, it } from 'vitest';
import { decodeAcquirerEnvelope, summedRows } from '../../simulator/detail-wire.ts';
import { detailRowFromWire } from '../../simulator/acquirer-totals.ts';
import {
  detailTupleRow,
  encodeDetailChunkEnvelope,
  encodeDetailRows,
  type DetailTuple,
} from '../../protocol/detail-rows.ts';
import { decodeEnvelope, pos } from '../../protocol/messages.ts';

const HEAD = { messageId: 'm-1', terminalId: 'T0001', sentAtMs: 1_764_600_000_000 };
const CHUNK = { batchId: 'B-1', digest: 'd'.repeat(64), chunkIndex: 1, chunkCount: 3 };

function row(seq: number, over: Partial<Record<number, string | number>> = {}): DetailTuple {
  const t: Array<string | number> = [
    seq,
    `local-${seq}`,
    seq % 7 === 0 ? 'refund' : 'sale',
    100 + seq * 37,
    'CNY',
    seq % 5,
    seq % 11 === 0 ? 'declined' : 'approved',
    '411111******1111',
    'ab'.repeat(32),
    seq % 3 === 0 ? '' : '123456',
    seq % 7 === 0 ? seq - 1 : 0,
    1_764_600_000_000 + seq,
    'default',
    seq.toString(16).padStart(64, '0'),
  ];
  for (const [i, v] of Object.entries(over)) if (v !== undefined) t[Number(i)] = v;
  return t as unknown as DetailTuple;
}

function envelope(rows: DetailTuple[]): Buffer {
  return Buffer.from(encodeDetailChunkEnvelope(HEAD, CHUNK, encodeDetailRows(rows)));
}

const SUMMED = ['seq', 'type', 'amount', 'currency', 'fee', 'status', 'hash'] as const;

/** What the acquirer reads of protobufjs's rows. */
function expected(bytes: Uint8Array) {
  return (decodeEnvelope(bytes).batchDetailChunk!.rows ?? []).map((r, i) => {
    const full = detailRowFromWire(r, i);
    return Object.fromEntries(SUMMED.map((k) => [k, full[k]]));
  });
}

function header(env: pos.v1.Envelope) {
  const json = env.toJSON() as { batchDetailChunk: Record<string, unknown> };
  const { rows: _rows, ...rest } = json.batchDetailChunk;
  return { ...json, batchDetailChunk: rest };
}

describe('decodeAcquirerEnvelope', () => {
  it('reads a chunk of journal rows as protobufjs does, header and all', () => {
    const rows = Array.from({ length: 300 }, (_, i) => row(i + 1));
    const bytes = envelope(rows);
    const env = decodeAcquirerEnvelope(bytes);
    expect(summedRows(env)).toEqual(expected(bytes));
    expect(env.batchDetailChunk!.rows).toEqual([]);
    expect(header(env)).toEqual(header(decodeEnvelope(bytes)));
  });

  it('checks, without reading, the text it skips: UTF-8 passes, anything else is refused', () => {
    const bytes = envelope([row(1, { 1: 'café-日本-😀' }), row(2)]);
    const env = decodeAcquirerEnvelope(bytes);
    expect(summedRows(env)).toEqual(expected(bytes));
    // The same envelope with one byte of the first local id no longer UTF-8.
    const bad = Buffer.from(bytes);
    const at = bad.indexOf(Buffer.from('café'));
    bad[at] = 0xff;
    expect(() => decodeEnvelope(bad)).toThrow(/could not decode Envelope/);
    expect(() => decodeAcquirerEnvelope(bad)).toThrow(/could not decode Envelope/);
  });

  it('hands protobufjs what it does not read itself, with the same result', () => {
    const cases: DetailTuple[][] = [
      [row(1, { 2: 'sälé' })], // non-ASCII in a field it reads
      [row(1, { 3: -5 })], // a negative amount (a ten-byte varint)
      [row(1, { 11: 2 ** 60 })], // beyond 2^53
      [row(0)], // seq 0: the acquirer refuses it, through the usual path
      [],
    ];
    for (const rows of cases) {
      const bytes = envelope(rows);
      const env = decodeAcquirerEnvelope(bytes);
      expect(env.toJSON()).toEqual(decodeEnvelope(bytes).toJSON());
      if (rows.length > 0) expect(summedRows(env)).toBeUndefined();
    }
  });

  it('falls back on an unknown row field and on a second chunk field', () => {
    const unknown = Buffer.concat([
      envelope([row(1)]),
      // Envelope field 23 again: protobufjs keeps the last one.
      Buffer.from(
        pos.v1.Envelope.encode({
          batchDetailChunk: { ...CHUNK, chunkIndex: 2, rows: [detailTupleRow(row(9))] },
        }).finish(),
      ),
    ]);
    const env = decodeAcquirerEnvelope(unknown);
    expect(summedRows(env)).toBeUndefined();
    expect(env.toJSON()).toEqual(decodeEnvelope(unknown).toJSON());
    // A row with field 15 (not in DetailRow): protobufjs skips it; so does the acquirer.
    const rowBytes = Buffer.concat([
      Buffer.from(pos.v1.DetailRow.encode(detailTupleRow(row(4))).finish()),
      Buffer.from([0x78, 0x01]),
    ]);
    const withField15 = Buffer.from(
      encodeDetailChunkEnvelope(
        HEAD,
        CHUNK,
        Buffer.concat([
          Buffer.from([0x2a, (rowBytes.length % 128) | 128, rowBytes.length >> 7]),
          rowBytes,
        ]),
      ),
    );
    const env15 = decodeAcquirerEnvelope(withField15);
    expect(summedRows(env15)).toBeUndefined();
    expect(env15.toJSON()).toEqual(decodeEnvelope(withField15).toJSON());
  });

  it('decodes every other envelope, and garbage, exactly as decodeEnvelope', () => {
    const hello = pos.v1.Envelope.encode({ ...HEAD, hello: { terminalId: 'T0001' } }).finish();
    expect(decodeAcquirerEnvelope(hello).toJSON()).toEqual(decodeEnvelope(hello).toJSON());
    const full = envelope([row(1), row(2)]);
    for (const cut of [1, 5, 20, full.length - 3]) {
      const part = full.subarray(0, cut);
      let want: unknown;
      try {
        want = decodeEnvelope(part).toJSON();
      } catch (e) {
        want = (e as Error).message;
      }
      let got: unknown;
      try {
        got = decodeAcquirerEnvelope(part).toJSON();
      } catch (e) {
        got = (e as Error).message;
      }
      expect(got).toEqual(want);
    }
  });
});
