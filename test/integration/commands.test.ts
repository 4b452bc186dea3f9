import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { openCore, type Core } from '../../agent/runtime/core.ts';
import { activateForTest, commandProcessorFor } from '../fixtures/core.ts';
import { CommandProcessor } from '../../agent/policy/commands.ts';
import {
  generateEd25519,
  rawPublicKey,
  signEd25519,
  TerminalKeyFile,
  verifyEd25519,
} from '../../agent/policy/keys.ts';
import { ManualClock } from '../../base/clock.ts';
import { walCommits } from '../fixtures/journal-faults.ts';
import { encodeCommand, decodeCommandResultBody, type pos } from '../../protocol/messages.ts';
import { createPublicKey } from 'node:crypto';

/**
 * The attack matrix of signed commands: every forged, altered, replayed, stale or
 * misdirected command is refused, recorded in the journal, and changes nothing.
 */

const TERMINAL = 'T0001';
const acquirer = generateEd25519();
const stranger = generateEd25519();

let dir: string;
let core: Core;
let clock: ManualClock;
let offset = 0;
let processor: CommandProcessor;

function command(
  body: Omit<pos.v1.ICommand, 'terminalId' | 'counter' | 'issuedAtMs' | 'expiresAtMs' | 'nonce'>,
  o: { counter: number; terminalId?: string; expiresInMs?: number },
): Uint8Array {
  return encodeCommand({
    terminalId: o.terminalId ?? TERMINAL,
    counter: o.counter,
    issuedAtMs: clock.now(),
    expiresAtMs: clock.now() + (o.expiresInMs ?? 60_000),
    nonce: randomBytes(12),
    ...body,
  });
}

function signed(bytes: Uint8Array, key = acquirer.privateKey): pos.v1.ISignedCommand {
  return { command: bytes, signature: signEd25519(key, bytes) };
}

function snapshot() {
  return {
    status: core.terminal.status(),
    counter: processor.lastCounter(),
    head: core.store.journal.headOf().seq,
  };
}

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'pa-cmd-'));
  clock = new ManualClock();
  core = openCore({ dataDir: dir, terminalId: TERMINAL }, { clock });
  activateForTest(core);
  const terminalKeys = new TerminalKeyFile(path.join(dir, 'keys', 'terminal.pem'));
  terminalKeys.loadOrCreate();
  offset = 0;
  processor = commandProcessorFor(core, {
    acquirerPublicKey: acquirer.publicKey,
    clockOffsetMs: () => offset,
    terminalKey: () => terminalKeys.load(),
  });
});

