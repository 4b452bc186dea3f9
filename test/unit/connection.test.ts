import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentError } from '../../base/errors.ts';
import {
  localClientConnection,
  localServerConnection,
  type FrameConnection,
} from '../../protocol/connection.ts';
import { encodeFrame } from '../../protocol/framer.ts';
import { encodeLocalRequest, type pos } from '../../protocol/messages.ts';

type AgentSide = FrameConnection<pos.v1.LocalRequest, pos.v1.ILocalReply>;

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0)) fn();
});

/** A real socket pair on 127.0.0.1: the agent's side wrapped, the app's side raw. */
async function pair(): Promise<{ agent: AgentSide; app: net.Socket }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const app = net.connect(port, '127.0.0.1');
  const agent = localServerConnection(await accepted, { closeGraceMs: 200 });
  server.close();
  cleanups.push(() => {
    app.destroy();
    agent.destroy();
  });
  return { agent, app };
}

function collect(agent: AgentSide): { messages: pos.v1.LocalRequest[]; errors: AgentError[] } {
  const seen = { messages: [] as pos.v1.LocalRequest[], errors: [] as AgentError[] };
  agent.on('message', (m) => seen.messages.push(m));
  agent.on('protocol-error', (e) => seen.errors.push(e));
  return seen;
}

const mayTransact = encodeFrame(encodeLocalRequest({ requestId: 'r1', mayTransact: {} }));

describe('FrameConnection on the payment-app socket', () => {
  it('delivers requests and carries replies back', async () => {
    const { agent, app } = await pair();
    agent.on('message', (req) =>
      agent.send({ requestId: req.requestId, mayTransact: { allowed: true, state: 'active' } }),
    );
    const client = localClientConnection(app);
    const reply = new Promise<pos.v1.LocalReply>((resolve) => client.once('message', resolve));
    client.send({ requestId: 'r9', mayTransact: {} });
    expect(await reply).toMatchObject({ requestId: 'r9', mayTransact: { allowed: true } });
  });

  it('delivers the good frames before garbage, answers with an ErrorReply and closes', async () => {
    const { agent, app } = await pair();
    const seen = collect(agent);
    const client = localClientConnection(app);
    const replies: pos.v1.LocalReply[] = [];
    client.on('message', (r) => replies.push(r));
    app.write(Buffer.concat([mayTransact, encodeFrame(Buffer.from([0xff, 0xff]))]));
    const reason = await agent.waitClosed();
    expect(seen.messages.map((m) => m.requestId)).toEqual(['r1']);
    expect(seen.errors.map((e) => e.code)).toEqual(['PROTOCOL_MALFORMED']);
    expect(reason.code).toBe('PROTOCOL_MALFORMED');
    await client.waitClosed();
    expect(replies.map((r) => [r.requestId, r.error?.code])).toEqual([['', 'PROTOCOL_MALFORMED']]);
  });

  it('refuses an oversized length without waiting for the payload', async () => {
    const { agent, app } = await pair();
    const seen = collect(agent);
    app.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    await agent.waitClosed();
    expect(seen.errors.map((e) => [e.code, e.context.length])).toEqual([
      ['PROTOCOL_FRAME_TOO_LARGE', 0xffffffff],
    ]);
  });

  it('reports a frame cut short by the peer closing', async () => {
    const { agent, app } = await pair();
    const seen = collect(agent);
    app.end(mayTransact.subarray(0, mayTransact.length - 1));
    await agent.waitClosed();
    expect(seen.errors.map((e) => e.code)).toEqual(['PROTOCOL_FRAME_TRUNCATED']);
  });

  it('survives a listener that throws, and refuses to send once closed', async () => {
    const { agent, app } = await pair();
    let calls = 0;
    agent.on('message', () => {
      calls += 1;
      throw new Error('handler bug');
    });
    app.write(Buffer.concat([mayTransact, mayTransact]));
    await expect.poll(() => calls).toBe(2);
    expect(agent.closed).toBe(false);
    agent.destroy();
    expect(() => agent.send({ requestId: 'x', mayTransact: {} })).toThrow(/closed/);
  });
});
