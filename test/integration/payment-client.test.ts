/**
 * PaymentClient on the shared pending-request table (protocol/pending-requests.ts): a real
 * Unix socket with a stand-in agent that reads requests and answers only when told to. A
 * request nobody answers fails with PROTOCOL_TIMEOUT; its late reply is dropped without
 * answering anything else; later requests on the same link still work; the link dropping fails
 * whatever still waits with PROTOCOL_DISCONNECTED.
 */
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PaymentClient } from '../../agent/runtime/payment-socket.ts';
import { encodeFrame, FrameDecoder } from '../../protocol/framer.ts';
import { decodeLocalRequest, encodeLocalReply, type pos } from '../../protocol/messages.ts';

let dir: string;
let server: net.Server;
let requests: Array<{ req: pos.v1.LocalRequest; socket: net.Socket }>;
let sock: string;

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'pos-client-'));
  sock = path.join(dir, 'agent.sock');
  requests = [];
  server = net.createServer((socket) => {
    const decoder = new FrameDecoder();
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) requests.push({ req: decodeLocalRequest(f), socket });
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
});

afterEach(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

/** Waits until the stand-in agent has read `n` requests. */
async function received(n: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (requests.length < n) {
    if (Date.now() > deadline) throw new Error(`only ${requests.length} of ${n} requests arrived`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function answer(i: number, reply: Omit<pos.v1.ILocalReply, 'requestId'>): void {
  const { req, socket } = requests[i]!;
  socket.write(encodeFrame(encodeLocalReply({ ...reply, requestId: req.requestId })));
}

const mayReply = (allowed: boolean, reason = '') => ({
  mayTransact: { allowed, state: 'active', locks: [], reason },
});

describe('PaymentClient request timeout', () => {
  it('fails an unanswered request with PROTOCOL_TIMEOUT, drops its late reply and carries on', async () => {
    const client = await PaymentClient.connect(sock, { requestTimeoutMs: 300 });
    try {
      const started = Date.now();
      await expect(client.mayTransact()).rejects.toMatchObject({
        code: 'PROTOCOL_TIMEOUT',
        context: { kind: 'mayTransact', timeoutMs: 300 },
      });
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      await received(1);

      // The second request is outstanding when the first one's late reply comes in: that
      // reply must not be taken for the second's answer.
      const second = client.mayTransact();
      await received(2);
      answer(0, mayReply(false, 'late answer to the first request'));
      answer(1, mayReply(true));
      await expect(second).resolves.toMatchObject({ allowed: true, reason: '' });
    } finally {
      client.close();
    }
  });

  it('answers in time are not cut short, and a dropped link fails what still waits', async () => {
    const client = await PaymentClient.connect(sock, { requestTimeoutMs: 60_000 });
    const first = client.mayTransact();
    const second = client.query(7);
    await received(2);
    answer(0, mayReply(true));
    await expect(first).resolves.toMatchObject({ allowed: true });
    requests[1]!.socket.destroy();
    await expect(second).rejects.toMatchObject({ code: 'PROTOCOL_DISCONNECTED' });
    client.close();
  });

  it('a request on a closed client fails at once instead of waiting for the timeout', async () => {
    const client = await PaymentClient.connect(sock, { requestTimeoutMs: 60_000 });
    client.close();
    const started = Date.now();
    await expect(client.mayTransact()).rejects.toMatchObject({ code: 'PROTOCOL_DISCONNECTED' });
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
