/**
 * Where the simulated acquirer issues signed commands: it numbers them (a monotonic counter per
 * terminal, kept in the ledger so a restart never reuses one), signs them, queues them in the
 * ledger and pushes them at once when the terminal is connected; the rest wait for the
 * terminal's next CommandPoll.
 */
import {
  decodeSignedCommand,
  encodeSignedCommand,
  newMessageId,
  type pos,
} from '../protocol/messages.ts';
import type { CommandSigner, RawCommandOptions, SignedCommandParts } from './command-signer.ts';
import type { AcquirerLedger } from './ledger.ts';
import type { TerminalLinks } from './terminal-links.ts';

/** The body of a Command: exactly one of its oneof members. */
export type CommandBody = Pick<
  pos.v1.ICommand,
  | 'lock'
  | 'unlock'
  | 'deactivate'
  | 'riskFlag'
  | 'deactivationDecision'
  | 'feeSchedule'
  | 'settleNow'
  | 'status'
  | 'rotateKey'
>;

/** Options of issueCommand and rawSignedCommand. */
export interface IssueOptions extends RawCommandOptions {
  /** Default 10 minutes. */
  expiresInMs?: number;
  /** Use this counter instead of the next one (replays, gaps); the next counter stays above it. */
  counter?: number;
  /** Put another terminal's id inside the signed command (the wrong-terminal case). */
  commandTerminalId?: string;
  issuedAtMs?: number;
}

/** A command as issued. */
export interface IssuedCommand extends SignedCommandParts {
  id: number;
  counter: number;
  /** True when it was pushed on a live link at once; otherwise it waits for a CommandPoll. */
  pushed: boolean;
}

const DEFAULT_COMMAND_TTL_MS = 10 * 60_000;
const HEADER_FIELDS = new Set(['terminalId', 'counter', 'issuedAtMs', 'expiresAtMs', 'nonce']);

/** Issues, queues and delivers signed commands. */
export class CommandDesk {
  constructor(
    private readonly ledger: AcquirerLedger,
    private readonly signer: CommandSigner,
    private readonly links: TerminalLinks,
    private readonly now: () => number,
  ) {}

  /** Crafts a signed command without queueing it. */
  craft(terminalId: string, body: CommandBody, options: IssueOptions = {}): SignedCommandParts {
    const issuedAtMs = options.issuedAtMs ?? this.now();
    let counter = options.counter;
    if (counter === undefined) counter = this.ledger.nextCounter(terminalId);
    else this.ledger.bumpCounter(terminalId, counter);
    return this.signer.command(
      {
        terminalId: options.commandTerminalId ?? terminalId,
        counter,
        issuedAtMs,
        expiresAtMs: issuedAtMs + (options.expiresInMs ?? DEFAULT_COMMAND_TTL_MS),
        ...body,
      },
      options,
    );
  }

  /** Queues a signed command (crafted or genuine) and pushes it if the terminal is connected. */
  deliver(terminalId: string, parts: SignedCommandParts): IssuedCommand {
    const signed = Buffer.from(encodeSignedCommand(parts.signed));
    const c = parts.command;
    const counter = Number(c.counter ?? 0);
    const messageId = newMessageId();
    const id = this.ledger.addCommand({
      terminalId,
      counter,
      kind: Object.keys(c).find((k) => !HEADER_FIELDS.has(k)) ?? 'none',
      signed,
      messageId,
      issuedAt: Number(c.issuedAtMs ?? this.now()),
      expiresAt: Number(c.expiresAtMs ?? this.now()),
    });
    const pushed = this.push(terminalId, { id, signed, messageId });
    return { ...parts, id, counter, pushed };
  }

  /** Sends the pending commands after `afterCounter` on the terminal's live link. */
  deliverPending(terminalId: string, afterCounter: number): number {
    let sent = 0;
    for (const c of this.ledger.pendingCommands(terminalId, afterCounter, this.now())) {
      if (this.push(terminalId, c)) sent += 1;
    }
    return sent;
  }

  /**
   * Writes one command envelope. Every delivery of a command reuses its message id, so the
   * result's correlation id always names the command it answers.
   */
  private push(terminalId: string, c: { id: number; signed: Buffer; messageId: string }): boolean {
    const conn = this.links.live(terminalId);
    if (!conn) return false;
    try {
      conn.send({
        messageId: c.messageId,
        terminalId,
        sentAtMs: this.now(),
        command: decodeSignedCommand(c.signed),
      });
    } catch {
      return false;
    }
    this.ledger.markDelivered(c.id, this.now());
    return true;
  }
}
