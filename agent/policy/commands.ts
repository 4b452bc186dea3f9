import { createHash, type KeyObject } from 'node:crypto';
import type { Store } from '../../storage/store.ts';
import {
  decodeCommand,
  decodeCommandResultBody,
  encodeCommandResultBody,
  type pos,
} from '../../protocol/messages.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import { AgentError, isAgentError, type ErrorCode } from '../../base/errors.ts';
import { isLockSource } from './lifecycle.ts';
import { recordEvent, type TerminalState } from './terminal-state.ts';
import { publicKeyFromRaw, signEd25519, verifyEd25519 } from './keys.ts';
import { installFeeSchedule } from '../runtime/core.ts';
import { feeScheduleFromWire } from './fees.ts';
import { checkCommandTimes } from './command-time.ts';
import { hasDeactivationReason } from './lifecycle.ts';

/**
 * Signed remote commands. A command is obeyed only if, in this order: a key is pinned,
 * it carries a signature, the signature verifies over the exact bytes received, the
 * decoded command names this terminal, its times hold by the acquirer's clock as the link
 * measured it and trusts it (command-time.ts: not expired, not issued in the future, a
 * lifetime within the configured maximum), and its counter is above the last applied one. The new
 * counter and the command's effect commit in one SQLite transaction, so a crash can
 * neither lose an applied command nor let it be applied twice.
 */

export const META_COMMAND_KEY = 'command_key';
export const META_COMMAND_COUNTER = 'command_counter';
const META_LAST_COMMAND = 'last_command';

interface LastCommand {
  counter: number;
  digest: string;
  body: string;
  signature: string;
}

function commandDigest(signed: pos.v1.ISignedCommand): string {
  return createHash('sha256')
    .update(signed.command ?? new Uint8Array())
    .digest('hex');
}

/** Work a command asks for after its effect is committed (network, long-running). */
export type FollowUp = 'settle-now' | 'finalize-deactivation' | undefined;

export interface CommandOutcome {
  result: pos.v1.ICommandResult;
  body: pos.v1.ICommandResultBody;
  applied: boolean;
  followUp?: FollowUp;
  error?: AgentError;
}

export interface CommandDeps {
  store: Store;
  clock: Clock;
  log: Logger;
  config: Pick<Config, 'terminalId' | 'risk'> & {
    commands: Pick<Config['commands'], 'expirySkewMs' | 'maxLifetimeMs'>;
  };
  terminal: TerminalState;
  /**
   * The acquirer's clock minus ours, from the heartbeat. Throws COMMAND_CLOCK_UNTRUSTED when
   * the measured offset is beyond its bounds (clock-trust.ts).
   */
  clockOffsetMs: () => number;
  /** The terminal's own signing key; undefined before activation or after deactivation. */
  terminalKey: () => KeyObject | undefined;
}

export class CommandProcessor {
  private pinned: { b64: string; key: KeyObject } | undefined;

  constructor(private readonly d: CommandDeps) {}

  /** The pinned acquirer key, if any (parsed once per pinned value: a lock is not kept waiting). */
  pinnedKey(): KeyObject | undefined {
    const b64 = this.d.store.state.getMeta(META_COMMAND_KEY);
    if (!b64) return undefined;
    if (this.pinned?.b64 !== b64)
      this.pinned = { b64, key: publicKeyFromRaw(Buffer.from(b64, 'base64')) };
    return this.pinned.key;
  }

  lastCounter(): number {
    return Number(this.d.store.state.getMeta(META_COMMAND_COUNTER) ?? 0);
  }

  /** Pins the acquirer's command key (at activation, or by a rotate-key command). */
  pinKey(raw: Uint8Array): void {
    publicKeyFromRaw(raw); // refuse a malformed key before storing it
    this.d.store.state.setMeta(META_COMMAND_KEY, Buffer.from(raw).toString('base64'));
  }

