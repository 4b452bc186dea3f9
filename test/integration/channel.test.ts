import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentError, isAgentError } from '../../base/errors.ts';
import { createLogger } from '../../base/log.ts';
import { AcquirerChannel, type AcquirerChannelOptions } from '../../protocol/channel.ts';
import { encodeFrame } from '../../protocol/framer.ts';
import type { EnvelopeBody, EnvelopeBodyKind, pos } from '../../protocol/messages.ts';
import {
  startFrameServer,
  type FrameServer,
  type ServerConnection,
} from '../../protocol/server.ts';
import { ensureTlsMaterial, type TlsMaterial } from '../../protocol/tls-material.ts';

type Handler = (env: pos.v1.Envelope, conn: ServerConnection) => void;

/** A test acquirer: answers Hello and Heartbeat by default; tests add or replace handlers. */
class TinyAcquirer {
  server!: FrameServer;
  shiftMs = 0;
  readonly received: pos.v1.Envelope[] = [];
  readonly conns: ServerConnection[] = [];
  readonly handlers: Partial<Record<EnvelopeBodyKind, Handler>> = {
    hello: (env, conn) =>
      conn.send(reply(env, { helloAck: { serverTimeMs: this.now(), acquirerId: 'ACQ-TEST' } })),
    heartbeat: (env, conn) =>
      conn.send(
        reply(env, {
          heartbeatAck: {
            clientTimeMs: env.heartbeat?.clientTimeMs ?? 0,
            serverTimeMs: this.now(),
          },
        }),
      ),
  };

  now(): number {
    return Date.now() + this.shiftMs;
  }

  async start(material: TlsMaterial): Promise<this> {
    this.server = await startFrameServer({
      ca: material.caCert,
      cert: material.serverCert,
      key: material.serverKey,
      onConnection: (conn, cn) => {
        expect(cn).toBe('T1');
        this.conns.push(conn);
        conn.on('message', (env) => {
          this.received.push(env);
          if (env.body) this.handlers[env.body]?.(env, conn);
        });
      },
    });
    return this;
  }

  /** The live connection of the channel under test. */
  get live(): ServerConnection {
    const conn = [...this.server.connections].at(-1);
    if (!conn) throw new Error('no live connection');
    return conn;
  }

  kinds(kind: EnvelopeBodyKind): pos.v1.Envelope[] {
    return this.received.filter((e) => e.body === kind);
  }
}

function reply(to: pos.v1.Envelope, body: EnvelopeBody): pos.v1.IEnvelope {
  return { messageId: `re-${to.messageId}`, correlationId: to.messageId, ...body };
}

let dir: string;
let material: TlsMaterial;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pos-channel-'));
  material = ensureTlsMaterial(dir, ['T1']);
});

afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function acquirer(): Promise<TinyAcquirer> {
  const acq = await new TinyAcquirer().start(material);
  cleanups.push(() => acq.server.close());
  return acq;
}

