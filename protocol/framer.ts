/**
 * Length-prefixed framing: every frame is a 4-byte big-endian unsigned payload length followed
 * by the payload. Pure and stream-free, so the parser is tested by pushing bytes split at every
 * point, and the same code serves TLS sockets, Unix sockets and in-memory tests.
 */
import { AgentError } from '../base/errors.ts';

/** Bytes in the length prefix. */
const FRAME_HEADER_BYTES = 4;

/** Default largest payload accepted: 1 MiB is far above any batch chunk the agent sends. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;

/** The prefix is a uint32, so no frame can ever be longer than this. */
const ABSOLUTE_MAX_FRAME_BYTES = 0xffff_ffff;

function checkMax(maxFrameBytes: number): void {
  if (
    !Number.isSafeInteger(maxFrameBytes) ||
    maxFrameBytes < 1 ||
    maxFrameBytes > ABSOLUTE_MAX_FRAME_BYTES
  ) {
    throw new AgentError('CONFIG_INVALID', `maxFrameBytes must be 1..${ABSOLUTE_MAX_FRAME_BYTES}`, {
      maxFrameBytes,
    });
  }
}

/**
 * Prefixes `payload` with its length. Refuses empty payloads (the decoder treats a zero length
 * as malformed) and payloads over `maxFrameBytes`, so we never send what a peer must refuse.
 */
export function encodeFrame(
  payload: Uint8Array,
  maxFrameBytes: number = ABSOLUTE_MAX_FRAME_BYTES,
): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.set(frameHeader(payload.length, maxFrameBytes), 0);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * The length prefix of a `length`-byte payload, with encodeFrame's refusals: for a large
 * payload written right after it instead of copied behind it.
 */
export function frameHeader(
  length: number,
  maxFrameBytes: number = ABSOLUTE_MAX_FRAME_BYTES,
): Buffer {
  checkMax(maxFrameBytes);
  if (length === 0) {
    throw new AgentError('PROTOCOL_MALFORMED', 'refusing to send an empty frame', { length: 0 });
  }
  if (length > maxFrameBytes) {
    throw new AgentError('PROTOCOL_FRAME_TOO_LARGE', undefined, { length, max: maxFrameBytes });
  }
  const head = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  head.writeUInt32BE(length, 0);
  return head;
}

/**
 * Incremental frame parser.
 *
 * Chunks are kept as a list and each frame is copied out exactly once, so many small chunks cost
 * linear time. A length prefix is checked against the maximum as soon as its 4 bytes are here,
 * before any of its payload is kept, so buffered data never exceeds 4 + max + one chunk.
 *
 * Errors are sticky: after a bad prefix the stream cannot be resynchronised, so every later
 * `push()`/`end()` throws the same error. Frames completed earlier in the same chunk as the bad
 * prefix are still returned (they were valid), and the error is then available from `failure`
 * at once and thrown by the next `push()` or `end()`.
 */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  private chunks: Buffer[] = [];
  /** Index of the first chunk not yet fully consumed; advancing it beats Array#shift per chunk. */
  private headIndex = 0;
  /** Bytes already consumed from chunks[headIndex]. */
  private headOffset = 0;
  private bufferedBytes = 0;
  /** Payload length of the frame being read, once its prefix is parsed. */
  private expected: number | undefined;
  private error: AgentError | undefined;

  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    checkMax(maxFrameBytes);
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes received and not yet returned as part of a frame (prefixes included). */
  get buffered(): number {
    return this.bufferedBytes;
  }

  /** The error that stopped this decoder, if any. */
  get failure(): AgentError | undefined {
    return this.error;
  }

  /**
   * Adds received bytes; returns the payloads of the frames they complete, in order.
   * @throws AgentError PROTOCOL_FRAME_TOO_LARGE (context {length, max}) or PROTOCOL_MALFORMED
   *   (zero length) when a prefix is bad and no frame was completed before it in this chunk.
   */
  push(chunk: Uint8Array): Buffer[] {
    if (this.error) throw this.error;
    if (chunk.length > 0) {
      // A view, not a copy: the bytes are copied once, into the frame that completes them.
      const view = Buffer.isBuffer(chunk)
        ? chunk
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
      this.chunks.push(view);
      this.bufferedBytes += chunk.length;
    }
    const frames: Buffer[] = [];
    for (;;) {
      if (this.expected === undefined) {
        if (this.bufferedBytes < FRAME_HEADER_BYTES) break;
        const length = this.take(FRAME_HEADER_BYTES).readUInt32BE(0);
        const problem = this.checkLength(length);
        if (problem) {
          this.fail(problem);
          if (frames.length === 0) throw problem;
          break;
        }
        this.expected = length;
      }
      if (this.bufferedBytes < this.expected) break;
      frames.push(this.take(this.expected));
      this.expected = undefined;
    }
    return frames;
  }

  /**
   * Declares the end of input.
   * @throws AgentError PROTOCOL_FRAME_TRUNCATED if part of a frame is still buffered, or the
   *   sticky error if the decoder already failed.
   */
  end(): void {
    if (this.error) throw this.error;
    if (this.bufferedBytes > 0 || this.expected !== undefined) {
      const problem = new AgentError('PROTOCOL_FRAME_TRUNCATED', undefined, {
        buffered: this.bufferedBytes,
        expected: this.expected ?? null,
      });
      this.fail(problem);
      throw problem;
    }
  }

  private checkLength(length: number): AgentError | undefined {
    if (length === 0) {
      return new AgentError('PROTOCOL_MALFORMED', 'a frame declared a zero length', { length });
    }
    if (length > this.maxFrameBytes) {
      return new AgentError('PROTOCOL_FRAME_TOO_LARGE', undefined, {
        length,
        max: this.maxFrameBytes,
      });
    }
    return undefined;
  }

  /** Drops everything buffered: a failed stream's bytes are never parsed. */
  private fail(error: AgentError): void {
    this.error = error;
    this.chunks = [];
    this.headIndex = 0;
    this.headOffset = 0;
    this.bufferedBytes = 0;
    this.expected = undefined;
  }

  /** Removes and returns the next `n` buffered bytes (n <= buffered) as a new Buffer. */
  private take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let written = 0;
    while (written < n) {
      const head = this.chunks[this.headIndex];
      if (!head) throw new Error('FrameDecoder.take: fewer bytes buffered than counted');
      const available = head.length - this.headOffset;
      const count = Math.min(available, n - written);
      head.copy(out, written, this.headOffset, this.headOffset + count);
      written += count;
      if (count === available) {
        this.headIndex += 1;
        this.headOffset = 0;
      } else {
        this.headOffset += count;
      }
    }
    this.bufferedBytes -= n;
    // Compact now and then so consumed chunks are released without quadratic shifting.
    if (this.headIndex === this.chunks.length) {
      this.chunks = [];
      this.headIndex = 0;
    } else if (this.headIndex > 1024 && this.headIndex * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.headIndex);
      this.headIndex = 0;
    }
    return out;
  }
}
