import { randomBytes } from 'node:crypto';
import type { Store } from '../../storage/store.ts';
import { encodeUnlockGrant } from '../../protocol/messages.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import { AgentError } from '../../base/errors.ts';
import { isLockSource, type LockSource } from './lifecycle.ts';
import { recordEvent, type TerminalState } from './terminal-state.ts';
import { verifyEd25519 } from './keys.ts';
import type { CommandProcessor } from './commands.ts';

/**
 * The offline unlock of a risk lock. The console shows a challenge; the technician reads
 * it to the acquirer, who signs an UnlockGrant for that challenge, this terminal and an
 * expiry; the code typed back is the expiry and the signature. A challenge is single
 * use and expires; every attempt is journaled.
 */

const CHALLENGE_TTL_MS = 15 * 60_000;
const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';

function newChallenge(): string {
  const bytes = randomBytes(10);
  return [...bytes].map((b) => ALPHABET[b % ALPHABET.length]).join('');
}

/** The code a technician types: expiry (ms, base 36) and the signature (base64url). */
export function formatUnlockCode(expiresAtMs: number, signature: Uint8Array): string {
  return `${expiresAtMs.toString(36)}.${Buffer.from(signature).toString('base64url')}`;
}

function parseUnlockCode(code: string): { expiresAtMs: number; signature: Buffer } {
  const m = /^([0-9a-z]{1,12})\.([A-Za-z0-9_-]{80,90})$/.exec(code.trim());
  if (!m)
    throw new AgentError(
      'UNLOCK_CODE_INVALID',
      'the unlock code is not in the form the acquirer gives',
    );
  return { expiresAtMs: parseInt(m[1]!, 36), signature: Buffer.from(m[2]!, 'base64url') };
}

export class UnlockCodes {
  constructor(
    private readonly d: {
      store: Store;
      clock: Clock;
      log: Logger;
      terminalId: string;
      terminal: TerminalState;
      commands: CommandProcessor;
    },
  ) {}

  /** A fresh challenge for the given lock source, shown on the console. */
  challenge(source: LockSource = 'risk'): { challenge: string; expiresAt: number } {
    const { store, clock } = this.d;
    if (!this.d.terminal.status().locks.includes(source)) {
      throw new AgentError('UNLOCK_CODE_INVALID', `the terminal holds no ${source} lock`);
    }
    const now = clock.now();
    const challenge = newChallenge();
    const expiresAt = now + CHALLENGE_TTL_MS;
    store.atomically(() => {
      store.state.addChallenge({ challenge, source, createdAt: now, expiresAt });
      store.journal.appendEvent('unlock-challenge', { challenge, source, expiresAt }, now);
    });
    return { challenge, expiresAt };
  }

  /** Checks a code against a shown challenge and clears the lock it was signed for. */
  redeem(challenge: string, code: string, by: string): void {
    const { store, clock, log } = this.d;
    try {
      const { expiresAtMs, signature } = parseUnlockCode(code);
      const key = this.d.commands.pinnedKey();
      if (!key) throw new AgentError('COMMAND_NO_KEY');
      store.atomically(() => {
        const now = clock.now();
        const row = store.state.challenge(challenge);
        if (!row)
          throw new AgentError(
            'UNLOCK_CODE_INVALID',
            'that challenge was never shown on this terminal',
          );
        if (row.usedAt !== null)
          throw new AgentError('UNLOCK_CODE_INVALID', 'that challenge was already used');
        if (now > row.expiresAt || now > expiresAtMs)
          throw new AgentError('UNLOCK_CODE_INVALID', 'the challenge or the code has expired');
        if (!isLockSource(row.source)) throw new AgentError('UNLOCK_CODE_INVALID');
        const grant = encodeUnlockGrant({
          terminalId: this.d.terminalId,
          challenge,
          expiresAtMs,
          source: row.source,
        });
        if (!verifyEd25519(key, grant, signature)) {
          throw new AgentError(
            'UNLOCK_CODE_INVALID',
            'the code was not signed by the acquirer for this challenge and terminal',
          );
        }
        store.state.useChallenge(challenge, now);
        this.d.terminal.apply(
          { type: 'unlock', source: row.source, by: 'unlock-code' },
          `offline unlock code for challenge ${challenge}`,
          by,
        );
        store.journal.appendEvent(
          'unlock-code-accepted',
          { challenge, source: row.source, by },
          now,
        );
      });
      log.info({ challenge, by }, 'unlock code accepted');
    } catch (e) {
      const err = e instanceof AgentError ? e : new AgentError('UNLOCK_CODE_INVALID');
      recordEvent(store, clock, log, 'unlock-code-refused', {
        challenge: challenge.slice(0, 32),
        code: err.code,
        reason: err.message,
        by,
      });
      throw err;
    }
  }
}
