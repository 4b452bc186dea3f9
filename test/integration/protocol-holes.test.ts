/**
 * The holes an outside acquirer found, closed and proven over real mutual TLS on 127.0.0.1 with
 * real agents on real SQLite files: command lifetime, the acquirer clock bounds, certificate
 * purpose, and link-level refusals journaled (rate-limited). Unit-level proofs are in
 * test/unit/{command-time,clock-trust,link-refusals}.test.ts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import type { AcquirerSimulator, CommandBody, IssueOptions } from '../../simulator/acquirer.ts';
import { startFrameServer, type FrameServer } from '../../protocol/server.ts';
import { newMessageId } from '../../protocol/messages.ts';
import {
  SimWorld,
  startAgent,
  until,
  verifiedResults,
  type AgentRig,
} from '../fixtures/lifecycle-rig.ts';

const HOUR = 3600_000;
let world: SimWorld;
let sim: AcquirerSimulator;

beforeAll(async () => {
  world = await SimWorld.start('pa-holes-');
  sim = world.sim;
});
afterEach(async () => {
  sim.behave({ clockOffsetMs: 0, garbage: null });
  await world.afterEachTest();
});
afterAll(() => world.close());

const fastBeats = () => ({
  acquirer: { port: sim.port, heartbeatIntervalMs: 60, backoffInitialMs: 20, backoffMaxMs: 100 },
});
const locks = (r: AgentRig) => r.agent.core.terminal.status().locks;
const events = (r: AgentRig, name: string) => r.agent.core.store.journal.events(name);

/** Issues a command and waits for the terminal's signed result; returns its error code. */
async function resultOf(r: AgentRig, body: CommandBody, o: IssueOptions = {}): Promise<string> {
  const issued = sim.issueCommand(r.terminalId, body, o);
  let found: ReturnType<typeof verifiedResults>[number] | undefined;
  await until(() => {
    found = verifiedResults(sim, r.terminalId).find((x) => x.commandId === issued.id);
    return found !== undefined;
  }, `result of command ${issued.counter}`);
  expect(found!.signatureOk).toBe(true);
  return found!.body.outcome === 'applied' ? 'applied' : found!.body.errorCode;
}

describe('maximum command lifetime over the wire', () => {
  it('refuses ten years, MAX_SAFE_INTEGER and a day in the future; a normal lock still applies', async () => {
    const r = await world.activeAgent('TH01');
    const lock = { lock: { reason: 'lifetime test' } };
    expect(await resultOf(r, lock, { expiresInMs: 10 * 365 * 24 * HOUR })).toBe(
      'COMMAND_LIFETIME_TOO_LONG',
    );
    const issuedAtMs = sim.now();
    expect(
      await resultOf(r, lock, { issuedAtMs, expiresInMs: Number.MAX_SAFE_INTEGER - issuedAtMs }),
    ).toBe('COMMAND_LIFETIME_TOO_LONG');
    expect(await resultOf(r, lock, { issuedAtMs: sim.now() + 24 * HOUR })).toBe(
      'COMMAND_ISSUED_IN_FUTURE',
    );
    expect(locks(r)).toEqual([]);
    // A refused command keeps its counter unused, so a CommandPoll may bring it again: each
    // delivery is refused the same way.
    const codes = events(r, 'command-refused').map((e) => e.detail.code);
    expect(new Set(codes)).toEqual(
      new Set(['COMMAND_LIFETIME_TOO_LONG', 'COMMAND_ISSUED_IN_FUTURE']),
    );
    expect(await resultOf(r, lock)).toBe('applied');
    expect(locks(r)).toEqual(['remote']);
  });
});

describe('a remote deactivation needs a reason', () => {
  it('a deactivate without one, or an approval of two letters, is refused over the wire; with one it applies', async () => {
    const r = await world.activeAgent('TH05');
    expect(await resultOf(r, { deactivate: { violation: true } })).toBe('COMMAND_MALFORMED');
    expect(await resultOf(r, { deactivate: { violation: false, reason: '  ' } })).toBe(
      'COMMAND_MALFORMED',
    );
    expect(r.agent.core.terminal.status().state).toBe('active');
    expect(await resultOf(r, { deactivate: { violation: false, reason: 'shop closed' } })).toBe(
      'applied',
    );
    expect(r.agent.core.terminal.status().state).toBe('deactivation-pending');
    expect(await resultOf(r, { deactivationDecision: { approve: true, reason: 'ok' } })).toBe(
      'COMMAND_MALFORMED',
    );
    expect(r.agent.core.terminal.status().state).toBe('deactivation-pending');
  });
});