afterEach(() => {
  core.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('signed commands', () => {
  it('applies a genuine lock and answers with a result signed by the terminal', () => {
    const out = processor.handle(
      signed(command({ lock: { reason: 'fraud review' } }, { counter: 1 })),
    );
    expect(out.applied).toBe(true);
    expect(core.terminal.status().locks).toEqual(['remote']);
    expect(processor.lastCounter()).toBe(1);
    const body = decodeCommandResultBody(out.result.body!);
    expect(body.outcome).toBe('applied');
    expect(body.locks).toEqual(['remote']);
    expect(body.journalHeadHash).toBe(core.store.journal.headOf().hash);
    const terminalPublic = createPublicKey(
      new TerminalKeyFile(path.join(dir, 'keys', 'terminal.pem')).load()!,
    );
    expect(verifyEd25519(terminalPublic, out.result.body!, out.result.signature!)).toBe(true);
  });

  const attacks: Array<[string, () => pos.v1.ISignedCommand, string]> = [
    [
      'forged (signed by another key)',
      () => signed(command({ lock: { reason: 'x' } }, { counter: 1 }), stranger.privateKey),
      'COMMAND_BAD_SIGNATURE',
    ],
    [
      'bit-flipped after signing',
      () => {
        const s = signed(command({ lock: { reason: 'x' } }, { counter: 1 }));
        const bytes = Buffer.from(s.command!);
        bytes[bytes.length - 1]! ^= 0x01;
        return { command: bytes, signature: s.signature };
      },
      'COMMAND_BAD_SIGNATURE',
    ],
    [
      'signature bit-flipped',
      () => {
        const s = signed(command({ lock: { reason: 'x' } }, { counter: 1 }));
        const sig = Buffer.from(s.signature!);
        sig[10]! ^= 0x80;
        return { command: s.command, signature: sig };
      },
      'COMMAND_BAD_SIGNATURE',
    ],
    [
      'unsigned',
      () => ({
        command: command({ lock: { reason: 'x' } }, { counter: 1 }),
        signature: new Uint8Array(),
      }),
      'COMMAND_UNSIGNED',
    ],
    [
      'for another terminal',
      () => signed(command({ lock: { reason: 'x' } }, { counter: 1, terminalId: 'T9999' })),
      'COMMAND_WRONG_TERMINAL',
    ],
    [
      'expired',
      () => signed(command({ lock: { reason: 'x' } }, { counter: 1, expiresInMs: -60_000 })),
      'COMMAND_EXPIRED',
    ],
    ['signed garbage', () => signed(randomBytes(40)), 'COMMAND_MALFORMED'],
    ['no body', () => signed(command({}, { counter: 1 })), 'COMMAND_UNKNOWN'],
    [
      'counter zero',
      () => signed(command({ lock: { reason: 'x' } }, { counter: 0 })),
      'COMMAND_MALFORMED',
    ],
  ];

  for (const [name, make, code] of attacks) {
    it(`refuses and records a command ${name}`, () => {
      const before = snapshot();
      const out = processor.handle(make());
      expect(out.applied).toBe(false);
      expect(out.error?.code).toBe(code);
      const after = snapshot();
      expect(after.status).toEqual(before.status);
      expect(after.counter).toBe(before.counter);
      const refusals = core.store.journal.events('command-refused');
      expect(refusals.at(-1)?.detail.code).toBe(code);
      expect(core.store.journal.verify().ok).toBe(true);
    });
  }

  it('refuses a replay and a lower counter once a counter was applied', () => {
    const first = signed(command({ lock: { reason: 'x' } }, { counter: 5 }));
    expect(processor.handle(first).applied).toBe(true);
    expect(
      processor.handle(
        signed(command({ unlock: { source: 'remote', reason: 'done' } }, { counter: 6 })),
      ).applied,
    ).toBe(true);
    const before = snapshot();
    // The captured lock, replayed after the unlock, must not lock the terminal again.
    expect(processor.handle(first).error?.code).toBe('COMMAND_REPLAYED');
    expect(
      processor.handle(signed(command({ lock: { reason: 'x' } }, { counter: 4 }))).error?.code,
    ).toBe('COMMAND_REPLAYED');
    expect(snapshot().status).toEqual(before.status);
    expect(processor.lastCounter()).toBe(6);
  });

  it('answers a redelivery of the last command, byte for byte, with its first result', () => {
    const lock = signed(command({ lock: { reason: 'x' } }, { counter: 7 }));
    const first = processor.handle(lock);
    expect(first.applied).toBe(true);
    const head = core.store.journal.headOf().seq;
    const again = processor.handle(lock);
    expect(again.applied).toBe(false);
    expect(again.error).toBeUndefined();
    expect(Buffer.from(again.result.body!).equals(Buffer.from(first.result.body!))).toBe(true);
    expect(core.store.journal.headOf().seq).toBe(head);
    // The same counter with other bytes is no redelivery: it is refused as a replay.
    const forgedTwin = signed(command({ lock: { reason: 'y' } }, { counter: 7 }));
    expect(processor.handle(forgedTwin).error?.code).toBe('COMMAND_REPLAYED');
  });

  it('refuses everything when no key is pinned', () => {
    core.store.state.deleteMeta('command_key');
    const out = processor.handle(signed(command({ lock: { reason: 'x' } }, { counter: 1 })));
    expect(out.error?.code).toBe('COMMAND_NO_KEY');
    expect(core.terminal.status().locks).toEqual([]);
  });

  it('judges expiry by the acquirer clock measured by the heartbeat', () => {
    // The command expires in 60 s by the acquirer's clock; ours runs 5 minutes behind it.
    offset = 5 * 60_000;
    const out = processor.handle(
      signed(command({ lock: { reason: 'x' } }, { counter: 1, expiresInMs: 60_000 })),
    );
    expect(out.error?.code).toBe('COMMAND_EXPIRED');
  });

  it('a genuine command the state refuses still uses up its counter', () => {
    const out = processor.handle(
      signed(
        command({ deactivationDecision: { approve: true, reason: 'approved' } }, { counter: 3 }),
      ),
    );
    expect(out.applied).toBe(false);
    expect(out.error?.code).toBe('LIFECYCLE_REFUSED');
    expect(processor.lastCounter()).toBe(3);
    expect(core.terminal.status().state).toBe('active');
  });

  it('a risk flag at the configured severity locks with source risk; below it only records', () => {
    expect(
      processor.handle(
        signed(command({ riskFlag: { code: 'R1', severity: 3, reason: 'watch' } }, { counter: 1 })),
      ).applied,
    ).toBe(true);
    expect(core.terminal.status().locks).toEqual([]);
    expect(
      processor.handle(
        signed(
          command(
            { riskFlag: { code: 'R2', severity: 7, reason: 'card testing' } },
            { counter: 2 },
          ),
        ),
      ).applied,
    ).toBe(true);
    expect(core.terminal.status().locks).toEqual(['risk']);
    expect(() =>
      core.payments.record({ type: 'sale', amount: 1000, card: { pan: '4111111111111111' } }),
    ).toThrow(/risk/);
  });

  it('rotates the key only by a command signed with the current key', () => {
    const next = generateEd25519();
    expect(
      processor.handle(
        signed(
          command({ rotateKey: { newPublicKey: rawPublicKey(next.publicKey) } }, { counter: 1 }),
        ),
      ).applied,
    ).toBe(true);
    expect(
      processor.handle(signed(command({ lock: { reason: 'old key' } }, { counter: 2 }))).error
        ?.code,
    ).toBe('COMMAND_BAD_SIGNATURE');
    expect(
      processor.handle(
        signed(command({ lock: { reason: 'new key' } }, { counter: 2 }), next.privateKey),
      ).applied,
    ).toBe(true);
  });

  it('commits a command, its effect, its journal event and its remembered answer as one', () => {
    const file = path.join(dir, 'journal.db');
    core.store.checkpoint();
    expect(walCommits(file)).toBe(0);
    const lock = signed(command({ lock: { reason: 'x' } }, { counter: 4 }));
    expect(processor.handle(lock).applied).toBe(true);
    expect(walCommits(file)).toBe(1);
    // Refused by the terminal's state: the used-up counter, the event and the answer, one commit.
    const early = signed(
      command({ deactivationDecision: { approve: true, reason: 'approved' } }, { counter: 5 }),
    );
    expect(processor.handle(early).error?.code).toBe('LIFECYCLE_REFUSED');
    expect(walCommits(file)).toBe(2);
    // So the answer survives with the effect: after a reopen a redelivery gets it again.
    const first = processor.handle(early);
    core.close();
    core = openCore({ dataDir: dir, terminalId: TERMINAL }, { clock });
    processor = commandProcessorFor(core, {
      acquirerPublicKey: acquirer.publicKey,
      clockOffsetMs: () => offset,
      terminalKey: () => undefined,
    });
    const again = processor.handle(early);
    expect(again.error).toBeUndefined();
    expect(Buffer.from(again.result.body!).equals(Buffer.from(first.result.body!))).toBe(true);
  });

  it('survives a reopen: the counter and the effect were committed together', () => {
    expect(
      processor.handle(signed(command({ lock: { reason: 'x' } }, { counter: 9 }))).applied,
    ).toBe(true);
    core.close();
    core = openCore({ dataDir: dir, terminalId: TERMINAL }, { clock });
    expect(core.terminal.status().locks).toEqual(['remote']);
    expect(core.store.state.getMeta('command_counter')).toBe('9');
  });
});
