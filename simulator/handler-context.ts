/**
 * The contract between the acquirer simulator's message handlers and the simulator: handlers
 * read and write the ledger and return what to answer (or to drop the link); acquirer.ts does
 * every socket write, so the exactly-once rules read apart from connection plumbing.
 */
import type { Logger } from '../base/log.ts';
import type { EnvelopeBody } from '../protocol/messages.ts';
import type { Behaviour } from './behaviour.ts';
import type { CommandSigner } from './command-signer.ts';
import type { AcquirerLedger, SettlementRecord, SubmissionRecord } from './ledger.ts';

/** What a handler asks the connection layer to do. */
export type HandlerResult =
  { kind: 'reply'; body: EnvelopeBody; then?: () => void } | { kind: 'drop' } | { kind: 'none' };

/** What handlers need from the simulator. */
export interface HandlerContext {
  readonly ledger: AcquirerLedger;
  readonly signer: CommandSigner;
  readonly behaviour: Behaviour;
  readonly acquirerId: string;
  readonly log: Logger;
  /** The acquirer's clock (real time plus the configured offset). */
  now(): number;
  /** Sends the terminal's pending commands after `afterCounter` on its polling link; returns how many. */
  deliverPending(terminalId: string, afterCounter: number): number;
  /** Records a review decision and sends it as a signed deactivation_decision command. */
  decideDeactivation(terminalId: string, approve: boolean, reason: string): void;
  issueRiskFlag(terminalId: string, code: string, severity: number, reason: string): void;
  submissionSeen(s: Omit<SubmissionRecord, 'id'>): void;
  settled(s: SettlementRecord): void;
}

/** A reply, with an optional follow-up run after it is sent (a decision after its ack). */
export function reply(body: EnvelopeBody, then?: () => void): HandlerResult {
  return { kind: 'reply', body, then };
}