describe('acquirer clock bounds over the wire', () => {
  it('a clock 12 h behind is never trusted, from HelloAck or after a jump; commands are refused and the event journaled', async () => {
    sim.behave({ clockOffsetMs: -12 * HOUR });
    const r = await world.activeAgent('TH02', fastBeats());
    await until(() => events(r, 'acquirer-clock-untrusted').length > 0, 'untrusted at hello');
    expect(events(r, 'acquirer-clock-untrusted')[0]!.detail).toMatchObject({ reading: 'hello' });
    // Valid by the lying clock, expired an hour and more by real time.
    expect(await resultOf(r, { lock: { reason: 'stale' } })).toBe('COMMAND_CLOCK_UNTRUSTED');
    expect(locks(r)).toEqual([]);

    sim.behave({ clockOffsetMs: 0 });
    await until(() => events(r, 'acquirer-clock-trusted').length > 0, 'trusted again');
    expect(await resultOf(r, { lock: { reason: 'fresh' } })).toBe('applied');
    // The issue's case: a command that expired an hour ago by real time.
    const old = { issuedAtMs: Date.now() - 2 * HOUR, expiresInMs: HOUR };
    expect(await resultOf(r, { unlock: { source: 'remote', reason: 'old' } }, old)).toBe(
      'COMMAND_EXPIRED',
    );

    sim.behave({ clockOffsetMs: -12 * HOUR });
    await until(() => events(r, 'acquirer-clock-untrusted').length > 1, 'untrusted after jump');
    expect(String(events(r, 'acquirer-clock-untrusted')[1]!.detail.reason)).toMatch(/off|jumped/);
    expect(await resultOf(r, { unlock: { source: 'remote', reason: 'x' } })).toBe(
      'COMMAND_CLOCK_UNTRUSTED',
    );
    expect(locks(r)).toEqual(['remote']);
    // One row per change of verdict, not one per heartbeat.
    await new Promise((res) => setTimeout(res, 300));
    expect(events(r, 'acquirer-clock-untrusted')).toHaveLength(2);
  });
});

describe('server certificate with the wrong purpose', () => {
  it('is a TLS error (INVALID_PURPOSE), journaled as a security event', async () => {
    const wrong = sim.clientTls('TPURPOSE');
    const server = await startFrameServer({
      ca: sim.tls.caCert,
      cert: wrong.cert,
      key: wrong.key,
      onConnection: (conn) => conn.destroy(),
    });
    try {
      const dir = path.join(world.root, 'TH03');
      const r = await startAgent(sim, 'TH03', dir, {
        extra: { acquirer: { port: server.port, backoffInitialMs: 20, backoffMaxMs: 50 } },
        waitUp: false,
      });
      world.rigs.push(r);
      await until(() => events(r, 'link-tls-refused').length > 0, 'journaled TLS refusal');
      expect(events(r, 'link-tls-refused')[0]!.detail).toMatchObject({
        code: 'PROTOCOL_TLS',
        socketError: 'INVALID_PURPOSE',
      });
      expect(r.agent.channel.isUp).toBe(false);
    } finally {
      await server.close();
    }
  });
});

/**
 * An acquirer that misbehaves at the link level, one way per connection: a HelloAck naming
 * another terminal, a command pushed before HelloAck, garbage bytes. Built on the project's
 * frame server (real mutual TLS) with the simulator's TLS material.
 */
async function misbehavingAcquirer(script: Array<'other-terminal' | 'early-command' | 'garbage'>) {
  let n = 0;
  const server: FrameServer = await startFrameServer({
    ca: sim.tls.caCert,
    cert: sim.tls.serverCert,
    key: sim.tls.serverKey,
    onConnection: (conn, cn) => {
      const how = script[Math.min(n++, script.length - 1)];
      conn.on('message', (env) => {
        if (env.body !== 'hello') return;
        const base = { messageId: newMessageId(), sentAtMs: Date.now() };
        if (how === 'garbage') {
          conn.socket.write(Buffer.from([0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff]));
        } else if (how === 'early-command') {
          conn.send({
            ...base,
            terminalId: cn,
            command: { command: new Uint8Array([1]), signature: new Uint8Array(64) },
          });
        } else {
          conn.send({
            ...base,
            terminalId: 'SOMEONE-ELSE',
            correlationId: env.messageId,
            helloAck: { serverTimeMs: Date.now(), acquirerId: 'EVIL' },
          });
        }
      });
    },
  });
  return server;
}

describe('link-level refusals are journaled, rate-limited', () => {
  it('another terminal, a command before HelloAck, garbage: each a security row; a flood stops at the quota', async () => {
    const script = ['other-terminal', 'early-command', 'garbage'] as const;
    const server = await misbehavingAcquirer([...script]);
    try {
      const dir = path.join(world.root, 'TH04');
      const r = await startAgent(sim, 'TH04', dir, {
        extra: { acquirer: { port: server.port, backoffInitialMs: 5, backoffMaxMs: 20 } },
        waitUp: false,
      });
      world.rigs.push(r);
      // The garbage goes on for every later connection: far more than the quota of 10.
      await until(() => events(r, 'link-refused').length >= 10, 'ten refusals journaled');
      const rows = events(r, 'link-refused').map((e) => e.detail);
      expect(rows[0]).toMatchObject({ code: 'PROTOCOL_UNEXPECTED' });
      expect(String(rows[0]!.reason)).toMatch(/another terminal/);
      expect(rows[1]).toMatchObject({ code: 'PROTOCOL_UNEXPECTED', kind: 'command' });
      expect(String(rows[1]!.reason)).toMatch(/before HelloAck/);
      expect(rows[2]).toMatchObject({ code: 'PROTOCOL_MALFORMED' });
      // Keep it refusing a while: the journal does not grow past the quota.
      await new Promise((res) => setTimeout(res, 500));
      expect(events(r, 'link-refused')).toHaveLength(10);
      expect(r.agent.core.store.journal.verify().ok).toBe(true);
      expect(r.agent.core.terminal.status().locks).toEqual([]);
    } finally {
      await server.close();
    }
  });
});
