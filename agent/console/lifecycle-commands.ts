import { AgentError } from '../../base/errors.ts';
import { table } from './table.ts';
import { techSource, type TerminalCommand } from './terminal-env.ts';

/**
 * Commands that change the terminal: settle, selftest, activate, deactivate, locks and
 * the offline unlock code. Each is a thin call into the agent; policy (who may unlock
 * what, what a deactivated terminal may do) stays in the lifecycle table and the agent,
 * so the console cannot bypass it.
 */

export const settleCommand: TerminalCommand = ({ agent }) => ({
  name: 'settle',
  summary: 'cut over now and settle every queued batch',
  usage: 'settle',
  maxArgs: 0,
  run: async (ctx) => {
    ctx.print('cutting over and settling...');
    const r = await agent.settleNow(`settle from console by ${ctx.technician}`);
    const lines = [
      r.closed
        ? `closed batch ${r.closed}`
        : agent.settlement.deferred
          ? 'the open batch waits for the answers to its offline advices (see: advices)'
          : 'nothing new to close',
      `settled: ${r.settled.length ? r.settled.join(', ') : 'none'}`,
    ];
    if (r.pending.length) lines.push(`still queued: ${r.pending.join(', ')}`);
    if (r.error) lines.push(r.error.toDisplay('paused'));
    return lines.join('\n');
  },
});

export const selftestCommand: TerminalCommand = ({ agent }) => ({
  name: 'selftest',
  summary: 'journal pages, chain, disk and clock; a failure sets the hardware-fault lock',
  usage: 'selftest [--json]',
  readOnly: true,
  maxArgs: 0,
  run: async (ctx) => {
    const r = await agent.runSelfTest(true);
    if (ctx.json) return { ...r };
    return table(
      ['check', 'result', 'detail'],
      r.checks.map((c) => [c.name, c.ok ? 'ok' : 'FAILED', c.detail]),
    );
  },
});

export const activateCommand: TerminalCommand = ({ agent }) => ({
  name: 'activate',
  summary: 'activate the terminal with the code from the acquirer',
  usage: 'activate CODE',
  secretArgs: true,
  minArgs: 1,
  maxArgs: 1,
  run: async (ctx) => {
    await agent.activate(ctx.args[0]!, techSource(ctx));
    return `activated: ${agent.status().merchant}`;
  },
});

export const deactivateCommand: TerminalCommand = ({ agent }) => ({
  name: 'deactivate',
  summary: 'ask the acquirer to deactivate this terminal (stops transactions now)',
  usage: 'deactivate REASON...',
  help: "The terminal stops taking transactions at once and waits for the acquirer's review.\nApproved: a final settlement runs, then the terminal is deactivated for good.\nRejected: the terminal returns to active and status shows the reason.",
  minArgs: 1,
  run: async (ctx) => {
    await agent.requestDeactivation(ctx.args.join(' '), techSource(ctx));
    return 'deactivation requested; the terminal takes no transactions while the acquirer reviews it';
  },
});

export const unlockCodeCommand: TerminalCommand = ({ agent }) => ({
  name: 'unlock-code',
  summary: 'offline unlock of a risk lock: show a challenge, then enter the code',
  usage: 'unlock-code | unlock-code CHALLENGE CODE',
  secretArgs: true,
  maxArgs: 2,
  run: (ctx) => {
    if (ctx.args.length === 0) {
      const c = agent.unlockCodes.challenge('risk');
      return `challenge: ${c.challenge}\nread it to the acquirer; then type: unlock-code ${c.challenge} <code>\nvalid until ${new Date(c.expiresAt).toISOString()}`;
    }
    if (ctx.args.length !== 2)
      throw new AgentError('CONSOLE_BAD_ARGUMENTS', 'give the challenge and the code');
    agent.unlockCodes.redeem(ctx.args[0]!, ctx.args[1]!, techSource(ctx));
    return 'risk lock cleared';
  },
});

export const lockCommand: TerminalCommand = ({ agent }) => ({
  name: 'lock',
  summary: 'set the technician lock (or maintenance)',
  usage: 'lock [technician|maintenance]',
  maxArgs: 1,
  run: async (ctx) => {
    const source = ctx.args[0] ?? 'technician';
    if (source !== 'technician' && source !== 'maintenance')
      throw new AgentError(
        'CONSOLE_BAD_ARGUMENTS',
        'a technician may set only the technician or maintenance lock',
      );
    if (agent.core.terminal.status().locks.includes(source))
      return `the ${source} lock is already set; nothing changed`;
    if (source === 'maintenance') {
      const r = await agent.enterMaintenance(techSource(ctx));
      return r.drained
        ? 'maintenance lock set'
        : 'maintenance lock set; an authorisation in flight did not finish in time';
    }
    agent.core.terminal.applyOrRecord(
      { type: 'lock', source: 'technician', by: 'technician' },
      `locked from the console by ${ctx.technician}`,
      techSource(ctx),
    );
    return 'technician lock set';
  },
});

const technicianClears = ['technician', 'maintenance', 'hardware-fault'];

export const unlockCommand: TerminalCommand = ({ agent }) => ({
  name: 'unlock',
  summary: 'clear the technician lock (or maintenance, hardware-fault)',
  usage: 'unlock [technician|maintenance|hardware-fault]',
  maxArgs: 1,
  run: (ctx) => {
    const source = ctx.args[0] ?? 'technician';
    if (![...technicianClears, 'risk', 'remote'].includes(source))
      throw new AgentError('CONSOLE_BAD_ARGUMENTS', `unknown lock source ${source}`);
    const held = agent.core.terminal.status().locks;
    // Say so rather than pretend: an unlock of a lock that is not there changes nothing.
    // (risk and remote go to the lifecycle, which refuses a technician and journals it.)
    if (technicianClears.includes(source) && !held.includes(source as never)) {
      return held.length
        ? `no ${source} lock is held (held: ${held.join(', ')}); nothing changed`
        : 'no lock is held; nothing changed';
    }
    agent.core.terminal.applyOrRecord(
      { type: 'unlock', source: source as 'technician', by: 'technician' },
      `unlocked ${source} from the console by ${ctx.technician}`,
      techSource(ctx),
    );
    return `${source} lock cleared`;
  },
});
