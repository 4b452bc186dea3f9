import type { Core } from './core.ts';

/**
 * Sets the maintenance lock (software upgrade) without cutting an authorisation short:
 * new transactions are refused at once, the ones in flight get a bounded time to
 * finish normally, then the lock is set.
 */
export async function enterMaintenance(
  core: Core,
  drainTimeoutMs: number,
  by: string,
): Promise<{ drained: boolean }> {
  const { payments, terminal, clock } = core;
  const deadline = clock.now() + drainTimeoutMs;
  payments.beginDrain();
  try {
    while (payments.authorisationsInFlight > 0 && clock.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const drained = payments.authorisationsInFlight === 0;
    terminal.applyOrRecord(
      { type: 'lock', source: 'maintenance', by: 'technician' },
      drained ? 'maintenance' : 'maintenance; an authorisation in flight did not finish in time',
      by,
    );
    return { drained };
  } finally {
    payments.endDrain();
  }
}
