/**
 * The conformance kit: plays a terminal against any acquirer host and checks, step by step,
 * what docs/protocol.md requires of the acquirer side. Every check yields one row of a pass/fail
 * table; a failed step never stops the later ones unless the link itself is gone.
 *
 * It uses the project's protocol code (protocol/) and the agent's own settlement and command
 * rules, and nothing of the simulator, so running it against the simulator proves the simulator
 * and running it against an acquirer's host proves that host, with the same code.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { TlsTarget } from '../../protocol/tls-connector.ts';
import { decodeActivationGrant } from '../../protocol/messages.ts';
import { publicKeyFromRaw, rawPublicKey, verifyEd25519 } from '../policy/keys.ts';
import { ConformanceLink } from './link.ts';
import { settlementChecks } from './settlement-checks.ts';
import { commandChecks } from './command-checks.ts';
import type { SyntheticBatch } from './batch.ts';

export interface CheckResult {
  check: string;
  /** true pass, false fail, null skipped */
  ok: boolean | null;
  detail: string;
}

export interface ConformanceOptions {
  target: TlsTarget;
  terminalId: string;
  /** Activates with this code to learn the command key; or give commandKey. */
  activationCode?: string;
  commandKey?: KeyObject;
  /** The terminal's Ed25519 signing key; made fresh when absent. */
  terminalKey?: KeyObject;
  timeoutMs: number;
  heartbeats: number;
  /** Commands the acquirer must have queued for the terminal (docs/protocol.md). */
  minCommands: number;
}

/** What the steps share. */
export interface KitContext {
  o: ConformanceOptions;
  link: ConformanceLink;
  rec: (check: string, ok: boolean | null, detail: string) => void;
  commandKey?: KeyObject;
  terminalKey: KeyObject;
  /** Acquirer clock minus ours, from the HelloAck. */
  offsetMs: number;
  /** What the settlement steps hand on to each other. */
  settle: { first?: SyntheticBatch; firstSettlement?: string; oob?: SyntheticBatch };
}

/** Bound on the acquirer clock the terminal applies by default (agent/config.ts). */
const MAX_OFFSET_MS = 600_000;

/** Runs every check; resolves with the table rows. Never throws. */
export async function runConformance(o: ConformanceOptions): Promise<CheckResult[]> {
  const rows: CheckResult[] = [];
  const rec = (check: string, ok: boolean | null, detail: string) =>
    rows.push({ check, ok, detail });
  let link: ConformanceLink;
  try {
    link = await ConformanceLink.open(o.target, o.terminalId, o.timeoutMs);
    rec('mutual TLS', true, 'handshake with the pinned CA and the terminal certificate');
  } catch (e) {
    rec('mutual TLS', false, (e as Error).message);
    return rows;
  }
  const ctx: KitContext = {
    o,
    link,
    rec,
    commandKey: o.commandKey,
    terminalKey: o.terminalKey ?? generateKeyPairSync('ed25519').privateKey,
    offsetMs: 0,
    settle: {},
  };
  const steps: Array<[string, (c: KitContext) => Promise<void>]> = [
    ['hello and time', hello],
    ['heartbeats', heartbeats],
    ['activation (command key)', activation],
    ...settlementChecks,
    ...commandChecks,
  ];
  for (const [name, step] of steps) {
    if (link.closed && name !== 'bad frame: error then close') {
      rec(name, false, `the link is closed (${link.closed.code})`);
      continue;
    }
    try {
      await step(ctx);
    } catch (e) {
      rec(name, false, (e as Error).message);
    }
  }
  if (!link.closed) await link.close();
  return rows;
}

/** Fails a step with `detail` unless `cond` holds. */
export function expectThat(cond: unknown, detail: string): asserts cond {
  if (!cond) throw new Error(detail);
}

/** Checks the envelope fields every reply must carry. */
export function envelopeProblem(
  ctx: KitContext,
  env: { messageId: string; terminalId: string },
): string | undefined {
  if (!env.messageId) return 'the reply has no message_id';
  if (env.terminalId && env.terminalId !== ctx.o.terminalId)
    return `the reply names terminal ${env.terminalId}`;
  return undefined;
}

