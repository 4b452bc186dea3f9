import { AgentError } from '../../base/errors.ts';
import type { AcquirerChannel } from '../../protocol/channel.ts';
import type { Settlement, SettleReport } from '../policy/settlement.ts';
import type { Core } from './core.ts';

/**
 * Settles queued batches in order. Each step is its own job on the serial runner, so
 * commands and ticks queued meanwhile wait one round trip at most, not a whole backlog.
 * A frozen journal or a link that is down settles nothing and says why.
 */
export async function settleQueued(
  core: Core,
  channel: AcquirerChannel,
  settlement: Settlement,
): Promise<SettleReport> {
  const frozen = core.store.frozen;
  if (frozen) {
    // A journal behind what was acknowledged or settled must not settle anything: its
    // batches may be reborn copies of settled ones.
    const pending = core.store.batches.unsettled().map((b) => b.batchId);
    return { settled: [], pending, error: new AgentError('STORAGE_FROZEN', frozen.reason) };
  }
  if (!channel.isUp) {
    const pending = core.store.batches.unsettled().map((b) => b.batchId);
    return {
      settled: [],
      pending,
      error: new AgentError(
        'PROTOCOL_DISCONNECTED',
        'the acquirer is unreachable; batches stay queued',
      ),
    };
  }
  return settlement.settleAll();
}