  /** Verifies, applies and answers one signed command. Never throws. */
  handle(signed: pos.v1.ISignedCommand): CommandOutcome {
    let counter = 0;
    try {
      const cmd = this.authenticate(signed);
      counter = cmd.counter;
      // Before the time checks: the command applied last is answered with its first result even
      // after it expired, or the acquirer would read a refusal of what was done.
      const again = this.redelivery(signed, cmd);
      if (again) return again;
      const { expirySkewMs, maxLifetimeMs } = this.d.config.commands;
      const acquirerNow = () => this.d.clock.now() + this.d.clockOffsetMs();
      checkCommandTimes(cmd, acquirerNow, { expirySkewMs, maxLifetimeMs });
      return this.apply(signed, cmd);
    } catch (e) {
      const err = isAgentError(e) ? e : new AgentError('COMMAND_MALFORMED', (e as Error).message);
      recordEvent(this.d.store, this.d.clock, this.d.log, 'command-refused', {
        code: err.code,
        reason: err.message,
        counter,
      });
      return {
        ...this.answer(counter, 'refused', err.code, err.message),
        applied: false,
        error: err,
      };
    }
  }

  /** Checks key, signature, terminal, counter and body (not times) and returns the command. */
  private authenticate(signed: pos.v1.ISignedCommand): pos.v1.Command {
    const key = this.pinnedKey();
    if (!key)
      throw new AgentError(
        'COMMAND_NO_KEY',
        'no acquirer key is pinned: the terminal is not activated',
      );
    const bytes = signed.command ?? new Uint8Array();
    const sig = signed.signature ?? new Uint8Array();
    if (sig.length === 0) throw new AgentError('COMMAND_UNSIGNED');
    if (!verifyEd25519(key, bytes, sig)) throw new AgentError('COMMAND_BAD_SIGNATURE');
    let cmd: pos.v1.Command;
    try {
      cmd = decodeCommand(bytes);
    } catch {
      throw new AgentError('COMMAND_MALFORMED');
    }
    if (cmd.terminalId !== this.d.config.terminalId) {
      throw new AgentError(
        'COMMAND_WRONG_TERMINAL',
        `the command is for terminal ${cmd.terminalId.slice(0, 16)}`,
      );
    }
    if (!Number.isSafeInteger(cmd.counter) || cmd.counter <= 0)
      throw new AgentError('COMMAND_MALFORMED', 'the counter is not a positive whole number');
    // The schema requires it (docs/protocol.md, "What is signed"): refused before the counter.
    if ((cmd.nonce?.length ?? 0) < 8)
      throw new AgentError('COMMAND_MALFORMED', 'the nonce is shorter than 8 bytes');
    if (!cmd.body) throw new AgentError('COMMAND_UNKNOWN');
    return cmd;
  }

  /**
   * Counter, effect, journal event and the remembered answer commit together: one durable
   * commit per command (a lock waits for one flush, not two), and no crash can leave a command
   * applied whose answer a redelivery would not find.
   */
  private apply(signed: pos.v1.ISignedCommand, cmd: pos.v1.Command): CommandOutcome {
    const { store } = this.d;
    const source = `command:${cmd.counter}`;
    const kind = cmd.body!;
    try {
      const outcome = store.atomically(() => {
        this.claimCounter(cmd.counter);
        const followUp = this.effect(cmd, source);
        store.journal.appendEvent(
          'command-applied',
          { counter: cmd.counter, command: kind, detail: describe(cmd) },
          this.d.clock.now(),
        );
        const answered = this.answer(cmd.counter, 'applied', '', describe(cmd));
        return this.remember(signed, { ...answered, applied: true, followUp });
      });
      this.d.log.info({ counter: cmd.counter, command: kind }, 'command applied');
      return outcome;
    } catch (e) {
      if (!isAgentError(e) || e.area === 'storage' || e.code === 'COMMAND_REPLAYED') throw e;
      // A genuine command the terminal's state refuses still uses up its counter.
      const outcome = store.atomically(() => {
        this.claimCounter(cmd.counter);
        store.journal.appendEvent(
          'command-refused',
          { counter: cmd.counter, command: kind, code: e.code, reason: e.message },
          this.d.clock.now(),
        );
        const answered = this.answer(cmd.counter, 'refused', e.code, e.message);
        return this.remember(signed, { ...answered, applied: false, error: e });
      });
      this.d.log.warn(
        { counter: cmd.counter, command: kind, code: e.code },
        'command refused by state',
      );
      return outcome;
    }
  }

