/**
 * Bytes a broken acquirer might send, for tests that prove the terminal refuses bad input
 * without obeying it or dying: a frame whose payload cannot decode, or a length prefix far
 * above any frame limit.
 */
import { randomBytes } from 'node:crypto';

/** Garbage to write to a terminal's socket in place of a reply. */
export function garbageBytes(kind: 'random' | 'oversized'): Buffer {
  if (kind === 'oversized') {
    // ~4 GiB declared: the terminal's framer must refuse it from the prefix alone.
    const b = Buffer.alloc(4 + 16);
    b.writeUInt32BE(0xffff_fff0, 0);
    randomBytes(16).copy(b, 4);
    return b;
  }
  // A well-framed payload that is not an Envelope: tag 0x0f is field 1 with wire type 7, which
  // no protobuf decoder accepts, so the refusal is certain rather than up to chance.
  const payload = Buffer.concat([Buffer.from([0x0f]), randomBytes(31)]);
  const frame = Buffer.alloc(4 + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  payload.copy(frame, 4);
  return frame;
}
