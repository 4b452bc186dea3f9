/**
 * The acquirer simulator's envelope decoder. Every envelope decodes as protocol/messages.ts
 * decodes it, except that a BatchDetailChunk's rows are read straight off the wire into just the
 * fields the acquirer sums and hashes, instead of a protobufjs object of fourteen fields per row
 * (decoding 100,000 rows was the largest cost of an upload on the acquirer's side). What it does
 * not read it still checks as protobufjs would (every string valid UTF-8); anything unusual (an
 * unknown field, an unexpected wire type, an integer beyond 2^53, non-ASCII in a field it
 * reads) and the whole envelope is decoded by protobufjs instead, so the answer, or the error,
 * is the one it always was.
 */
import { isUtf8 } from 'node:buffer';
import { decodeEnvelope, type pos } from '../protocol/messages.ts';
import type { DetailRowRecord } from './acquirer-totals.ts';

/** What the acquirer reads of a detail row (the rest stays in the stored envelope bytes). */
export type SummedRow = Pick<
  DetailRowRecord,
  'seq' | 'type' | 'amount' | 'currency' | 'fee' | 'status' | 'hash'
>;

const rowsOf = new WeakMap<object, SummedRow[]>();

/**
 * The rows of a chunk envelope decodeAcquirerEnvelope read off the wire (its
 * batchDetailChunk.rows is then empty), or undefined: then they are in batchDetailChunk.rows.
 */
export function summedRows(env: pos.v1.IEnvelope): SummedRow[] | undefined {
  return rowsOf.get(env);
}

/** decodeEnvelope, with a detail chunk's rows read as SummedRows (see summedRows). */
export function decodeAcquirerEnvelope(payload: Uint8Array): pos.v1.Envelope {
  const b = Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(payload.buffer, payload.byteOffset, payload.length);
  const split = splitChunk(b);
  const rows = split && readRows(b, split.rows);
  if (split && rows) {
    const env = decodeEnvelope(split.rest);
    if (env.body === 'batchDetailChunk') {
      rowsOf.set(env, rows);
      return env;
    }
  }
  return decodeEnvelope(b);
}

/** A varint at `o` below 2^53: [value, next offset], or undefined. */
function varint(b: Buffer, o: number, end: number): [number, number] | undefined {
  let v = 0;
  let scale = 1;
  for (let i = 0; i < 8 && o < end; i++) {
    const byte = b[o++]!;
    v += (byte & 127) * scale;
    if (byte < 128) return v <= Number.MAX_SAFE_INTEGER ? [v, o] : undefined;
    scale *= 128;
  }
  return undefined;
}

/** The end of the field value at `o` of wire type `wt`, or undefined (groups, overruns). */
function skip(b: Buffer, o: number, end: number, wt: number): number | undefined {
  if (wt === 0) return varint(b, o, end)?.[1];
  if (wt === 1) return o + 8 <= end ? o + 8 : undefined;
  if (wt === 5) return o + 4 <= end ? o + 4 : undefined;
  if (wt !== 2) return undefined;
  const len = varint(b, o, end);
  return len && len[1] + len[0] <= end ? len[1] + len[0] : undefined;
}

const CHUNK_FIELD = 23;
const ROWS_FIELD = 5;

/**
 * The envelope without its chunk's rows, and where each row is; undefined unless the envelope
 * holds exactly one batch_detail_chunk and every field walks cleanly.
 */
function splitChunk(b: Buffer): { rest: Buffer; rows: Array<[number, number]> } | undefined {
  // The envelope's other fields stay where they were (the chunk's place is kept for it).
  const outer: Array<Buffer | undefined> = [];
  let chunk: [number, number] | undefined;
  for (let o = 0; o < b.length;) {
    const tag = varint(b, o, b.length);
    if (!tag) return undefined;
    const next = skip(b, tag[1], b.length, tag[0] & 7);
    if (next === undefined) return undefined;
    if (tag[0] === (CHUNK_FIELD << 3) + 2) {
      if (chunk) return undefined;
      chunk = [varint(b, tag[1], b.length)![1], next];
      outer.push(undefined);
    } else {
      outer.push(b.subarray(o, next));
    }
    o = next;
  }
  if (!chunk) return undefined;
  const kept: Buffer[] = [];
  const rows: Array<[number, number]> = [];
  for (let o = chunk[0]; o < chunk[1];) {
    const tag = varint(b, o, chunk[1]);
    if (!tag) return undefined;
    const next = skip(b, tag[1], chunk[1], tag[0] & 7);
    if (next === undefined) return undefined;
    if (tag[0] === (ROWS_FIELD << 3) + 2) rows.push([varint(b, tag[1], chunk[1])![1], next]);
    else kept.push(b.subarray(o, next));
    o = next;
  }
  const inner = Buffer.concat(kept);
  const head = Buffer.from([...varintBytes((CHUNK_FIELD << 3) + 2), ...varintBytes(inner.length)]);
  return { rest: Buffer.concat(outer.map((part) => part ?? Buffer.concat([head, inner]))), rows };
}

function varintBytes(v: number): number[] {
  const out: number[] = [];
  while (v >= 128) {
    out.push((v % 128) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** Buffer's own Latin-1 slice, without toString's argument handling (bytes checked ASCII). */
function latin1(b: Buffer, s: number, e: number): string {
  return (b as Buffer & { latin1Slice(s: number, e: number): string }).latin1Slice(s, e);
}

/** True when b[s, e) is ASCII, or failing that, valid UTF-8 (as protobufjs requires). */
function validText(b: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (b[i]! >= 128) return isUtf8(b.subarray(s, e));
  return true;
}

/** Every row read, or undefined when one needs protobufjs (see the file comment). */
function readRows(b: Buffer, ranges: ReadonlyArray<[number, number]>): SummedRow[] | undefined {
  const rows: SummedRow[] = [];
  for (const [start, end] of ranges) {
    const r = readRow(b, start, end);
    if (!r) return undefined;
    rows.push(r);
  }
  return rows;
}

/** One row; undefined for anything protobufjs must judge. Varints inline: no allocation. */
function readRow(b: Buffer, start: number, end: number): SummedRow | undefined {
  let seq = 0;
  let amount = 0;
  let fee = 0;
  let type = '';
  let currency = '';
  let status = '';
  let hash = '';
  let o = start;
  while (o < end) {
    const tag = b[o++]!;
    // The value: a varint, or the length of a string.
    let v = 0;
    let scale = 1;
    for (;;) {
      if (o >= end || scale > 2 ** 49) return undefined;
      const byte = b[o++]!;
      v += (byte & 127) * scale;
      if (byte < 128) break;
      scale *= 128;
    }
    if (v > Number.MAX_SAFE_INTEGER) return undefined;
    switch (tag) {
      case 8:
        seq = v;
        continue;
      case 32:
        amount = v;
        continue;
      case 48:
        fee = v;
        continue;
      case 88:
      case 96:
        continue;
    }
    // A string: `v` bytes.
    const e = o + v;
    if (e > end) return undefined;
    switch (tag) {
      case 26:
      case 42:
      case 58:
      case 114: {
        for (let i = o; i < e; i++) if (b[i]! >= 128) return undefined;
        const text = latin1(b, o, e);
        if (tag === 26) type = text;
        else if (tag === 42) currency = text;
        else if (tag === 58) status = text;
        else hash = text;
        break;
      }
      case 18:
      case 66:
      case 74:
      case 82:
      case 106:
        if (!validText(b, o, e)) return undefined;
        break;
      default:
        return undefined;
    }
    o = e;
  }
  return seq > 0 ? { seq, type, amount, currency, fee, status, hash } : undefined;
}
