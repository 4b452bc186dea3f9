/**
 * The detail upload's own row encoder (protocol/detail-rows.ts) writes exactly the bytes
 * protobufjs writes for the same DetailRow values: journal-like rows, empty and zero fields,
 * multi-byte and long strings (lengths of one, two and three bytes), rows of every size around
 * the 128- and 16,384-byte length boundaries, and integers it hands to protobufjs (negative,
 * beyond 2^53). The chunk envelope built around those bytes decodes as the one protobufjs builds.
 */
import { describe, expect, it } from 'vitest';
import {
  detailTupleRow,
  encodeDetailChunkEnvelope,
  encodeDetailRows,
  type DetailTuple,
} from '../../protocol/detail-rows.ts';
import { decodeEnvelope, pos } from '../../protocol/messages.ts';

function reference(rows: readonly DetailTuple[]): Buffer {
  return Buffer.from(pos.v1.BatchDetailChunk.encode({ rows: rows.map(detailTupleRow) }).finish());
}

/** A small deterministic generator, so a failure names a reproducible case. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Byte equality, with vitest's diff only when it fails (toEqual on big buffers is slow). */
function same(ours: Buffer, theirs: Buffer): void {
  if (!ours.equals(theirs)) expect(ours).toEqual(theirs);
}

const ALPHABET = ['a', 'Z', '0', '-', 'é', '€', '日', '😀', ' '];

function text(r: () => number, max: number): string {
  const n = Math.floor(r() * r() * max);
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(r() * ALPHABET.length)]!;
  return s;
}

function int(r: () => number): number {
  const pick = r();
  if (pick < 0.2) return 0;
  if (pick < 0.5) return Math.floor(r() * 128);
  if (pick < 0.8) return Math.floor(r() * 2 ** 35);
  return Math.floor(r() * Number.MAX_SAFE_INTEGER);
}

function randomRow(r: () => number): DetailTuple {
  return [
    int(r),
    text(r, 60),
    text(r, 10),
    int(r),
    text(r, 4),
    int(r),
    text(r, 20),
    text(r, 20),
    text(r, 70),
    text(r, 8),
    int(r),
    int(r),
    text(r, 300),
    text(r, 70),
  ];
}

const JOURNAL_ROW: DetailTuple = [
  123_456,
  '2b1c3d4e-aaaa-bbbb-cccc-1234567890ab',
  'sale',
  4_599,
  'CNY',
  28,
  'approved',
  '411111******1111',
  'ab'.repeat(32),
  '123456',
  0,
  1_764_600_000_000,
  'default',
  'cd'.repeat(32),
];

describe('encodeDetailRows', () => {
  it('writes the bytes protobufjs writes, for journal rows and random ones', () => {
    same(encodeDetailRows([JOURNAL_ROW]), reference([JOURNAL_ROW]));
    const r = rng(15);
    for (let round = 0; round < 200; round++) {
      const rows = Array.from({ length: 1 + Math.floor(r() * 20) }, () => randomRow(r));
      same(encodeDetailRows(rows), reference(rows));
    }
  });

  it('gets every length prefix right around the one-, two- and three-byte boundaries', () => {
    for (const size of [0, 1, 41, 42, 43, 60, 100, 127, 128, 129, 16_300, 16_383, 16_384, 70_000]) {
      for (const ch of ['x', 'é', '日']) {
        const long = ch.repeat(Math.ceil(size / Buffer.byteLength(ch)));
        const rows: DetailTuple[] = [
          [1, long, 'sale', 1, 'CNY', 0, 'approved', '', '', '', 0, 1, 'c', 'h'],
          [2, '', '', 0, '', 0, '', '', '', '', 0, 0, '', long],
        ];
        same(encodeDetailRows(rows), reference(rows));
      }
    }
  });

  it('hands integers it does not write to protobufjs: negative, unsafe', () => {
    const rows: DetailTuple[] = [
      [1, 'a', 'sale', -5, 'CNY', -1, 'approved', '', '', '', -7, 1, 'c', 'h'],
      [2 ** 60, 'b', 'sale', 2 ** 53, 'CNY', 1.5, 'approved', '', '', '', 0, 1, 'c', 'h'],
      JOURNAL_ROW,
    ];
    same(encodeDetailRows(rows), reference(rows));
  });

  it('grows its buffer for rows far above the usual size', () => {
    const rows: DetailTuple[] = Array.from({ length: 30 }, (_, i) => [
      i + 1,
      '😀'.repeat(5_000),
      'sale',
      1,
      'CNY',
      1,
      'approved',
      '',
      '',
      '',
      0,
      1,
      'c',
      'h',
    ]);
    same(encodeDetailRows(rows), reference(rows));
  });
});

describe('encodeDetailChunkEnvelope', () => {
  it('is the envelope protobufjs builds with the rows inside', () => {
    const rows = [JOURNAL_ROW, randomRow(rng(3))];
    const env = { messageId: 'm-1', terminalId: 'T0001', sentAtMs: 1_764_600_000_000 };
    const header = { batchId: 'B-1', digest: 'd'.repeat(64), chunkIndex: 2, chunkCount: 9 };
    const ours = encodeDetailChunkEnvelope(env, header, encodeDetailRows(rows));
    const theirs = pos.v1.Envelope.encode({
      ...env,
      batchDetailChunk: { ...header, rows: rows.map(detailTupleRow) },
    }).finish();
    same(Buffer.from(ours), Buffer.from(theirs));
    expect(decodeEnvelope(ours).toJSON()).toEqual(decodeEnvelope(theirs).toJSON());
  });

  it('refuses a header that does not verify, as encodeEnvelope would', () => {
    expect(() =>
      encodeDetailChunkEnvelope(
        { messageId: 'm' },
        { batchId: 'B', chunkIndex: 'x' as unknown as number },
        new Uint8Array(),
      ),
    ).toThrow(/cannot encode Envelope/);
  });
});
