/**
 * What terminals say about themselves, as the acquirer hears it: every message is a contact;
 * Hello and Heartbeat carry the lifecycle state (a heartbeat also the locks and the open batch),
 * and a command result carries state and locks under the terminal's own signature, believed only
 * when that signature verifies under the key pinned at activation.
 */
import { decodeCommandResultBody, type pos } from '../../protocol/messages.ts';
import type { AcquirerSimulator } from '../acquirer.ts';
import { ed25519FromRaw, verifySignature } from '../command-signer.ts';
import type { BackOfficeStore, TerminalReport } from './store.ts';

type Report = Partial<TerminalReport> & { terminalId: string; lastContact: number };

/** The report one envelope makes, or just the contact. */
function reportOf(
  sim: AcquirerSimulator,
  terminalId: string,
  env: pos.v1.Envelope,
  now: number,
): Report {
  const base: Report = { terminalId, lastContact: now };
  if (env.body === 'hello' && env.hello?.lifecycleState) {
    return { ...base, lifecycleState: env.hello.lifecycleState, reportedAt: now };
  }
  if (env.body === 'heartbeat' && env.heartbeat)
    return { ...base, ...heartbeatReport(env.heartbeat, now) };
  if (env.body === 'commandResult' && env.commandResult) {
    const bytes = Buffer.from(env.commandResult.body ?? []);
    const key = ed25519FromRaw(sim.ledger.terminal(terminalId)?.publicKey);
    if (!key || !verifySignature(key, bytes, Buffer.from(env.commandResult.signature ?? [])))
      return base;
    let body: pos.v1.CommandResultBody;
    try {
      body = decodeCommandResultBody(bytes);
    } catch {
      return base;
    }
    if (body.terminalId !== terminalId || !body.lifecycleState) return base;
    return {
      ...base,
      lifecycleState: body.lifecycleState,
      locks: [...body.locks],
      reportedAt: now,
    };
  }
  return base;
}

function heartbeatReport(h: pos.v1.IHeartbeat, now: number): Partial<TerminalReport> {
  const r: Partial<TerminalReport> = { reportedAt: now };
  if (h.lifecycleState) r.lifecycleState = h.lifecycleState;
  if (typeof h.queuedBatches === 'number') r.queuedBatches = h.queuedBatches;
  // An older agent sends neither locks nor the open batch: the last known values stay.
  if (h.locks && (h.locks.length || h.openBatch)) r.locks = [...h.locks];
  if (h.openBatch) {
    r.openCount = Number(h.openBatch.transactionCount ?? 0);
    r.openAmount = Number(h.openBatch.netAmount ?? 0);
    r.openFee = Number(h.openBatch.netFee ?? 0);
  }
  return r;
}

/** Records every message a terminal sends; returns a function that stops listening. */
export function watchTerminals(sim: AcquirerSimulator, store: BackOfficeStore): () => void {
  const onReceived = (terminalId: string, env: pos.v1.Envelope): void => {
    if (!sim.running || !sim.ledger.terminal(terminalId)) return;
    store.report(reportOf(sim, terminalId, env, sim.now()));
  };
  sim.on('received', onReceived);
  return () => sim.off('received', onReceived);
}
