import type { AcquirerChannel } from '../../protocol/channel.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import { CommandProcessor } from '../policy/commands.ts';
import type { ClockTrust } from '../policy/clock-trust.ts';
import type { TerminalKeyFile } from '../policy/keys.ts';
import { RiskMonitor, type RiskHit } from '../policy/risk-monitor.ts';
import { SelfTest } from '../policy/selftest.ts';
import { UnlockCodes } from '../policy/unlock-code.ts';
import type { Core } from './core.ts';

/**
 * The agent's policy objects that act on the core alone: signed commands, unlock codes, the
 * self-test and the local risk rules, wired to the link's clock measurements and the
 * terminal's own signing key.
 */
export function policyParts(d: {
  core: Core;
  config: Config;
  clock: Clock;
  log: Logger;
  channel: AcquirerChannel;
  clockTrust: ClockTrust;
  terminalKeyFile: TerminalKeyFile;
  reportRisk: (hit: RiskHit) => void;
}): {
  commands: CommandProcessor;
  unlockCodes: UnlockCodes;
  selfTest: SelfTest;
  risk: RiskMonitor;
} {
  const { core, config, clock, log } = d;
  const { store, terminal } = core;
  const commands = new CommandProcessor({
    ...{ store, clock, log, config, terminal },
    clockOffsetMs: () => d.clockTrust.offsetForCommands(),
    terminalKey: () => d.terminalKeyFile.load(),
  });
  const unlockCodes = new UnlockCodes({
    ...{ store, clock, log, terminal, commands },
    terminalId: config.terminalId,
  });
  const selfTest = new SelfTest({
    ...{ store, clock, log, config, terminal },
    clockOffsetMs: () => d.channel.clockOffsetMs ?? null,
  });
  const risk = new RiskMonitor({ clock, log, config, terminal, report: d.reportRisk });
  return { commands, unlockCodes, selfTest, risk };
}
