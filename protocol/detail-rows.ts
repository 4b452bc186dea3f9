/**
 * The detail upload's rows, encoded straight from tuples into one buffer: the bytes of
 * `repeated DetailRow rows = 5` of a BatchDetailChunk, exactly as protobufjs writes them from
 * the same values (fields in number order, defaults left out), without building an object per
 * row, a Writer operation per field or a verify() pass over 2,000 rows. A chunk envelope is then
 * the envelope and chunk header, encoded and checked as usual, with these bytes inside.
 */
import { pos, verifyEnvelope } from './messages.ts';

/**
 * A DetailRow as a tuple, in pos.proto's field order: seq, local_id, type, amount, currency,
 * fee, status, masked_pan, pan_token, auth_code, original_seq, created_at_ms,
 * merchant_category, hash.
 */
export type DetailTuple = readonly [
  seq: number,
  localId: string,
  type: string,
  amount: number,
  currency: string,
  fee: number,
  status: string,
  maskedPan: string,
  panToken: string,
  authCode: string,
  originalSeq: number,
  createdAtMs: number,
  merchantCategory: string,
  hash: string,
];

/** The DetailRow message of a tuple (for a link that takes messages, and for tests). */
export function detailTupleRow(t: DetailTuple): pos.v1.IDetailRow {
  return {
    seq: t[0],
    localId: t[1],
    type: t[2],
    amount: t[3],
    currency: t[4],
    fee: t[5],
    status: t[6],
    maskedPan: t[7],
    panToken: t[8],
    authCode: t[9],
    originalSeq: t[10],
    createdAtMs: t[11],
    merchantCategory: t[12],
    hash: t[13],
  };
}

const ROW_TAG = 42; // BatchDetailChunk.rows: field 5, wire type 2

/** True when every integer of the row is one this encoder writes (0 to 2^53 - 1). */
function plainInts(t: DetailTuple): boolean {
  return plain(t[0]) && plain(t[3]) && plain(t[5]) && plain(t[10]) && plain(t[11]);
}

function plain(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0;
}

/** Most bytes a row can take: UTF-8 is at most 3 bytes per UTF-16 unit. */
function bound(t: DetailTuple): number {
  const chars =
    t[1].length +
    t[2].length +
    t[4].length +
    t[6].length +
    t[7].length +
    t[8].length +
    t[9].length +
    t[12].length +
    t[13].length;
  return 3 * chars + 200;
}

function varint(b: Buffer, o: number, v: number): number {
  while (v >= 128) {
    b[o++] = (v % 128) | 128;
    v = Math.floor(v / 128);
  }
  b[o++] = v;
  return o;
}

function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/**
 * Moves the `len` bytes at `from` to sit right after their varint length written at `at`;
 * returns the end. The caller left `from - at` bytes for the length.
 */
function placeLength(b: Buffer, at: number, from: number, len: number): number {
  const start = at + varintSize(len);
  if (start !== from) b.copyWithin(start, from, from + len);
  varint(b, at, len);
  return start + len;
}

function int(b: Buffer, o: number, tag: number, v: number): number {
  if (v === 0) return o;
  b[o] = tag;
  return varint(b, o + 1, v);
}

/**
 * Buffer's UTF-8 writer without write()'s argument juggling (protobufjs writes strings with it
 * too); returns the bytes written. The buffer always has room (encodeDetailRows's bound).
 */
function utf8Write(b: Buffer, s: string, o: number): number {
  return (b as Buffer & { utf8Write(s: string, o: number): number }).utf8Write(s, o);
}

function str(b: Buffer, o: number, tag: number, s: string): number {
  if (s === '') return o;
  b[o] = tag;
  // Up to 42 UTF-16 units are at most 126 bytes: a one-byte length, written after.
  if (s.length <= 42) {
    const n = utf8Write(b, s, o + 2);
    b[o + 1] = n;
    return o + 2 + n;
  }
  const room = varintSize(3 * s.length);
  const n = utf8Write(b, s, o + 1 + room);
  return placeLength(b, o + 1, o + 1 + room, n);
}

/** The fields of one row (no tag or length of its own) at `o`; returns the end. */
function rowFields(b: Buffer, o: number, t: DetailTuple): number {
  o = int(b, o, 8, t[0]);
  o = str(b, o, 18, t[1]);
  o = str(b, o, 26, t[2]);
  o = int(b, o, 32, t[3]);
  o = str(b, o, 42, t[4]);
  o = int(b, o, 48, t[5]);
  o = str(b, o, 58, t[6]);
  o = str(b, o, 66, t[7]);
  o = str(b, o, 74, t[8]);
  o = str(b, o, 82, t[9]);
  o = int(b, o, 88, t[10]);
  o = int(b, o, 96, t[11]);
  o = str(b, o, 106, t[12]);
  return str(b, o, 114, t[13]);
}

/** The bytes of `repeated DetailRow rows = 5` for these rows, in order. */
export function encodeDetailRows(rows: readonly DetailTuple[]): Buffer {
  let b = Buffer.allocUnsafe(rows.length * 300 + 64);
  let o = 0;
  for (const t of rows) {
    const need = bound(t);
    if (o + need > b.length) {
      const bigger = Buffer.allocUnsafe(Math.max(2 * b.length, o + need));
      b.copy(bigger, 0, 0, o);
      b = bigger;
    }
    b[o++] = ROW_TAG;
    if (!plainInts(t)) {
      // Negative or unsafe integers (never in a journal): protobufjs's own encoding.
      const bytes = pos.v1.DetailRow.encode(detailTupleRow(t)).finish();
      o = varint(b, o, bytes.length);
      b.set(bytes, o);
      o += bytes.length;
      continue;
    }
    // A row is usually 128 to 16,383 bytes: room for a two-byte length, moved if not.
    const end = rowFields(b, o + 2, t);
    o = placeLength(b, o, o + 2, end - o - 2);
  }
  return b.subarray(0, o);
}

/**
 * An Envelope carrying a BatchDetailChunk whose rows are already encoded (encodeDetailRows).
 * The envelope and the chunk header are checked and encoded as usual; the rows join the chunk
 * as more of its fields (a message's fields may come in any order).
 * @throws AgentError PROTOCOL_MALFORMED if the envelope or the header does not verify.
 */
export function encodeDetailChunkEnvelope(
  env: Omit<pos.v1.IEnvelope, 'batchDetailChunk'>,
  header: Omit<pos.v1.IBatchDetailChunk, 'rows'>,
  rows: Uint8Array | readonly Uint8Array[],
): Uint8Array {
  verifyEnvelope({ ...env, batchDetailChunk: header });
  const parts = rows instanceof Uint8Array ? [rows] : rows;
  const rowBytes = parts.reduce((n, p) => n + p.length, 0);
  const prefix = pos.v1.Envelope.encode(env).finish();
  const head = pos.v1.BatchDetailChunk.encode(header).finish();
  const b = Buffer.allocUnsafe(prefix.length + head.length + rowBytes + 16);
  b.set(prefix, 0);
  let o = varint(b, prefix.length, 186); // Envelope.batch_detail_chunk: field 23, wire type 2
  o = varint(b, o, head.length + rowBytes);
  b.set(head, o);
  o += head.length;
  for (const p of parts) {
    b.set(p, o);
    o += p.length;
  }
  return b.subarray(0, o);
}
