import type { Envelope, EnvelopeBody, pos } from '../../protocol/messages.ts';
import { detailTupleRow, encodeDetailRows } from '../../protocol/detail-rows.ts';
import type { Journal, TxnDetailTuple } from '../../storage/journal.ts';
import { AgentError } from '../../base/errors.ts';

/**
 * The windowed detail upload of one out-of-balance batch (docs/protocol.md, "Detail upload
 * window"). Up to `window` chunks are unacknowledged at once; the window is the smaller of
 * ours (settlement.detailWindow) and the acquirer's (DetailAck.window, 1 when it says
 * nothing), and the first chunk of an upload goes alone, as a probe, until the acquirer has
 * told us both its window and the lowest chunk it is missing (DetailAck.next_missing).
 *
 * Progress lives in memory. After a reconnect the upload resumes from the lowest chunk not
 * acknowledged (chunks acknowledged out of order are not sent again); after a restart the
 * probe is chunk 0, and its ack's next_missing skips everything the acquirer already holds.
 * The acquirer stores chunks idempotently per index, so a chunk sent twice is harmless.
 */

/**
 * A chunk being read (and for a link that takes encoded rows, encoded) a slice at a time: its
 * rows as encoded parts, or as tuples for a link that takes DetailRow objects.
 */
interface Prepared {
  index: number;
  parts: Buffer[];
  tuples: TxnDetailTuple[] | undefined;
  rows: number;
  after: number;
}

/** How one chunk request ended, caught at once so a rejection never goes unhandled. */
type Outcome = { ok: true; reply: Envelope } | { ok: false; error: unknown };

/**
 * What the upload needs from the link. With requestDetailChunk (the agent's channel) a chunk's
 * rows go from the journal's arrays straight into its bytes; a link with only request() gets
 * DetailRow objects.
 */
export interface DetailLink {
  request(body: EnvelopeBody): Promise<Envelope>;
  requestDetailChunk?(
    header: Omit<pos.v1.IBatchDetailChunk, 'rows'>,
    rows: Uint8Array,
  ): Promise<Envelope>;
}

export class DetailUpload {
  private readonly acked: boolean[];
  private ackedCount = 0;
  /** Chunks sent and not answered yet, oldest first. */
  private readonly inflight = new Map<number, Promise<Outcome>>();
  /** Sequence number each chunk's rows start after, for the chunks we know it of. */
  private readonly startAfter = new Map<number, number>([[0, 0]]);
  /** The next chunk to send when the window has room (never an acknowledged one). */
  private cursor = 0;
  /** Chunks allowed in flight; 1 until the acquirer has answered one. */
  private window = 1;
  /** The chunk being read, a slice at a time (see Prepared). */
  private pending: Prepared | undefined;
  /**
   * Chunks read whole and not sent yet. While the window is full (or the probe's ack is
   * awaited) the next chunks are read ahead, up to a window's worth, so the reading overlaps
   * the wait instead of following it.
   */
  private readonly ready = new Map<number, Prepared>();
  /** Chunks in flight whose answer (or failure) has come. */
  private readonly answered = new Set<number>();

  constructor(
    readonly batchId: string,
    readonly digest: string,
    readonly count: number,
    private readonly chunkRows: number,
    private readonly maxWindow: number,
  ) {
    this.acked = new Array<boolean>(count).fill(false);
  }

  get done(): boolean {
    return this.ackedCount === this.count;
  }

  /** True when another chunk may go out now. */
  get canSend(): boolean {
    return this.inflight.size < this.window && this.nextIndex() < this.count;
  }

  get inFlight(): number {
    return this.inflight.size;
  }

  /**
   * True while the oldest chunk in flight has no answer yet and a chunk is still to be read
   * ahead: reading then overlaps the wait, and an answer that came is taken first.
   */
  get canReadAhead(): boolean {
    const oldest = this.inflight.keys().next();
    return (
      !oldest.done &&
      !this.answered.has(oldest.value) &&
      this.ready.size < this.maxWindow &&
      this.toRead() < this.count
    );
  }

  /**
   * Reads (and encodes, for a link with requestDetailChunk) at most `sliceRows` rows of the
   * next chunk to send, so no single job reads or encodes a whole chunk; true once it is whole
   * (or was read ahead) and can go with sendPrepared on the same link.
   */
  prepare(journal: Journal, sliceRows: number, link: DetailLink): boolean {
    const next = this.nextIndex();
    if (!this.ready.has(next)) this.readSlice(journal, sliceRows, link);
    return this.ready.has(next);
  }

  /** One slice of the lowest chunk not read yet, while the window is full (canReadAhead). */
  readAhead(journal: Journal, sliceRows: number, link: DetailLink): void {
    this.readSlice(journal, sliceRows, link);
  }

