import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openCore, type Core } from '../../agent/runtime/core.ts';
import { activateForTest, commandProcessorFor } from '../fixtures/core.ts';
import { UnlockCodes, formatUnlockCode } from '../../agent/policy/unlock-code.ts';
import { generateEd25519, signEd25519 } from '../../agent/policy/keys.ts';
import { ManualClock } from '../../base/clock.ts';
import { encodeUnlockGrant } from '../../protocol/messages.ts';
import { isAgentError } from '../../base/errors.ts';

/** The offline unlock of a risk lock: only the acquirer's signature for this challenge clears it, once. */

const TERMINAL = 'T0001';
const acquirer = generateEd25519();
let dir: string;
let core: Core;
let clock: ManualClock;
let codes: UnlockCodes;

function codeFor(
  challenge: string,
  o: {
    terminalId?: string;
    expiresAt?: number;
    key?: typeof acquirer.privateKey;
    source?: string;
  } = {},
): string {
  const expiresAt = o.expiresAt ?? clock.now() + 10 * 60_000;
  const grant = encodeUnlockGrant({
    terminalId: o.terminalId ?? TERMINAL,
    challenge,
    expiresAtMs: expiresAt,
    source: o.source ?? 'risk',
  });
  return formatUnlockCode(expiresAt, signEd25519(o.key ?? acquirer.privateKey, grant));
}

function refusal(fn: () => void): string {
  try {
    fn();
  } catch (e) {
    if (isAgentError(e)) return e.code;
    throw e;
  }
  return 'accepted';
}

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'pa-unlock-'));
  clock = new ManualClock();
  core = openCore({ dataDir: dir, terminalId: TERMINAL }, { clock });
  activateForTest(core);
  const commands = commandProcessorFor(core, {
    acquirerPublicKey: acquirer.publicKey,
    expirySkewMs: 0,
  });
  codes = new UnlockCodes({
    store: core.store,
    clock,
    log: core.log,
    terminalId: TERMINAL,
    terminal: core.terminal,
    commands,
  });
  core.terminal.apply({ type: 'lock', source: 'risk', by: 'acquirer' }, 'risk flag', 'test');
});

afterEach(() => {
  core.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('offline unlock code', () => {
  it('a technician alone can never clear a risk lock', () => {
    expect(
      refusal(() =>
        core.terminal.applyOrRecord(
          { type: 'unlock', source: 'risk', by: 'technician' },
          'please',
          'console:tech',
        ),
      ),
    ).toBe('LIFECYCLE_REFUSED');
    expect(core.terminal.status().locks).toEqual(['risk']);
    expect(core.store.journal.events('lifecycle-refused')).toHaveLength(1);
  });

  it('a valid code clears the risk lock, once', () => {
    const { challenge } = codes.challenge('risk');
    const code = codeFor(challenge);
    codes.redeem(challenge, code, 'console:tech');
    expect(core.terminal.status().locks).toEqual([]);
    core.terminal.apply({ type: 'lock', source: 'risk', by: 'acquirer' }, 'again', 'test');
    expect(refusal(() => codes.redeem(challenge, code, 'console:tech'))).toBe(
      'UNLOCK_CODE_INVALID',
    );
    expect(core.terminal.status().locks).toEqual(['risk']);
  });

  it('refuses an expired challenge, an expired code, another terminal, a forged signature, another challenge and garbage', () => {
    const { challenge } = codes.challenge('risk');
    const other = codes.challenge('risk').challenge;
    const stranger = generateEd25519();
    const cases: Array<[string, () => void]> = [
      [
        'code expired',
        () => codes.redeem(challenge, codeFor(challenge, { expiresAt: clock.now() - 1 }), 'c'),
      ],
      [
        'other terminal',
        () => codes.redeem(challenge, codeFor(challenge, { terminalId: 'T0002' }), 'c'),
      ],
      [
        'forged',
        () => codes.redeem(challenge, codeFor(challenge, { key: stranger.privateKey }), 'c'),
      ],
      ['other challenge', () => codes.redeem(challenge, codeFor(other), 'c')],
      [
        'other source',
        () => codes.redeem(challenge, codeFor(challenge, { source: 'remote' }), 'c'),
      ],
      ['never shown', () => codes.redeem('AAAAAAAAAA', codeFor('AAAAAAAAAA'), 'c')],
      ['garbage', () => codes.redeem(challenge, 'not-a-code', 'c')],
    ];
    for (const [name, attempt] of cases) {
      expect(refusal(attempt), name).toBe('UNLOCK_CODE_INVALID');
      expect(core.terminal.status().locks, name).toEqual(['risk']);
    }
    clock.advance(16 * 60_000);
    expect(
      refusal(() =>
        codes.redeem(challenge, codeFor(challenge, { expiresAt: clock.now() + 60_000 }), 'c'),
      ),
    ).toBe('UNLOCK_CODE_INVALID');
    expect(core.store.journal.events('unlock-code-refused')).toHaveLength(cases.length + 1);
    expect(core.terminal.status().locks).toEqual(['risk']);
  });
});