  /**
   * The acquirer delivers at least once (a push and a poll can cross): the very command
   * applied last, byte for byte, is answered again with its first result, not refused
   * as a replay. Any other old counter is a replay.
   */
  private redelivery(
    signed: pos.v1.ISignedCommand,
    cmd: pos.v1.Command,
  ): CommandOutcome | undefined {
    const last = this.d.store.state.getJson<LastCommand>(META_LAST_COMMAND);
    if (!last || last.counter !== cmd.counter || last.digest !== commandDigest(signed))
      return undefined;
    this.d.log.info(
      { counter: cmd.counter },
      'command delivered again; answered with its first result',
    );
    const result = {
      body: Buffer.from(last.body, 'base64'),
      signature: Buffer.from(last.signature, 'base64'),
    };
    return { result, body: decodeCommandResultBody(result.body), applied: false };
  }

  private remember(signed: pos.v1.ISignedCommand, outcome: CommandOutcome): CommandOutcome {
    const last: LastCommand = {
      counter: Number(outcome.body.counter),
      digest: commandDigest(signed),
      body: Buffer.from(outcome.result.body ?? []).toString('base64'),
      signature: Buffer.from(outcome.result.signature ?? []).toString('base64'),
    };
    this.d.store.state.setJson(META_LAST_COMMAND, last);
    return outcome;
  }

  private claimCounter(counter: number): void {
    const last = this.lastCounter();
    if (counter <= last)
      throw new AgentError('COMMAND_REPLAYED', `counter ${counter} is not above ${last}`);
    this.d.store.state.setMeta(META_COMMAND_COUNTER, String(counter));
  }

  private effect(cmd: pos.v1.Command, source: string): FollowUp {
    const { terminal, store, clock } = this.d;
    switch (cmd.body) {
      case 'lock':
        terminal.apply(
          { type: 'lock', source: 'remote', by: 'acquirer' },
          cmd.lock!.reason || 'locked by the acquirer',
          source,
        );
        return undefined;
      case 'unlock': {
        const s = cmd.unlock!.source || 'remote';
        if (!isLockSource(s))
          throw new AgentError('COMMAND_MALFORMED', `unknown lock source ${s.slice(0, 20)}`);
        terminal.apply(
          { type: 'unlock', source: s, by: 'acquirer' },
          cmd.unlock!.reason || `unlocked ${s} by the acquirer`,
          source,
        );
        return undefined;
      }
      case 'deactivate': {
        const reason = cmd.deactivate!.reason ?? '';
        if (!hasDeactivationReason(reason))
          throw new AgentError('COMMAND_MALFORMED', 'a deactivate command needs a reason');
        if (cmd.deactivate!.violation) {
          terminal.apply({ type: 'deactivate-for-violation' }, reason, source);
          return 'finalize-deactivation';
        }
        terminal.apply({ type: 'request-deactivation', by: 'acquirer' }, reason, source);
        return undefined;
      }
      case 'riskFlag':
        return this.riskFlag(cmd.riskFlag!, source);
      case 'deactivationDecision':
        return this.deactivationDecision(cmd.deactivationDecision!, source);
      case 'feeSchedule': {
        if (terminal.status().state === 'deactivated')
          throw new AgentError('LIFECYCLE_DEACTIVATED');
        const spec = cmd.feeSchedule!.schedule;
        const schedule = feeScheduleFromWire(spec);
        installFeeSchedule({ store, clock }, schedule);
        return undefined;
      }
      case 'settleNow':
        return 'settle-now';
      case 'status':
        return undefined;
      case 'rotateKey':
        this.pinKey(cmd.rotateKey!.newPublicKey ?? new Uint8Array());
        store.journal.appendEvent(
          'command-key-rotated',
          { key: Buffer.from(cmd.rotateKey!.newPublicKey ?? []).toString('base64') },
          clock.now(),
        );
        return undefined;
      default:
        throw new AgentError('COMMAND_UNKNOWN');
    }
  }

