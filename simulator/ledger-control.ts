/**
 * The control half of the acquirer ledger: terminals and activation, signed commands and their
 * counters, command results, deactivation reviews and risk reports. AcquirerLedger (ledger.ts)
 * extends it with settlement, so tests see one flat ledger API.
 */
import type { Database } from '../storage/db.ts';
import {
  orNull,
  toCommand,
  type CommandRecord,
  type CommandResultRecord,
  type ReviewRecord,
  type RiskReportRecord,
  type Row,
  type TerminalRecord,
} from './ledger-schema.ts';

/** Terminals, commands, reviews and risk reports. Every write is one SQLite transaction. */
export class ControlLedger {
  protected constructor(
    readonly db: Database,
    readonly file: string,
  ) {}

  /** Runs fn in one IMMEDIATE transaction (nested calls join it). */
  atomically<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn).immediate();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // ---------------------------------------------------------------- terminals

  /** Registers a terminal; an existing one keeps its state (a restart must not reset a used code). */
  registerTerminal(
    t: Pick<
      TerminalRecord,
      'terminalId' | 'activationCode' | 'merchantId' | 'merchantName' | 'merchantCategory'
    >,
  ): void {
    this.db
      .prepare(
        `INSERT INTO terminals (terminal_id, activation_code, merchant_id, merchant_name, merchant_category)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (terminal_id) DO NOTHING`,
      )
      .run(t.terminalId, t.activationCode, t.merchantId, t.merchantName, t.merchantCategory);
  }

  terminal(terminalId: string): TerminalRecord | undefined {
    const r = this.db.prepare('SELECT * FROM terminals WHERE terminal_id = ?').get(terminalId) as
      Row | undefined;
    if (!r) return undefined;
    return {
      terminalId: String(r.terminal_id),
      activationCode: String(r.activation_code),
      codeUsed: r.code_used === 1,
      failedAttempts: Number(r.failed_attempts),
      merchantId: String(r.merchant_id),
      merchantName: String(r.merchant_name),
      merchantCategory: String(r.merchant_category),
      publicKey: (r.public_key as Buffer | null) ?? null,
      status: r.status as TerminalRecord['status'],
    };
  }

  /** Counts a wrong activation code; returns the failures so far. */
  activationFailed(terminalId: string): number {
    this.db
      .prepare('UPDATE terminals SET failed_attempts = failed_attempts + 1 WHERE terminal_id = ?')
      .run(terminalId);
    return this.terminal(terminalId)?.failedAttempts ?? 0;
  }

  /** Marks the code used and pins the terminal's result-signing key. */
  activated(terminalId: string, publicKey: Buffer, now: number): void {
    this.db
      .prepare(
        `UPDATE terminals SET code_used = 1, public_key = ?, status = 'active', activated_at = ? WHERE terminal_id = ?`,
      )
      .run(publicKey, now, terminalId);
  }

  setTerminalStatus(terminalId: string, status: TerminalRecord['status']): void {
    this.db
      .prepare('UPDATE terminals SET status = ? WHERE terminal_id = ?')
      .run(status, terminalId);
  }

  // ---------------------------------------------------------------- commands

  /** The next command counter for a terminal (persisted, so it stays monotonic across restarts). */
  nextCounter(terminalId: string): number {
    return this.atomically(() => {
      const r = this.db
        .prepare('SELECT last_counter AS c FROM command_counters WHERE terminal_id = ?')
        .get(terminalId) as { c: number } | undefined;
      const next = (r?.c ?? 0) + 1;
      this.bumpCounter(terminalId, next);
      return next;
    });
  }

  /** Raises the stored counter to at least `counter` (a test-chosen counter never lowers it). */
  bumpCounter(terminalId: string, counter: number): void {
    this.db
      .prepare(
        `INSERT INTO command_counters (terminal_id, last_counter) VALUES (@terminalId, @counter)
         ON CONFLICT DO UPDATE SET last_counter = MAX(last_counter, @counter)`,
      )
      .run({ terminalId, counter });
  }

  addCommand(c: Omit<CommandRecord, 'id' | 'deliveredAt' | 'deliveries'>): number {
    const res = this.db
      .prepare(
        'INSERT INTO commands (terminal_id, counter, kind, signed, message_id, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(c.terminalId, c.counter, c.kind, c.signed, c.messageId, c.issuedAt, c.expiresAt);
    return Number(res.lastInsertRowid);
  }

  markDelivered(id: number, now: number): void {
    this.db
      .prepare(
        'UPDATE commands SET delivered_at = COALESCE(delivered_at, ?), deliveries = deliveries + 1 WHERE id = ?',
      )
      .run(now, id);
  }

  /**
   * Commands to (re)send on a poll: counter above what the terminal says it applied, not yet
   * answered by a result, not expired. Oldest first, so counters arrive in order. A command
   * the terminal refused is answered too, so a forged one is not pushed again on every poll.
   */
  pendingCommands(terminalId: string, afterCounter: number, now: number): CommandRecord[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM commands c WHERE terminal_id = ? AND counter > ? AND expires_at > ?
           AND NOT EXISTS (SELECT 1 FROM command_results r WHERE r.command_id = c.id
             OR (r.terminal_id = c.terminal_id AND r.counter = c.counter AND r.verified = 1))
         ORDER BY counter, id`,
      )
      .all(terminalId, afterCounter, now) as Row[];
    return rows.map(toCommand);
  }

  /** The command sent under an envelope message id (a result's correlation id). */
  commandByMessageId(messageId: string): CommandRecord | undefined {
    const r = this.db.prepare('SELECT * FROM commands WHERE message_id = ?').get(messageId) as
      Row | undefined;
    return r && toCommand(r);
  }

  /** Every command issued to a terminal, oldest first. */
  commands(terminalId: string): CommandRecord[] {
    return (
      this.db
        .prepare('SELECT * FROM commands WHERE terminal_id = ? ORDER BY id')
        .all(terminalId) as Row[]
    ).map(toCommand);
  }

  /** Records a result; the same signed result delivered twice (a redelivery's answer) is kept once. */
  recordCommandResult(r: CommandResultRecord & { body: Buffer; signature: Buffer }): void {
    const seen = this.db
      .prepare(
        'SELECT 1 FROM command_results WHERE terminal_id = ? AND counter = ? AND body = ? AND signature = ?',
      )
      .get(r.terminalId, r.counter, r.body, r.signature);
    if (seen) return;
    this.db
      .prepare(
        `INSERT INTO command_results (terminal_id, command_id, counter, outcome, error_code, detail, verified, body, signature, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        r.terminalId,
        r.commandId,
        r.counter,
        r.outcome,
        r.errorCode,
        r.detail,
        r.verified ? 1 : 0,
        r.body,
        r.signature,
        r.receivedAt,
      );
  }

  commandResults(terminalId: string): CommandResultRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM command_results WHERE terminal_id = ? ORDER BY id')
      .all(terminalId) as Row[];
    return rows.map((r) => ({
      terminalId: String(r.terminal_id),
      commandId: orNull(r.command_id, Number),
      counter: Number(r.counter),
      outcome: String(r.outcome),
      errorCode: String(r.error_code),
      detail: String(r.detail),
      verified: r.verified === 1,
      receivedAt: Number(r.received_at),
    }));
  }

  // ---------------------------------------------------------------- deactivation and risk

  addReview(r: Omit<ReviewRecord, 'decision' | 'decisionReason'>): void {
    this.db
      .prepare(
        'INSERT INTO deactivation_reviews (review_id, terminal_id, reason, requested_by, requested_at) VALUES (?, ?, ?, ?, ?)',
      )
      .run(r.reviewId, r.terminalId, r.reason, r.requestedBy, r.requestedAt);
  }

  /** Decides the terminal's oldest undecided review; returns it, or undefined if none is open. */
  decideReview(
    terminalId: string,
    approve: boolean,
    reason: string,
    now: number,
  ): ReviewRecord | undefined {
    return this.atomically(() => {
      const open = this.reviews(terminalId).find((r) => r.decision === null);
      if (!open) return undefined;
      const decision = approve ? 'approved' : 'rejected';
      this.db
        .prepare(
          'UPDATE deactivation_reviews SET decision = ?, decision_reason = ?, decided_at = ? WHERE review_id = ?',
        )
        .run(decision, reason, now, open.reviewId);
      return { ...open, decision, decisionReason: reason };
    });
  }

  reviews(terminalId: string): ReviewRecord[] {
    const rows = this.db
      .prepare(
        'SELECT * FROM deactivation_reviews WHERE terminal_id = ? ORDER BY requested_at, rowid',
      )
      .all(terminalId) as Row[];
    return rows.map((r) => ({
      reviewId: String(r.review_id),
      terminalId: String(r.terminal_id),
      reason: String(r.reason),
      requestedBy: String(r.requested_by),
      requestedAt: Number(r.requested_at),
      decision: (r.decision as ReviewRecord['decision']) ?? null,
      decisionReason: orNull(r.decision_reason, String),
    }));
  }

  addRiskReport(r: RiskReportRecord): void {
    this.db
      .prepare(
        'INSERT INTO risk_reports (terminal_id, rule, detail, at_ms, received_at) VALUES (?, ?, ?, ?, ?)',
      )
      .run(r.terminalId, r.rule, r.detail, r.atMs, r.receivedAt);
  }

  riskReports(terminalId: string): RiskReportRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM risk_reports WHERE terminal_id = ? ORDER BY id')
      .all(terminalId) as Row[];
    return rows.map((r) => ({
      terminalId: String(r.terminal_id),
      rule: String(r.rule),
      detail: String(r.detail),
      atMs: Number(r.at_ms),
      receivedAt: Number(r.received_at),
    }));
  }
}