async function hello(ctx: KitContext): Promise<void> {
  const { link, o } = ctx;
  const sent = Date.now();
  const { reply } = await link.request(
    {
      hello: {
        terminalId: o.terminalId,
        firmwareVersion: 'conformance-kit',
        journalHeadHash: '0'.repeat(64),
        lifecycleState: 'active',
        lastCommandCounter: 0,
      },
    },
    o.timeoutMs,
  );
  const mid = (sent + Date.now()) / 2;
  expectThat(
    reply.body === 'helloAck',
    `Hello answered with ${reply.body ?? 'nothing'}, not HelloAck`,
  );
  const problem = envelopeProblem(ctx, reply);
  expectThat(!problem, problem!);
  const server = Number(reply.helloAck!.serverTimeMs ?? 0);
  expectThat(server > 0, 'HelloAck carries no server_time_ms');
  ctx.offsetMs = Math.round(server - mid);
  expectThat(
    Math.abs(ctx.offsetMs) <= MAX_OFFSET_MS,
    `the acquirer clock is ${ctx.offsetMs} ms off ours; terminals refuse commands beyond ${MAX_OFFSET_MS} ms`,
  );
  ctx.rec(
    'hello and time',
    true,
    `HelloAck correlated; acquirer ${reply.helloAck!.acquirerId || '(no id)'}, offset ${ctx.offsetMs} ms`,
  );
}

async function heartbeats(ctx: KitContext): Promise<void> {
  const { link, o } = ctx;
  const offsets: number[] = [];
  let lastServer = 0;
  for (let i = 0; i < o.heartbeats; i++) {
    const clientTimeMs = Date.now();
    const { reply } = await link.request(
      { heartbeat: { clientTimeMs, lifecycleState: 'active', queuedBatches: 0 } },
      o.timeoutMs,
    );
    const received = Date.now();
    expectThat(reply.body === 'heartbeatAck', `Heartbeat answered with ${reply.body}`);
    const ack = reply.heartbeatAck!;
    expectThat(
      Number(ack.clientTimeMs) === clientTimeMs,
      'HeartbeatAck does not echo client_time_ms',
    );
    const server = Number(ack.serverTimeMs ?? 0);
    expectThat(server >= lastServer, 'server_time_ms went backwards between heartbeats');
    lastServer = server;
    offsets.push(server - (clientTimeMs + received) / 2);
    await new Promise((r) => setTimeout(r, 100));
  }
  const spread = Math.round(Math.max(...offsets) - Math.min(...offsets));
  expectThat(spread <= 5_000, `the acquirer clock moved ${spread} ms between heartbeats`);
  ctx.rec('heartbeats', true, `${o.heartbeats} acks echo client time; offset moved ${spread} ms`);
}

async function activation(ctx: KitContext): Promise<void> {
  const { link, o } = ctx;
  if (!o.activationCode) {
    ctx.rec(
      'activation (command key)',
      ctx.commandKey ? null : false,
      ctx.commandKey
        ? 'skipped: the command key was given'
        : 'no --activation-code and no --command-key',
    );
    return;
  }
  const { reply } = await link.request(
    {
      activationRequest: {
        terminalId: o.terminalId,
        activationCode: o.activationCode,
        terminalPublicKey: rawPublicKey(createPublicKey(ctx.terminalKey)),
        firmwareVersion: 'conformance-kit',
      },
    },
    o.timeoutMs,
  );
  expectThat(reply.body === 'activationResponse', `ActivationRequest answered with ${reply.body}`);
  const res = reply.activationResponse!;
  expectThat(res.accepted, `activation refused: ${res.errorCode} ${res.reason}`);
  const grant = decodeActivationGrant(res.grant ?? new Uint8Array());
  const key = publicKeyFromRaw(grant.commandPublicKey);
  expectThat(
    verifyEd25519(key, res.grant!, res.signature ?? new Uint8Array()),
    'the grant is not signed by the key it carries',
  );
  expectThat(grant.terminalId === o.terminalId, `the grant names terminal ${grant.terminalId}`);
  if (ctx.commandKey)
    expectThat(ctx.commandKey.equals(key), 'the grant carries another key than --command-key');
  ctx.commandKey = key;
  ctx.rec(
    'activation (command key)',
    true,
    'grant signed by the command key it carries; key pinned',
  );
}