  /** Journals the acquirer's risk flag; a severe one locks the terminal. */
  private riskFlag(f: pos.v1.IRiskFlagCmd, source: string): FollowUp {
    const { terminal, store, clock } = this.d;
    store.journal.appendEvent(
      'risk-flag',
      { code: f.code, severity: f.severity, reason: f.reason },
      clock.now(),
    );
    if ((f.severity ?? 0) >= this.d.config.risk.lockSeverity) {
      terminal.apply(
        { type: 'lock', source: 'risk', by: 'acquirer' },
        `risk flag ${f.code}: ${f.reason}`,
        source,
      );
    }
    return undefined;
  }

  /** The acquirer's review of a deactivation request; an approval starts the final settlement. */
  private deactivationDecision(dd: pos.v1.IDeactivationDecisionCmd, source: string): FollowUp {
    const { terminal } = this.d;
    if (dd.approve) {
      if (!hasDeactivationReason(dd.reason ?? ''))
        throw new AgentError('COMMAND_MALFORMED', 'an approved deactivation needs a reason');
      terminal.apply({ type: 'deactivation-approved' }, dd.reason ?? '', source);
      return 'finalize-deactivation';
    }
    terminal.apply(
      { type: 'deactivation-rejected' },
      `deactivation rejected: ${dd.reason || 'no reason given'}`,
      source,
    );
    return undefined;
  }

  /** A result signed by the terminal's own key, carrying where the terminal now stands. */
  answer(
    counter: number,
    outcome: 'applied' | 'refused',
    code: ErrorCode | '',
    detail: string,
  ): { result: pos.v1.ICommandResult; body: pos.v1.ICommandResultBody } {
    const status = this.d.terminal.status();
    const body: pos.v1.ICommandResultBody = {
      terminalId: this.d.config.terminalId,
      counter,
      outcome,
      errorCode: code,
      detail: detail.slice(0, 200),
      lifecycleState: status.state,
      locks: status.locks,
      journalHeadHash: this.d.store.journal.headOf().hash,
      atMs: this.d.clock.now(),
    };
    const bytes = encodeCommandResultBody(body);
    const key = this.d.terminalKey();
    return {
      body,
      result: { body: bytes, signature: key ? signEd25519(key, bytes) : new Uint8Array() },
    };
  }
}

function describe(cmd: pos.v1.Command): string {
  switch (cmd.body) {
    case 'lock':
      return `lock: ${cmd.lock!.reason}`;
    case 'unlock':
      return `unlock ${cmd.unlock!.source}`;
    case 'deactivate':
      return `deactivate${cmd.deactivate!.violation ? ' (violation)' : ''}: ${cmd.deactivate!.reason}`;
    case 'riskFlag':
      return `risk flag ${cmd.riskFlag!.code} severity ${cmd.riskFlag!.severity}`;
    case 'deactivationDecision':
      return `deactivation ${cmd.deactivationDecision!.approve ? 'approved' : 'rejected'}: ${cmd.deactivationDecision!.reason}`;
    case 'feeSchedule':
      return `fee schedule ${cmd.feeSchedule!.schedule?.version}`;
    default:
      return String(cmd.body);
  }
}
