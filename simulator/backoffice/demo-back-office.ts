/**
 * The back office as `npm start` runs it: beside the embedded acquirer simulator, with one
 * merchant account owning the demo terminal and one reviewer account. The passwords are demo
 * passwords, printed on purpose; a real deployment has no such accounts.
 */
import type { AcquirerSimulator } from '../acquirer.ts';
import { startBackOffice, type BackOffice } from './server.ts';

const DEMO_MERCHANT = { username: 'merchant', password: 'merchant-demo' };
const DEMO_REVIEWER = { username: 'reviewer', password: 'reviewer-demo' };

/** Starts the demo back office; returns it and the lines to show the person at the terminal. */
export async function startDemoBackOffice(
  sim: AcquirerSimulator,
  terminalId: string,
  port = Number(process.env.POS_BACKOFFICE_PORT ?? 0),
): Promise<{ backOffice: BackOffice; lines: string[] }> {
  const t = sim.ledger.terminal(terminalId);
  const backOffice = await startBackOffice({ sim, port });
  backOffice.store.setModel(terminalId, 'Lakala', 'A8');
  await backOffice.addUser({
    ...DEMO_MERCHANT,
    role: 'merchant',
    merchantId: t?.merchantId ?? `M-${terminalId}`,
    displayName: t?.merchantName ?? 'Demo merchant',
  });
  await backOffice.addUser({
    ...DEMO_REVIEWER,
    role: 'reviewer',
    merchantId: null,
    displayName: 'Acquirer reviewer',
  });
  return {
    backOffice,
    lines: [
      `back office: ${backOffice.url}  (merchant: ${DEMO_MERCHANT.username} / ${DEMO_MERCHANT.password}; reviewer: ${DEMO_REVIEWER.username} / ${DEMO_REVIEWER.password})`,
    ],
  };
}
