import type { KeyObject } from 'node:crypto';
import { AgentError } from '../../base/errors.ts';
import { verifyEd25519 } from './keys.ts';
import type { FeeSchedule } from './fees.ts';

/**
 * The acquirer's grant for a new journal incarnation (docs/recovery.md). A rolled-back or
 * broken journal is never repaired or deleted in place; a technician moves it aside for
 * forensics and starts a new journal, and only with this grant: the acquirer signs, with its
 * command key (the one the terminal pinned at activation), what it knows of the terminal (the
 * batches it settled, the last journal head the terminal reported, the identity and tariff it
 * activated it with, its last command counter), for one terminal and until an expiry.
 *
 * The grant travels as a small JSON file: `{"grant": base64url(body), "signature": base64url}`,
 * body being the canonical JSON below, so the signature covers the exact bytes.
 */

interface SettledBatchFact {
  batchId: string;
  digest: string;
  settlementId: string;
  transactionCount: number;
  netAmount: number;
}

export interface RecoveryGrantBody {
  kind: 'journal-recovery';
  terminalId: string;
  issuedAtMs: number;
  expiresAtMs: number;
  identity: {
    merchantId: string;
    merchantName: string;
    category: string;
    currency: string;
  };
  feeSchedule: FeeSchedule;
  /** The acquirer's last issued command counter: the new journal never accepts one at or below it. */
  lastCommandCounter: number;
  /** The journal head the terminal last reported (remote witness), if any. */
  lastReportedHead: { seq: number; hash: string } | null;
  settled: SettledBatchFact[];
}

export interface RecoveryGrantFile {
  grant: string;
  signature: string;
}

export function encodeRecoveryGrant(body: RecoveryGrantBody): Buffer {
  return Buffer.from(JSON.stringify(body), 'utf8');
}

/** The file a technician carries, from the body and the acquirer's signature over its bytes. */
export function recoveryGrantFile(bytes: Uint8Array, signature: Uint8Array): RecoveryGrantFile {
  return {
    grant: Buffer.from(bytes).toString('base64url'),
    signature: Buffer.from(signature).toString('base64url'),
  };
}

/**
 * Checks a grant file against the pinned acquirer key, this terminal and the clock.
 * @throws AgentError UNLOCK_CODE_INVALID in plain words.
 */
export function verifyRecoveryGrant(
  text: string,
  o: { key: KeyObject; terminalId: string | undefined; now: number },
): RecoveryGrantBody {
  const bad = (why: string) => new AgentError('UNLOCK_CODE_INVALID', `the recovery grant ${why}`);
  let file: RecoveryGrantFile;
  try {
    file = JSON.parse(text) as RecoveryGrantFile;
  } catch {
    throw bad('is not a grant file (JSON with grant and signature)');
  }
  if (typeof file.grant !== 'string' || typeof file.signature !== 'string')
    throw bad('is not a grant file (JSON with grant and signature)');
  const bytes = Buffer.from(file.grant, 'base64url');
  if (!verifyEd25519(o.key, bytes, Buffer.from(file.signature, 'base64url')))
    throw bad('is not signed by the acquirer this terminal pinned');
  const body = JSON.parse(bytes.toString('utf8')) as RecoveryGrantBody;
  if (body.kind !== 'journal-recovery') throw bad('is not a journal recovery grant');
  if (o.terminalId !== undefined && body.terminalId !== o.terminalId)
    throw bad(`is for terminal ${body.terminalId}, not ${o.terminalId}`);
  if (!(body.expiresAtMs > o.now))
    throw bad(`expired at ${new Date(body.expiresAtMs).toISOString()}`);
  return body;
}