function channel(
  acq: TinyAcquirer,
  overrides: Partial<AcquirerChannelOptions> = {},
): { channel: AcquirerChannel; logs: Array<Record<string, unknown>> } {
  const t1 = material.clients.T1;
  if (!t1) throw new Error('no T1 material');
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger(
    { level: 'debug' },
    { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const ch = new AcquirerChannel({
    terminalId: 'T1',
    tls: { host: '127.0.0.1', port: acq.server.port, ca: material.caCert, ...t1 },
    helloFactory: () => ({
      firmwareVersion: '1.0.0',
      journalHeadHash: 'head',
      lifecycleState: 'active',
      lastCommandCounter: 7,
    }),
    heartbeatIntervalMs: 60_000,
    requestTimeoutMs: 2000,
    backoff: { initialMs: 20, maxMs: 200 },
    logger,
    ...overrides,
  });
  cleanups.push(() => ch.close());
  ch.start();
  return { channel: ch, logs };
}

async function rejection(p: Promise<unknown>): Promise<AgentError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof AgentError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

describe('AcquirerChannel', () => {
  it('sends Hello on connect and is up after HelloAck', async () => {
    const acq = await acquirer();
    const { channel: ch } = channel(acq);
    const up = new Promise((resolve) => ch.once('up', resolve));
    await ch.waitUntilUp(5000);
    expect(ch.isUp).toBe(true);
    expect(await up).toMatchObject({ acquirerId: 'ACQ-TEST' });
    const [hello] = acq.kinds('hello');
    expect(hello?.terminalId).toBe('T1');
    expect(hello?.hello).toMatchObject({
      terminalId: 'T1',
      firmwareVersion: '1.0.0',
      lastCommandCounter: 7,
    });
    expect(hello?.messageId).not.toBe('');
  });

  it('measures the clock offset from heartbeats', async () => {
    const acq = await acquirer();
    acq.shiftMs = 3_600_000;
    const { channel: ch } = channel(acq, { heartbeatIntervalMs: 30 });
    await ch.waitUntilUp(5000);
    expect(Math.abs((ch.clockOffsetMs ?? 0) - 3_600_000)).toBeLessThan(250);
    acq.shiftMs = -90_000;
    const sample = await new Promise<{ clockOffsetMs: number; rttMs: number }>((resolve) =>
      ch.once('heartbeat', resolve),
    );
    expect(Math.abs(sample.clockOffsetMs + 90_000)).toBeLessThan(250);
    expect(ch.clockOffsetMs).toBe(sample.clockOffsetMs);
    expect(sample.rttMs).toBeGreaterThanOrEqual(0);
    expect(ch.rttMs).toBe(sample.rttMs);
    expect(acq.kinds('heartbeat')[0]?.heartbeat?.clientTimeMs).toBeGreaterThan(0);
  });

  it('correlates concurrent requests answered out of order', async () => {
    const acq = await acquirer();
    const held: Array<[pos.v1.Envelope, ServerConnection]> = [];
    acq.handlers.deactivationRequest = (env, conn) => {
      held.push([env, conn]);
      if (held.length < 5) return;
      for (const [e, c] of held.reverse()) {
        c.send(
          reply(e, {
            deactivationRequestAck: { reviewId: `review-${e.deactivationRequest?.reason}` },
          }),
        );
      }
    };
    const { channel: ch } = channel(acq);
    await ch.waitUntilUp(5000);
    const reasons = ['a', 'b', 'c', 'd', 'e'];
    const replies = await Promise.all(
      reasons.map((reason) => ch.request({ deactivationRequest: { reason } })),
    );
    expect(replies.map((r) => r.deactivationRequestAck?.reviewId)).toEqual(
      reasons.map((r) => `review-${r}`),
    );
  });

  it('times a request out, ignores the late reply and stays up', async () => {
    const acq = await acquirer();
    acq.handlers.riskReport = (env, conn) =>
      setTimeout(() => !conn.closed && conn.send(reply(env, { riskReportAck: {} })), 300);
    const { channel: ch, logs } = channel(acq);
    await ch.waitUntilUp(5000);
    const err = await rejection(
      ch.request({ riskReport: { rule: 'velocity' } }, { timeoutMs: 50 }),
    );
    expect(err.code).toBe('PROTOCOL_TIMEOUT');
    expect(err.context).toMatchObject({ kind: 'riskReport', timeoutMs: 50 });
    await expect.poll(() => logs.some((l) => l.msg === 'late reply dropped')).toBe(true);
    expect(ch.isUp).toBe(true);
  });

  it('rejects with PROTOCOL_PEER_ERROR and the peer code when the acquirer answers an error', async () => {
    const acq = await acquirer();
    acq.handlers.batchSubmit = (env, conn) =>
      conn.send(reply(env, { error: { code: 'SETTLEMENT_REJECTED', message: 'bad digest' } }));
    const { channel: ch } = channel(acq);
    await ch.waitUntilUp(5000);
    const err = await rejection(ch.request({ batchSubmit: { batchId: 'B1' } }));
    expect(err.code).toBe('PROTOCOL_PEER_ERROR');
    expect(err.context).toMatchObject({
      peerCode: 'SETTLEMENT_REJECTED',
      peerMessage: 'bad digest',
    });
    expect(ch.isUp).toBe(true);
  });

  it('rejects pending requests at once when the link drops, then reconnects', async () => {
    const acq = await acquirer();
    acq.handlers.batchSubmit = () => {}; // never answered
    const { channel: ch } = channel(acq, { requestTimeoutMs: 30_000 });
    await ch.waitUntilUp(5000);
    const pending = [1, 2, 3].map((i) => ch.request({ batchSubmit: { batchId: `B${i}` } }));
    await expect.poll(() => acq.kinds('batchSubmit').length).toBe(3);
    const down = new Promise<AgentError>((resolve) => ch.once('down', resolve));
    const started = performance.now();
    acq.live.destroy();
    for (const p of pending) expect((await rejection(p)).code).toBe('PROTOCOL_DISCONNECTED');
    expect(performance.now() - started).toBeLessThan(1000);
    expect((await down).code).toBe('PROTOCOL_DISCONNECTED');
    expect(ch.isUp).toBe(false);
    expect((await rejection(ch.request({ riskReport: {} }))).code).toBe('PROTOCOL_DISCONNECTED');
    await expect.poll(() => ch.isUp, { timeout: 5000 }).toBe(true);
    expect(acq.kinds('hello')).toHaveLength(2);
    expect(acq.conns).toHaveLength(2);
  });

  it('keeps retrying with backoff while the acquirer is away', async () => {
    const acq = await acquirer();
    let refuseHellos = 3;
    acq.handlers.hello = (env, conn) => {
      if (refuseHellos-- > 0) conn.destroy();
      else conn.send(reply(env, { helloAck: { serverTimeMs: Date.now() } }));
    };
    const delays: number[] = [];
    const { channel: ch, logs } = channel(acq, { random: () => 1 - Number.EPSILON });
    await ch.waitUntilUp(10_000);
    for (const l of logs)
      if (l.msg === 'reconnecting after backoff') delays.push(Number(l.delayMs));
    // Full jitter with random() ~ 1 shows the exponential caps: 20, 40, 80 ms.
    expect(delays).toEqual([19, 39, 79]);
    expect(acq.kinds('hello')).toHaveLength(4);
  });

  it('drops the link when HelloAck does not come, and tries again', async () => {
    const acq = await acquirer();
    let ignore = 1;
    const answer = acq.handlers.hello;
    acq.handlers.hello = (env, conn) => (ignore-- > 0 ? undefined : answer?.(env, conn));
    const { channel: ch, logs } = channel(acq, { helloTimeoutMs: 100 });
    await ch.waitUntilUp(5000);
    // At least one retry; on a loaded machine an answered hello can miss 100 ms as well.
    expect(acq.kinds('hello').length).toBeGreaterThanOrEqual(2);
    expect(
      logs.some((l) => l.msg === 'acquirer handshake failed' && l.code === 'PROTOCOL_TIMEOUT'),
    ).toBe(true);
  });

  it('drops a link whose heartbeats go unanswered, and reconnects', async () => {
    const acq = await acquirer();
    const answer = acq.handlers.heartbeat;
    let silent = true;
    acq.handlers.heartbeat = (env, conn) => (silent ? undefined : answer?.(env, conn));
    const { channel: ch } = channel(acq, { heartbeatIntervalMs: 30, requestTimeoutMs: 100 });
    await ch.waitUntilUp(5000);
    const down = await new Promise<AgentError>((resolve) => ch.once('down', resolve));
    expect(down.code).toBe('PROTOCOL_TIMEOUT');
    silent = false;
    await ch.waitUntilUp(5000);
    expect(acq.conns.length).toBeGreaterThanOrEqual(2);
  });

  const badInputs: Array<[string, () => Buffer, string]> = [
    [
      'garbage bytes in a frame',
      () => encodeFrame(Buffer.from('\xff\xfe not protobuf')),
      'PROTOCOL_MALFORMED',
    ],
    [
      'an oversized length prefix',
      () => Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]),
      'PROTOCOL_FRAME_TOO_LARGE',
    ],
    ['a zero length prefix', () => Buffer.alloc(4), 'PROTOCOL_MALFORMED'],
    [
      'an envelope with no body',
      () => encodeFrame(Buffer.from([0x0a, 0x01, 0x78])),
      'PROTOCOL_MALFORMED',
    ],
  ];
  for (const [name, bytes, code] of badInputs) {
    it(`logs a typed error, drops and reconnects on ${name}`, async () => {
      const acq = await acquirer();
      const { channel: ch, logs } = channel(acq);
      await ch.waitUntilUp(5000);
      const errors: AgentError[] = [];
      ch.on('protocol-error', (e) => errors.push(e));
      const down = new Promise<AgentError>((resolve) => ch.once('down', resolve));
      const first = acq.live;
      first.socket.write(bytes());
      expect((await down).code).toBe(code);
      expect(errors.map((e) => e.code)).toEqual([code]);
      expect(logs.some((l) => l.code === code && l.level === 40)).toBe(true);
      // The channel told the acquirer why before hanging up.
      await expect.poll(() => acq.kinds('error').map((e) => e.error?.code)).toEqual([code]);
      await ch.waitUntilUp(5000);
      expect(acq.live).not.toBe(first);
    });
  }

  it('hands unsolicited commands to the handler and sends its reply back', async () => {
    const acq = await acquirer();
    const seen: pos.v1.Envelope[] = [];
    const { channel: ch } = channel(acq);
    ch.onUnsolicited = async (env, answer) => {
      seen.push(env);
      await new Promise((r) => setTimeout(r, 5));
      answer({ commandResult: { body: Buffer.from('result'), signature: Buffer.alloc(64, 1) } });
    };
    await ch.waitUntilUp(5000);
    acq.live.send({
      messageId: 'cmd-1',
      command: { command: Buffer.from('signed-bytes'), signature: Buffer.alloc(64, 2) },
    });
    await expect.poll(() => acq.kinds('commandResult')).toHaveLength(1);
    const [result] = acq.kinds('commandResult');
    expect(result?.correlationId).toBe('cmd-1');
    expect(result?.terminalId).toBe('T1');
    expect(Buffer.from(result?.commandResult?.body ?? []).toString()).toBe('result');
    expect(seen.map((e) => e.body)).toEqual(['command']);
    expect(Buffer.from(seen[0]?.command?.command ?? []).toString()).toBe('signed-bytes');
  });

  it('answers an unsolicited message with an ErrorReply when the handler fails or is missing', async () => {
    const acq = await acquirer();
    const { channel: ch } = channel(acq);
    await ch.waitUntilUp(5000);
    acq.live.send({ messageId: 'c-1', command: { command: Buffer.from('x') } });
    await expect.poll(() => acq.kinds('error')).toHaveLength(1);
    expect(acq.kinds('error')[0]?.error?.code).toBe('PROTOCOL_UNEXPECTED');
    ch.onUnsolicited = () => {
      throw new AgentError('COMMAND_BAD_SIGNATURE');
    };
    acq.live.send({ messageId: 'c-2', command: { command: Buffer.from('x') } });
    await expect.poll(() => acq.kinds('error')).toHaveLength(2);
    expect(acq.kinds('error')[1]).toMatchObject({
      correlationId: 'c-2',
      error: { code: 'COMMAND_BAD_SIGNATURE' },
    });
    expect(ch.isUp).toBe(true);
  });

  it('waitUntilUp times out while the acquirer is unreachable, and close() stops the retries', async () => {
    const acq = await acquirer();
    const port = acq.server.port;
    await acq.server.close();
    const t1 = material.clients.T1;
    if (!t1) throw new Error('no T1 material');
    const { channel: ch } = channel(acq, {
      tls: { host: '127.0.0.1', port, ca: material.caCert, ...t1 },
    });
    const err = await rejection(ch.waitUntilUp(200));
    expect(err.code).toBe('PROTOCOL_TIMEOUT');
    const waiting = ch.waitUntilUp(5000);
    await ch.close();
    expect((await rejection(waiting)).code).toBe('PROTOCOL_DISCONNECTED');
  });

  it('leaves no sockets or timers behind after close()', async () => {
    const counts = (): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
      return out;
    };
    const before = counts();
    const acq = await acquirer();
    const { channel: ch } = channel(acq, { heartbeatIntervalMs: 20 });
    await ch.waitUntilUp(5000);
    await new Promise((r) => setTimeout(r, 60));
    await ch.close();
    await acq.server.close();
    await new Promise((r) => setImmediate(r));
    const after = counts();
    for (const kind of ['TLSWrap', 'TCPWrap', 'TCPSERVERWRAP', 'Timeout']) {
      expect(after[kind] ?? 0, kind).toBeLessThanOrEqual(before[kind] ?? 0);
    }
    expect(ch.isUp).toBe(false);
    expect(
      isAgentError(await rejection(ch.request({ riskReport: {} })), 'PROTOCOL_DISCONNECTED'),
    ).toBe(true);
  });
});
