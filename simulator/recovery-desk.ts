import { DEFAULT_FEE_SCHEDULE } from '../agent/policy/fees.ts';
import {
  encodeRecoveryGrant,
  recoveryGrantFile,
  type RecoveryGrantBody,
} from '../agent/policy/recovery-grant.ts';
import type { AcquirerLedger } from './ledger.ts';
import type { CommandSigner } from './command-signer.ts';

/**
 * The acquirer's desk for a terminal whose journal was rolled back (docs/recovery.md): it
 * signs a grant for a new journal incarnation carrying what the acquirer knows of the
 * terminal: the batches it settled, the last journal head the terminal reported, the identity
 * and tariff it was activated with, and the last command counter issued to it.
 */
export function signRecoveryGrant(
  ledger: AcquirerLedger,
  signer: CommandSigner,
  o: {
    terminalId: string;
    now: number;
    ttlMs: number;
    lastReportedHead: RecoveryGrantBody['lastReportedHead'];
  },
): string {
  const t = ledger.terminal(o.terminalId);
  if (!t) throw new Error(`unknown terminal ${o.terminalId}`);
  const counter = ledger.db
    .prepare('SELECT last_counter AS c FROM command_counters WHERE terminal_id = ?')
    .get(o.terminalId) as { c: number } | undefined;
  const body: RecoveryGrantBody = {
    kind: 'journal-recovery',
    terminalId: o.terminalId,
    issuedAtMs: o.now,
    expiresAtMs: o.now + o.ttlMs,
    identity: {
      merchantId: t.merchantId,
      merchantName: t.merchantName,
      category: t.merchantCategory,
      currency: DEFAULT_FEE_SCHEDULE.currency,
    },
    feeSchedule: DEFAULT_FEE_SCHEDULE,
    lastCommandCounter: counter?.c ?? 0,
    lastReportedHead: o.lastReportedHead,
    settled: ledger.settledBatches(o.terminalId).map((s) => ({
      batchId: s.batchId,
      digest: s.digest,
      settlementId: s.settlementId,
      transactionCount: s.terminalTotals.transactionCount,
      netAmount: s.terminalTotals.netAmount,
    })),
  };
  const bytes = encodeRecoveryGrant(body);
  return JSON.stringify(recoveryGrantFile(bytes, signer.signBytes(bytes)));
}
