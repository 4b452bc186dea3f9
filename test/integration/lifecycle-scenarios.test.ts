/**
 * Lifecycle scenarios against a real acquirer simulator over mutual TLS on 127.0.0.1, with real
 * in-process agents on real SQLite files: activation, and signed commands delivered over the wire
 * (genuine, offline, forged). Risk and locks per source are in lifecycle-locks.test.ts,
 * deactivation in lifecycle-deactivation.test.ts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { createPublicKey, verify } from 'node:crypto';
import type { AcquirerSimulator, CommandBody } from '../../simulator/acquirer.ts';
import { DEFAULT_FEE_SCHEDULE } from '../../agent/policy/fees.ts';
import type { Clock } from '../../base/clock.ts';
import { generateEd25519, rawPublicKey, TerminalKeyFile } from '../../agent/policy/keys.ts';
import type { IssueOptions } from '../../simulator/command-desk.ts';
import {
  PAN,
  SimWorld,
  codeOf,
  sell,
  sleep,
  until,
  verifiedResults,
  type AgentRig,
} from '../fixtures/lifecycle-rig.ts';

let world: SimWorld;
let sim: AcquirerSimulator;

beforeAll(async () => {
  world = await SimWorld.start('pa-life-');
  sim = world.sim;
});
afterEach(() => world.afterEachTest());
afterAll(() => world.close());

const agentFor = (
  id: string,
  o?: { dir?: string; extra?: Record<string, unknown>; clock?: Clock },
) => world.agentFor(id, o);
const activeAgent = (id: string, extra?: Record<string, unknown>) => world.activeAgent(id, extra);
const locks = (r: AgentRig) => r.agent.core.terminal.status().locks;

describe('activation', () => {
  it('wrong codes are refused with attempts left and journaled; the acquirer limit is reported as such', async () => {
    sim.registerTerminal({ terminalId: 'TA01', activationCode: 'RIGHT-CODE-1' });
    // Real time, but moved forward by hand past the local lockout instead of waiting it out.
    let skewMs = 0;
    const clock: Clock = { now: () => Date.now() + skewMs };
    const { agent } = await agentFor('TA01', {
      extra: { activation: { lockoutMs: 400 } },
      clock,
    });
    for (let i = 1; i <= 4; i++) {
      const err = await agent.activate('WRONG-CODE', 'console:tech1').catch((e: Error) => e);
      expect(err).toMatchObject({ code: 'ACTIVATION_REFUSED' });
      expect((err as Error).message).toMatch(/wrong/);
      expect((err as Error).message).toContain(`(${5 - i} attempts left)`);
      expect(sim.ledger.terminal('TA01')!.failedAttempts).toBe(i);
    }
    // The fifth wrong code uses up the acquirer's allowance: the technician must hear that.
    const fifth = await agent.activate('WRONG-CODE', 'console:tech1').catch((e: Error) => e);
    expect(fifth).toMatchObject({ code: 'ACTIVATION_RETRY_LIMIT' });
    expect((fifth as Error).message).not.toMatch(/[1-9] attempts left/);
    // Locally locked out: refused without asking the acquirer.
    const asked = world.activationRequests.get('TA01');
    expect(await codeOf(() => agent.activate('RIGHT-CODE-1', 'console:tech1'))).toBe(
      'ACTIVATION_RETRY_LIMIT',
    );
    expect(world.activationRequests.get('TA01')).toBe(asked);
    // After the local lockout the acquirer still holds the code blocked; no attempts are promised.
    skewMs += 450;
    const after = await agent.activate('RIGHT-CODE-1', 'console:tech1').catch((e: Error) => e);
    expect(after).toMatchObject({ code: 'ACTIVATION_RETRY_LIMIT' });
    expect((after as Error).message).not.toMatch(/[1-9] attempts left/);
    expect(agent.core.terminal.status().state).toBe('unactivated');
    expect(agent.core.identity()).toBeUndefined();
    expect(agent.commands.pinnedKey()).toBeUndefined();
    const refusals = agent.core.store.journal.events('activation-refused');
    expect(refusals).toHaveLength(7);
    expect(refusals.map((e) => e.detail.code)).toEqual([
      ...Array(4).fill('ACTIVATION_REFUSED'),
      'ACTIVATION_RETRY_LIMIT',
      'ACTIVATION_RETRY_LIMIT',
      'ACTIVATION_RETRY_LIMIT',
    ]);
    expect(agent.core.store.journal.verify().ok).toBe(true);
  });

  it('the right code activates: identity, fee schedule and command key installed together', async () => {
    sim.registerTerminal({
      terminalId: 'TA02',
      activationCode: 'RIGHT-CODE-2',
      merchantId: 'M-777',
      merchantName: 'Noodle House',
    });
    const { agent, dataDir } = await agentFor('TA02');
    expect(await codeOf(() => agent.activate('WRONG-CODE', 'console:tech1'))).toBe(
      'ACTIVATION_REFUSED',
    );
    await agent.activate('RIGHT-CODE-2', 'console:tech1');
    expect(agent.core.terminal.status()).toMatchObject({ state: 'active', locks: [] });
    expect(agent.core.identity()).toMatchObject({
      terminalId: 'TA02',
      merchantId: 'M-777',
      merchantName: 'Noodle House',
    });
    expect(agent.core.store.state.feeSchedules().map((s) => s.version)).toEqual([
      DEFAULT_FEE_SCHEDULE.version,
    ]);
    expect(rawPublicKey(agent.commands.pinnedKey()!)).toEqual(sim.commandPublicKeyRaw);
    // The acquirer holds the terminal's result-signing key, the one in the terminal's key file.
    const own = new TerminalKeyFile(path.join(dataDir, 'keys', 'terminal-ed25519.pem')).load()!;
    expect(sim.ledger.terminal('TA02')!.publicKey).toEqual(rawPublicKey(createPublicKey(own)));
    const sale = agent.core.payments.record({ type: 'sale', amount: 10_000, card: { pan: PAN } });
    expect(sale.feeVersion).toBe(DEFAULT_FEE_SCHEDULE.version);
    // 0.60 % of 100 yuan is 60 fen, below the 300 fen minimum of the default category.
    expect(sale.fee).toBe(300);
    expect(await codeOf(() => agent.activate('RIGHT-CODE-2', 'console:tech1'))).toBe(
      'LIFECYCLE_REFUSED',
    );
  });

  it('a used code is refused to another terminal and to a clone with another key', async () => {
    sim.registerTerminal({ terminalId: 'TA03', activationCode: 'RIGHT-CODE-3' });
    sim.registerTerminal({ terminalId: 'TA04', activationCode: 'RIGHT-CODE-4' });
    const first = await agentFor('TA03');
    await first.agent.activate('RIGHT-CODE-3', 'console:tech1');
    const other = await agentFor('TA04');
    expect(await codeOf(() => other.agent.activate('RIGHT-CODE-3', 'console:tech1'))).toBe(
      'ACTIVATION_REFUSED',
    );
    expect(other.agent.core.terminal.status().state).toBe('unactivated');
    // Same terminal id and certificate, fresh data dir: a new signing key, an already used code.
    const clone = await agentFor('TA03', { dir: path.join(world.root, 'TA03-clone') });
    const err = await clone.agent.activate('RIGHT-CODE-3', 'console:tech1').catch((e) => e);
    expect(err).toMatchObject({ code: 'ACTIVATION_REFUSED' });
    expect((err as Error).message).toMatch(/already used/);
    expect(clone.agent.core.terminal.status().state).toBe('unactivated');
    expect(clone.agent.commands.pinnedKey()).toBeUndefined();
    expect(clone.agent.core.store.journal.events('activation-refused')).toHaveLength(1);
  });
});

describe('signed commands over the wire', () => {
  it('a lock is applied, answered with a result signed by the key registered at activation', async () => {
    const r = await activeAgent('TW01');
    const issued = sim.issueCommand('TW01', { lock: { reason: 'audit' } });
    expect(issued.pushed).toBe(true);
    await until(() => sim.ledger.commandResults('TW01').length === 1, 'the command result');
    expect(locks(r)).toEqual(['remote']);
    expect(await codeOf(() => sell(r.agent, 1))).toBe('LIFECYCLE_LOCKED');
    const [res] = verifiedResults(sim, 'TW01');
    expect(res!.signatureOk).toBe(true);
    expect(res!.commandId).toBe(issued.id);
    expect(res!.body).toMatchObject({
      terminalId: 'TW01',
      counter: issued.counter,
      outcome: 'applied',
      lifecycleState: 'active',
      locks: ['remote'],
    });
    // The check can fail: one flipped bit of the body no longer verifies.
    const row = sim.ledger.db.prepare('SELECT body, signature FROM command_results').get() as {
      body: Buffer;
      signature: Buffer;
    };
    row.body[0]! ^= 1;
    const key = createPublicKey(
      new TerminalKeyFile(path.join(r.dataDir, 'keys', 'terminal-ed25519.pem')).load()!,
    );
    expect(verify(null, row.body, key, row.signature)).toBe(false);
  });

  it('an unlock for source remote clears only remote; a technician lock stays', async () => {
    const r = await activeAgent('TW02');
    r.agent.core.terminal.applyOrRecord(
      { type: 'lock', source: 'technician', by: 'technician' },
      'console lock',
      'console:tech1',
    );
    sim.issueCommand('TW02', { lock: { reason: 'audit' } });
    await until(() => locks(r).includes('remote'), 'remote lock');
    sim.issueCommand('TW02', { unlock: { source: 'remote', reason: 'audit done' } });
    await until(() => !locks(r).includes('remote'), 'remote unlock');
    expect(locks(r)).toEqual(['technician']);
    expect(r.agent.core.terminal.mayTransact().allowed).toBe(false);
  });

  it('a command issued while the agent is stopped or the link refused is applied on next contact', async () => {
    const r = await activeAgent('TW03');
    await r.agent.stop();
    world.rigs.splice(world.rigs.indexOf(r), 1);
    const whileStopped = sim.issueCommand('TW03', { lock: { reason: 'while away' } });
    expect(whileStopped.pushed).toBe(false);
    const again = await agentFor('TW03');
    await until(() => locks(again).includes('remote'), 'the polled lock');
    // Its result must reach the sim before the link is cut: a result lost with the link is not
    // asked for again (the poll starts above the terminal's last applied counter).
    await until(() => sim.ledger.commandResults('TW03').length === 1, 'the first result');
    sim.behave({ refuseConnections: true });
    await until(() => !again.agent.channel.isUp, 'the link to drop');
    const whileDown = sim.issueCommand('TW03', { unlock: { source: 'remote', reason: 'ok' } });
    expect(whileDown.pushed).toBe(false);
    await sleep(100);
    expect(locks(again)).toEqual(['remote']);
    sim.behave({ refuseConnections: false });
    await until(() => locks(again).length === 0, 'the polled unlock');
    await until(() => sim.ledger.commandResults('TW03').length === 2, 'both results');
    expect(verifiedResults(sim, 'TW03').map((x) => [x.body.outcome, x.signatureOk])).toEqual([
      ['applied', true],
      ['applied', true],
    ]);
  });

  it('forged, altered, misdirected, expired and replayed commands are refused over the wire', async () => {
    const r = await activeAgent('TW04');
    const stranger = generateEd25519();
    const lock = sim.issueCommand('TW04', { lock: { reason: 'genuine' } });
    await until(() => locks(r).includes('remote'), 'genuine lock');
    sim.issueCommand('TW04', { unlock: { source: 'remote', reason: 'genuine' } });
    await until(() => locks(r).length === 0, 'genuine unlock');
    const attacks: Array<[string, CommandBody, IssueOptions | 'replay', string]> = [
      [
        'wrong key',
        { deactivate: { violation: true, reason: 'x' } },
        { signWith: stranger.privateKey },
        'COMMAND_BAD_SIGNATURE',
      ],
      ['flipped byte', { lock: { reason: 'x' } }, { tamper: true }, 'COMMAND_BAD_SIGNATURE'],
      ['unsigned', { lock: { reason: 'x' } }, { unsigned: true }, 'COMMAND_UNSIGNED'],
      [
        'other terminal',
        { lock: { reason: 'x' } },
        { commandTerminalId: 'TW99' },
        'COMMAND_WRONG_TERMINAL',
      ],
      ['expired', { lock: { reason: 'x' } }, { expiresInMs: -5 * 60_000 }, 'COMMAND_EXPIRED'],
      ['replayed', { lock: { reason: 'x' } }, 'replay', 'COMMAND_REPLAYED'],
      ['lower counter', { lock: { reason: 'x' } }, { counter: 1 }, 'COMMAND_REPLAYED'],
    ];
    for (const [name, body, opts, code] of attacks) {
      const before = {
        status: r.agent.core.terminal.status(),
        counter: r.agent.commands.lastCounter(),
      };
      const results = sim.ledger.commandResults('TW04').length;
      const parts = opts === 'replay' ? lock : sim.rawSignedCommand('TW04', body, opts);
      sim.deliverSignedCommand('TW04', parts);
      await until(() => sim.ledger.commandResults('TW04').length === results + 1, name);
      const res = verifiedResults(sim, 'TW04').at(-1)!;
      expect([res.body.outcome, res.body.errorCode, res.signatureOk], name).toEqual([
        'refused',
        code,
        true,
      ]);
      expect(res.body.locks, name).toEqual([]);
      expect(r.agent.core.terminal.status(), name).toEqual(before.status);
      expect(r.agent.commands.lastCounter(), name).toBe(before.counter);
      expect(r.agent.core.store.journal.events('command-refused').at(-1)?.detail.code, name).toBe(
        code,
      );
    }
    expect(r.agent.core.store.journal.events('command-refused')).toHaveLength(attacks.length);
    // Forgeries burn no counter: the next genuine command still applies.
    sim.issueCommand('TW04', { lock: { reason: 'genuine again' } });
    await until(() => locks(r).includes('remote'), 'genuine lock after the attacks');
    expect(r.agent.core.store.journal.verify().ok).toBe(true);
  });
});
