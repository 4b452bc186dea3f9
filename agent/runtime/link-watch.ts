import type { AcquirerChannel } from '../../protocol/channel.ts';
import type { Store } from '../../storage/store.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import { ClockTrust } from '../policy/clock-trust.ts';
import { SecurityEvents } from '../policy/security-events.ts';
import { recordEvent } from '../policy/terminal-state.ts';
import type { Config } from '../config.ts';

/**
 * What the agent learns from the link itself, journaled: whether the acquirer's clock may be
 * trusted for command times (each change of verdict is a row), and link-level refusals (bad
 * frames, envelopes for another terminal, messages before HelloAck, refused TLS handshakes) as
 * rate-limited security events.
 */
export function watchLink(
  channel: AcquirerChannel,
  d: { store: Store; clock: Clock; log: Logger; config: Pick<Config, 'commands'> },
): { clockTrust: ClockTrust; security: SecurityEvents } {
  const { maxClockOffsetMs, maxClockStepMs, maxClockDriftMs } = d.config.commands;
  const clockTrust = new ClockTrust({
    maxOffsetMs: maxClockOffsetMs,
    maxStepMs: maxClockStepMs,
    maxDriftMs: maxClockDriftMs,
  });
  const security = new SecurityEvents(d);
  let everUntrusted = false;
  channel.on('clock-sample', (sample) => {
    const v = clockTrust.observe(sample);
    if (!v.changed || (v.trusted && !everUntrusted)) return;
    everUntrusted ||= !v.trusted;
    recordEvent(
      d.store,
      d.clock,
      d.log,
      v.trusted ? 'acquirer-clock-trusted' : 'acquirer-clock-untrusted',
      { offsetMs: v.offsetMs, reason: v.reason ?? '', reading: sample.kind },
    );
  });
  channel.on('protocol-error', (err) => {
    security.record('link-refused', err, { kind: err.context.kind ?? null });
  });
  channel.on('link-failed', (reason) => {
    if (reason.code === 'PROTOCOL_TLS') {
      security.record('link-tls-refused', reason, {
        socketError: reason.context.socketError ?? null,
      });
    }
  });
  return { clockTrust, security };
}
