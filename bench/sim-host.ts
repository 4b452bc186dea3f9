/**
 * The parent side of bench/sim-child.ts: starts the acquirer simulator in its own process and
 * talks to it over IPC. The simulator gets a fresh ledger per start (so a copied journal's batch
 * ids were never seen) and the bench's cached TLS material (made once).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setPriority } from 'node:os';
import path from 'node:path';
import type { CommandBody } from '../simulator/acquirer.ts';
import type { BehaviourPatch } from '../simulator/behaviour.ts';
import type { SettlementRecord } from '../simulator/ledger.ts';
import { decodeSignedCommand, type pos } from '../protocol/messages.ts';
import type { SimRequest } from './sim-child.ts';
import { Agent, type AgentOptions } from '../agent/runtime/agent.ts';
import type { Config } from '../agent/config.ts';
import {
  acquirerSection,
  BENCH_TERMINAL,
  benchConfig,
  ensureBenchTls,
  tempDir,
} from './fixtures.ts';

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

const SHM = '/dev/shm';

export class SimHost {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private constructor(
    private readonly child: ChildProcess,
    /** The simulator's TLS directory (CA, server and client certificates). */
    readonly tlsDir: string,
  ) {
    child.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.ok) p?.resolve(m.result);
      else p?.reject(new Error(`simulator: ${m.error}`));
    });
    child.on('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`simulator exited (${code})`));
      this.pending.clear();
    });
  }

  port = 0;

  /**
   * A simulator that knows the bench terminal under `activationCode`, or (fleet) the given
   * terminal ids, each with a client certificate made once in the bench's TLS directory.
   */
  static async start(
    activationCode: string | { terminals: string[] } = 'BENCHCODE1',
    opts: { elsewhere?: boolean } = {},
  ): Promise<SimHost> {
    const terminals =
      typeof activationCode === 'string'
        ? [{ terminalId: BENCH_TERMINAL, activationCode }]
        : activationCode.terminals.map((terminalId) => ({
            terminalId,
            activationCode: `CODE-${terminalId}`,
          }));
    const tlsDir = ensureBenchTls();
    const child = fork(path.join(import.meta.dirname, 'sim-child.ts'), [], {
      // BENCH_SIM_NODE_ARGS: extra node flags for the simulator's process, e.g. "--cpu-prof
      // --cpu-prof-dir=DIR" (not allowed in NODE_OPTIONS) to profile its side of a figure.
      execArgv: [
        '--import',
        'tsx',
        ...(process.env.BENCH_SIM_NODE_ARGS ?? '').split(' ').filter(Boolean),
      ],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    // `elsewhere`: a real acquirer runs on another machine, with its own disk and CPU. Where a
    // figure is the agent's responsiveness, not the round trip, the simulator keeps its ledger
    // off the agent's disk (20 MB of detail stored next to the journal held up the agent's own
    // fsyncs) and runs at the lowest CPU priority (its decoding of a fast upload took the core
    // the agent's event loop needed), so what is measured is what a terminal would see.
    if (opts.elsewhere) setPriority(child.pid!, 19);
    const host = new SimHost(child, tlsDir);
    const { port } = await host.request<{ port: number }>({
      op: 'start',
      dataDir: tempDir('acquirer', opts.elsewhere && existsSync(SHM) ? SHM : undefined),
      tlsDir,
      terminals,
    });
    host.port = port;
    return host;
  }

  private request<T>(req: SimRequest): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, ...req });
    });
  }

  behave(patch: BehaviourPatch): Promise<void> {
    return this.request({ op: 'behave', patch });
  }

  /** Issues a signed command, pushed on the live link; `sentNs` is when its frame left. */
  async issue(body: CommandBody): Promise<{ counter: number; pushed: boolean; sentNs: bigint }> {
    const r = await this.request<{ counter: number; pushed: boolean; sentNs: string }>({
      op: 'issue',
      terminalId: BENCH_TERMINAL,
      body,
    });
    return { ...r, sentNs: BigInt(r.sentNs) };
  }

  /** A genuine signed command (next counter), not queued or sent: for direct injection. */
  async craft(body: CommandBody): Promise<{ counter: number; signed: pos.v1.SignedCommand }> {
    const r = await this.request<{ counter: number; signed: string }>({
      op: 'craft',
      terminalId: BENCH_TERMINAL,
      body,
    });
    return { counter: r.counter, signed: decodeSignedCommand(Buffer.from(r.signed, 'base64')) };
  }

  /** The raw 32-byte command key, as an activation grant would carry it. */
  async commandPublicKey(): Promise<Buffer> {
    return Buffer.from(await this.request<string>({ op: 'publicKey' }), 'base64');
  }

  /** CPU milliseconds the simulator's process has used so far. */
  cpuMs(): Promise<number> {
    return this.request({ op: 'cpu' });
  }

  /** Terminals whose batch is not settled exactly once with this digest (empty when all are). */
  fleetCheck(
    batches: Array<{ terminalId: string; batchId: string; digest: string }>,
  ): Promise<{ wrong: string[] }> {
    return this.request({ op: 'fleetCheck', batches });
  }

  settlement(batchId: string): Promise<SettlementRecord | null> {
    return this.request({ op: 'settlement', terminalId: BENCH_TERMINAL, batchId });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    await this.request({ op: 'stop' }).catch(() => {});
    this.child.disconnect();
    await exited;
  }
}

/** The bench terminal's config against a simulator; `extra` sections replace defaults. */
export function benchAgentConfig(
  dataDir: string,
  sim: SimHost,
  extra: Record<string, unknown> = {},
): Config {
  return benchConfig(dataDir, { acquirer: acquirerSection(sim.tlsDir, sim.port), ...extra });
}

/**
 * The full agent on `dataDir` against a simulator, link up and the contact job on connect
 * (risk reports, command poll, queued batches) finished, with no cron schedules.
 */
export async function startBenchAgent(
  config: Config,
  opts: { faultHook?: AgentOptions['faultHook'] } = {},
): Promise<Agent> {
  const agent = new Agent({ config, schedules: false, faultHook: opts.faultHook });
  await agent.start();
  await agent.channel.waitUntilUp(15_000);
  await agent.runner.idle();
  return agent;
}