  private readSlice(journal: Journal, sliceRows: number, link: DetailLink): void {
    const index = this.toRead();
    if (index >= this.count) return;
    if (this.pending?.index !== index) {
      this.pending = {
        index,
        parts: [],
        tuples: link.requestDetailChunk ? undefined : [],
        rows: 0,
        after: this.afterOf(journal, index),
      };
    }
    const p = this.pending;
    const want = Math.min(sliceRows, this.chunkRows - p.rows);
    const rows = journal.batchDetailTuplesAfter(this.batchId, p.after, want);
    if (p.tuples) for (const r of rows) p.tuples.push(r);
    else p.parts.push(encodeDetailRows(rows));
    p.rows += rows.length;
    if (rows.length > 0) p.after = rows.at(-1)![0];
    if (rows.length < want || p.rows === this.chunkRows) {
      this.startAfter.set(index + 1, p.after);
      this.ready.set(index, p);
      this.pending = undefined;
    }
  }

  /** Sends the next chunk, which prepare() made whole, without waiting for its ack. */
  sendPrepared(link: DetailLink): number {
    const p = this.ready.get(this.nextIndex());
    if (!p) throw new Error('no detail chunk is prepared');
    const { index, parts, tuples } = p;
    this.ready.delete(index);
    this.cursor = index + 1;
    const header = {
      batchId: this.batchId,
      digest: this.digest,
      chunkIndex: index,
      chunkCount: this.count,
    };
    let sent: Promise<Envelope>;
    try {
      sent = tuples
        ? link.request({ batchDetailChunk: { ...header, rows: tuples.map(detailTupleRow) } })
        : link.requestDetailChunk!(header, Buffer.concat(parts));
    } catch (e) {
      sent = Promise.reject(e);
    }
    this.inflight.set(
      index,
      sent.then(
        (reply): Outcome => (this.answered.add(index), { ok: true, reply }),
        (error: unknown): Outcome => (this.answered.add(index), { ok: false, error }),
      ),
    );
    return index;
  }

  /** The oldest chunk in flight and how it ended (waits for it; call outside the runner). */
  async oldest(): Promise<{ index: number; outcome: Outcome }> {
    const [index, outcome] = this.inflight.entries().next().value as [number, Promise<Outcome>];
    return { index, outcome: await outcome };
  }

  /**
   * Takes the ack (or failure) of chunk `index`. A failure empties the window and puts the
   * cursor back on the lowest chunk not acknowledged, then throws: the next attempt (after
   * a reconnect) resumes from there.
   */
  settle(index: number, outcome: Outcome): void {
    this.inflight.delete(index);
    this.answered.delete(index);
    if (!outcome.ok) {
      this.rewind();
      throw outcome.error;
    }
    const ack = outcome.reply.detailAck;
    if (!ack || ack.chunkIndex !== index) {
      this.rewind();
      throw new AgentError(
        'PROTOCOL_UNEXPECTED',
        `chunk ${index} of batch ${this.batchId} was not acknowledged`,
      );
    }
    if (ack.batchId !== this.batchId || ack.digest !== this.digest) {
      this.rewind();
      throw new AgentError(
        'PROTOCOL_UNEXPECTED',
        `the acquirer answered for batch ${ack.batchId}/${ack.digest?.slice(0, 8)}, not ${this.batchId}`,
      );
    }
    this.mark(index);
    // The acquirer holds every chunk below next_missing: none of them needs sending (again).
    const held = Math.min(ack.nextMissing ?? 0, this.count);
    for (let i = 0; i < held; i++) this.mark(i);
    if (ack.complete) for (let i = 0; i < this.count; i++) this.mark(i);
    this.window = Math.max(1, Math.min(this.maxWindow, ack.window || 1));
  }

  /** After a lost link: nothing is in flight any more; resume at the lowest gap. */
  private rewind(): void {
    this.inflight.clear();
    this.answered.clear();
    this.cursor = 0;
    this.pending = undefined;
  }

  private mark(i: number): void {
    if (this.acked[i]) return;
    this.acked[i] = true;
    this.ackedCount++;
    this.ready.delete(i);
  }

  private nextIndex(): number {
    let i = this.cursor;
    while (i < this.count && (this.acked[i] || this.inflight.has(i))) i++;
    this.cursor = i;
    return i;
  }

  /** The lowest chunk to send that is not read yet (count when none is left). */
  private toRead(): number {
    let i = this.nextIndex();
    while (i < this.count && (this.acked[i] || this.inflight.has(i) || this.ready.has(i))) i++;
    return i;
  }

  /** Where chunk `index` starts: known once its predecessor was read, else looked up once. */
  private afterOf(journal: Journal, index: number): number {
    const known = this.startAfter.get(index);
    if (known !== undefined) return known;
    const after = journal.batchSeqAt(this.batchId, index * this.chunkRows - 1);
    this.startAfter.set(index, after);
    return after;
  }
}
