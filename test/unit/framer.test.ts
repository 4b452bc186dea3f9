import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AgentError, isAgentError } from '../../base/errors.ts';
import { FrameDecoder, encodeFrame } from '../../protocol/framer.ts';

function payloads(): Buffer[] {
  return [
    Buffer.from('a'),
    Buffer.from('hello, acquirer'),
    randomBytes(300),
    Buffer.from([0, 0, 0, 0, 0]),
    randomBytes(1),
  ];
}

function thrown(fn: () => unknown): AgentError {
  try {
    fn();
  } catch (e) {
    if (e instanceof AgentError) return e;
    throw new Error(`expected an AgentError, got ${String(e)}`);
  }
  throw new Error('expected a throw');
}

describe('encodeFrame', () => {
  it('prefixes the payload with its big-endian length', () => {
    const frame = encodeFrame(Buffer.from('abc'));
    expect([...frame]).toEqual([0, 0, 0, 3, 0x61, 0x62, 0x63]);
  });

  it('refuses an empty payload and one over the maximum', () => {
    expect(thrown(() => encodeFrame(Buffer.alloc(0))).code).toBe('PROTOCOL_MALFORMED');
    const err = thrown(() => encodeFrame(Buffer.alloc(11), 10));
    expect(err.code).toBe('PROTOCOL_FRAME_TOO_LARGE');
    expect(err.context).toEqual({ length: 11, max: 10 });
  });
});

describe('FrameDecoder', () => {
  const frames = payloads();
  const stream = Buffer.concat(frames.map((p) => encodeFrame(p)));

  it('decodes every frame when the stream is split at every point', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder();
      const out = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      expect(out).toEqual(frames);
      expect(d.buffered).toBe(0);
      d.end();
    }
  });

  it('decodes every frame when the stream is split at every pair of points', () => {
    const small = Buffer.concat(frames.slice(0, 2).map((p) => encodeFrame(p)));
    for (let a = 0; a <= small.length; a++) {
      for (let b = a; b <= small.length; b++) {
        const d = new FrameDecoder();
        const out = [
          ...d.push(small.subarray(0, a)),
          ...d.push(small.subarray(a, b)),
          ...d.push(small.subarray(b)),
        ];
        expect(out).toEqual(frames.slice(0, 2));
      }
    }
  });

  it('decodes the stream fed one byte at a time, and all at once', () => {
    const d = new FrameDecoder();
    const out: Buffer[] = [];
    for (const byte of stream) out.push(...d.push(Buffer.from([byte])));
    expect(out).toEqual(frames);
    expect(new FrameDecoder().push(stream)).toEqual(frames);
  });

  it('returns frames that do not share memory with the input', () => {
    const input = Buffer.from(encodeFrame(Buffer.from('xyz')));
    const [frame] = new FrameDecoder().push(input);
    input.fill(0);
    expect(frame?.toString()).toBe('xyz');
  });

  it('refuses an oversized length from its 4-byte prefix alone, before any payload', () => {
    const d = new FrameDecoder();
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(2 * 1024 ** 3 - 1);
    const err = thrown(() => d.push(prefix));
    expect(err.code).toBe('PROTOCOL_FRAME_TOO_LARGE');
    expect(err.context).toEqual({ length: 2 * 1024 ** 3 - 1, max: 1024 * 1024 });
    expect(d.buffered).toBe(0);
    // Sticky: the stream cannot be resynchronised, so later input is refused too.
    expect(thrown(() => d.push(Buffer.from([1, 2, 3]))).code).toBe('PROTOCOL_FRAME_TOO_LARGE');
  });

  it('checks the prefix against a custom maximum even when it arrives a byte at a time', () => {
    const d = new FrameDecoder(16);
    expect(d.push(Buffer.from([0]))).toEqual([]);
    expect(d.push(Buffer.from([0, 0]))).toEqual([]);
    expect(thrown(() => d.push(Buffer.from([17]))).code).toBe('PROTOCOL_FRAME_TOO_LARGE');
  });

  it('accepts a frame of exactly the maximum', () => {
    const d = new FrameDecoder(16);
    expect(d.push(encodeFrame(Buffer.alloc(16, 7)))).toEqual([Buffer.alloc(16, 7)]);
  });

  it('refuses a zero-length frame', () => {
    expect(thrown(() => new FrameDecoder().push(Buffer.alloc(4))).code).toBe('PROTOCOL_MALFORMED');
  });

  it('returns the good frames before a bad prefix, then reports the failure', () => {
    const d = new FrameDecoder(16);
    const bad = Buffer.from([0, 0, 1, 0]);
    const out = d.push(Buffer.concat([encodeFrame(Buffer.from('ok')), bad]));
    expect(out).toEqual([Buffer.from('ok')]);
    expect(d.failure?.code).toBe('PROTOCOL_FRAME_TOO_LARGE');
    expect(thrown(() => d.end()).code).toBe('PROTOCOL_FRAME_TOO_LARGE');
  });

  it('reports a truncated frame on end(), in the prefix or in the payload', () => {
    const frame = encodeFrame(Buffer.from('truncated'));
    for (const cut of [1, 3, 4, 5, frame.length - 1]) {
      const d = new FrameDecoder();
      d.push(frame.subarray(0, cut));
      const err = thrown(() => d.end());
      expect(err.code).toBe('PROTOCOL_FRAME_TRUNCATED');
      expect(err.context.buffered).toBe(cut >= 4 ? cut - 4 : cut);
    }
    const clean = new FrameDecoder();
    clean.push(frame);
    expect(() => clean.end()).not.toThrow();
  });

  it('survives thousands of random buffers with AgentErrors only and bounded memory', () => {
    const max = 4096;
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      const d = new FrameDecoder(max);
      const chunks = 1 + (i % 7);
      try {
        for (let c = 0; c < chunks; c++) {
          const size = Math.floor(Math.random() * (i % 3 === 0 ? 9000 : 64));
          // Low-valued prefixes make short, valid frames likely, so both paths get exercised.
          const chunk = i % 2 === 0 ? randomBytes(size) : randomBytes(size).map((b) => b & 0x0f);
          for (const frame of d.push(chunk)) {
            expect(frame.length).toBeGreaterThan(0);
            expect(frame.length).toBeLessThanOrEqual(max);
          }
          expect(d.buffered).toBeLessThan(4 + max + 9000);
        }
        d.end();
      } catch (e) {
        if (!isAgentError(e)) throw e;
        expect(e.area).toBe('protocol');
        refused += 1;
      }
    }
    expect(refused).toBeGreaterThan(0);
  });

  it('handles a large frame delivered in many tiny chunks in linear time', () => {
    const big = randomBytes(1024 * 1024 - 1);
    const wire = encodeFrame(big);
    const d = new FrameDecoder();
    const out: Buffer[] = [];
    const started = performance.now();
    for (let i = 0; i < wire.length; i += 16) out.push(...d.push(wire.subarray(i, i + 16)));
    expect(performance.now() - started).toBeLessThan(5000);
    expect(out).toHaveLength(1);
    expect(out[0]?.equals(big)).toBe(true);
  });
});
