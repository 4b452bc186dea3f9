/**
 * The acquirer simulator in a process of its own, driven over IPC by bench/sim-host.ts. A real
 * acquirer is another machine: in the agent's process its ledger commits and TLS work would
 * stall the agent's event loop and be charged to the agent's figures.
 *
 * Requests are `{ id, op, ...args }`; every one is answered `{ id, ok, result | error }`.
 */
import { AcquirerSimulator, type CommandBody } from '../simulator/acquirer.ts';
import type { TerminalLinks } from '../simulator/terminal-links.ts';
import type { BehaviourPatch } from '../simulator/behaviour.ts';
import type { SimTerminal } from '../simulator/acquirer-options.ts';
import { encodeSignedCommand } from '../protocol/messages.ts';

export type SimRequest =
  | { op: 'start'; dataDir: string; tlsDir: string; terminals: SimTerminal[] }
  | { op: 'behave'; patch: BehaviourPatch }
  | { op: 'issue'; terminalId: string; body: CommandBody }
  | { op: 'craft'; terminalId: string; body: CommandBody }
  | { op: 'settlement'; terminalId: string; batchId: string }
  | { op: 'publicKey' }
  | { op: 'cpu' }
  | { op: 'fleetCheck'; batches: Array<{ terminalId: string; batchId: string; digest: string }> }
  | { op: 'stop' };

let sim: AcquirerSimulator | undefined;
/** When the last command frame was handed to the link, on the machine-wide monotonic clock. */
let commandSentNs = 0n;
const stamped = new WeakSet<object>();

/**
 * Bench-only instrumentation: the simulator keeps its links private, so the live link's send is
 * wrapped to stamp the instant a command frame leaves (after the simulator's own ledger commit,
 * which a remote acquirer pays before sending too, and which is not the agent's latency).
 */
function stampCommandSends(s: AcquirerSimulator, terminalId: string): void {
  const conn = (s as unknown as { links: TerminalLinks }).links.live(terminalId);
  if (!conn || stamped.has(conn)) return;
  stamped.add(conn);
  const send = conn.send.bind(conn);
  conn.send = (msg) => {
    if (msg.command) commandSentNs = process.hrtime.bigint();
    return send(msg);
  };
}

function need(): AcquirerSimulator {
  if (!sim) throw new Error('the simulator is not started');
  return sim;
}

async function handle(req: SimRequest): Promise<unknown> {
  switch (req.op) {
    case 'start':
      sim = await AcquirerSimulator.start({
        dataDir: req.dataDir,
        tlsDir: req.tlsDir,
        terminals: req.terminals,
      });
      return { port: sim.port };
    case 'behave':
      need().behave(req.patch);
      return null;
    case 'issue': {
      const s = need();
      stampCommandSends(s, req.terminalId);
      commandSentNs = 0n;
      const c = s.issueCommand(req.terminalId, req.body);
      return { counter: c.counter, pushed: c.pushed, sentNs: commandSentNs.toString() };
    }
    case 'craft': {
      const parts = need().rawSignedCommand(req.terminalId, req.body);
      return {
        counter: Number(parts.command.counter),
        signed: Buffer.from(encodeSignedCommand(parts.signed)).toString('base64'),
      };
    }
    case 'publicKey':
      return need().commandPublicKeyRaw.toString('base64');
    case 'settlement':
      return need().ledger.settlement(req.terminalId, req.batchId) ?? null;
    case 'cpu': {
      const c = process.cpuUsage();
      return (c.user + c.system) / 1000;
    }
    case 'fleetCheck': {
      const ledger = need().ledger;
      const wrong = req.batches
        .filter(
          (b) =>
            ledger.settlementCount(b.terminalId, b.batchId) !== 1 ||
            ledger.settlement(b.terminalId, b.batchId)?.digest !== b.digest ||
            ledger.settledBatches(b.terminalId).length !== 1,
        )
        .map((b) => b.terminalId);
      return { wrong };
    }
    case 'stop':
      await sim?.stop();
      sim = undefined;
      return null;
  }
}

process.on('message', (msg: { id: number } & SimRequest) => {
  handle(msg).then(
    (result) => process.send!({ id: msg.id, ok: true, result }),
    (e: unknown) =>
      process.send!({ id: msg.id, ok: false, error: (e as Error).stack ?? String(e) }),
  );
});
process.on('disconnect', () => void sim?.stop().finally(() => process.exit(0)));
