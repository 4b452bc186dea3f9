/**
 * Interop from the spec alone: a small acquirer written here from protocol/schema/pos/v1/pos.proto
 * by protobufjs reflection (protobuf.load: not the generated code, not the simulator, not the
 * project's framer or TLS server) and docs/protocol.md, over real mutual TLS on 127.0.0.1,
 * activates a real agent, settles its batch, and locks and unlocks it with signed commands.
 * A second acquirer forgets acquirer_totals in its BatchAck: the agent must refuse that.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  randomUUID,
  sign,
  verify,
} from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import protobuf from 'protobufjs';
import { ensureTlsMaterial, type TlsMaterial } from '../../protocol/tls-material.ts';
import { Agent } from '../../agent/runtime/agent.ts';
import { parseConfig } from '../../agent/config.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PROTO = path.join(ROOT, 'protocol', 'schema', 'pos', 'v1', 'pos.proto');
const TERMINAL = 'TREFL01';
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let dir: string;
let material: TlsMaterial;
let types: Record<'Envelope' | 'Command' | 'ActivationGrant' | 'CommandResultBody', protobuf.Type>;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'pa-interop-'));
  material = ensureTlsMaterial(path.join(dir, 'pki'), [TERMINAL, 'TREFL02']);
  const root = await protobuf.load(PROTO);
  types = {
    Envelope: root.lookupType('pos.v1.Envelope'),
    Command: root.lookupType('pos.v1.Command'),
    ActivationGrant: root.lookupType('pos.v1.ActivationGrant'),
    CommandResultBody: root.lookupType('pos.v1.CommandResultBody'),
  };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** int64 arrives as Long under reflection: toObject with longs: Number (docs/protocol.md). */
const asObject = (t: protobuf.Type, bytes: Uint8Array): Obj =>
  t.toObject(t.decode(bytes), { longs: Number, oneofs: true, defaults: false });
const encode = (t: protobuf.Type, obj: Obj): Uint8Array => t.encode(t.fromObject(obj)).finish();

/** The acquirer: framing, dispatch, settlement and command signing, all from the spec. */
class ReflectionAcquirer {
  readonly key = generateKeyPairSync('ed25519');
  readonly settled = new Map<string, { settlementId: string; totals: Obj }>();
  readonly results: Obj[] = [];
  terminalKey: ReturnType<typeof createPublicKey> | undefined;
  private socket: tls.TLSSocket | undefined;
  private counter = 0;
  private cn = '';
  private server!: tls.Server;
  port = 0;

  constructor(private readonly o: { omitTotals?: boolean } = {}) {}

  async start(): Promise<void> {
    this.server = tls.createServer({
      ca: material.caCert,
      cert: material.serverCert,
      key: material.serverKey,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    });
    this.server.on('secureConnection', (s) => this.accept(s));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    this.socket?.destroy();
    await new Promise((r) => this.server.close(r));
  }

  /** Signs and pushes one command: message_id set, no correlation_id. */
  push(body: Obj): number {
    this.counter += 1;
    const now = Date.now();
    const bytes = encode(types.Command, {
      terminalId: this.cn,
      counter: this.counter,
      issuedAtMs: now,
      expiresAtMs: now + 10 * 60_000,
      nonce: randomBytes(16),
      ...body,
    });
    this.send({
      messageId: randomUUID(),
      command: { command: bytes, signature: sign(null, bytes, this.key.privateKey) },
    });
    return this.counter;
  }

  private accept(s: tls.TLSSocket): void {
    this.socket = s;
    const cn = String((s.getPeerCertificate().subject as { CN?: string }).CN);
    this.cn = cn;
    let buf = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      // 4-byte big-endian length, then that many bytes of Envelope.
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const env = asObject(types.Envelope, buf.subarray(4, 4 + len));
        buf = buf.subarray(4 + len);
        if (env.terminalId && env.terminalId !== cn) return void s.destroy();
        const reply = this.handle(env);
        if (reply) this.send({ messageId: randomUUID(), correlationId: env.messageId, ...reply });
      }
    });
    s.on('error', () => {});
  }

  private send(env: Obj): void {
    const payload = encode(types.Envelope, { terminalId: this.cn, sentAtMs: Date.now(), ...env });
    const head = Buffer.alloc(4);
    head.writeUInt32BE(payload.length);
    this.socket?.write(Buffer.concat([head, payload]));
  }

  private handle(env: Obj): Obj | undefined {
    switch (env.body) {
      case 'hello':
        return { helloAck: { serverTimeMs: Date.now(), acquirerId: 'REFLECTION' } };
      case 'heartbeat':
        return {
          heartbeatAck: { clientTimeMs: env.heartbeat.clientTimeMs, serverTimeMs: Date.now() },
        };
      case 'activationRequest':
        return this.activate(env.activationRequest);
      case 'commandPoll':
        return { commandPollDone: { sent: 0 } };
      case 'riskReport':
        return { riskReportAck: {} };
      case 'batchSubmit':
        return this.settle(env.batchSubmit);
      case 'commandResult':
        this.results.push({ correlationId: env.correlationId, ...env.commandResult });
        return undefined;
      default:
        return { error: { code: 'PROTOCOL_UNEXPECTED', message: `not taken: ${env.body}` } };
    }
  }

  private activate(req: Obj): Obj {
    this.terminalKey = createPublicKey({
      key: Buffer.concat([
        Buffer.from('302a300506032b6570032100', 'hex'),
        Buffer.from(req.terminalPublicKey),
      ]),
      format: 'der',
      type: 'spki',
    });
    const spki = this.key.publicKey.export({ format: 'der', type: 'spki' });
    const grant = encode(types.ActivationGrant, {
      terminalId: req.terminalId,
      merchantId: 'M-REFL',
      merchantName: 'Reflection test merchant',
      merchantCategory: 'default',
      feeSchedule: {
        version: 'refl-1',
        currency: 'CNY',
        effectiveFromMs: 0,
        rules: [{ category: 'default', rateBp: 60, fixed: 0, minimum: 300, cap: 0 }],
      },
      commandPublicKey: spki.subarray(spki.length - 32),
      issuedAtMs: Date.now(),
      currency: 'CNY',
    });
    return {
      activationResponse: {
        accepted: true,
        grant,
        signature: sign(null, grant, this.key.privateKey),
      },
    };
  }

  private settle(s: Obj): Obj {
    const known = this.settled.get(s.batchId);
    if (known && known.totals.digest !== s.digest)
      return { error: { code: 'SETTLEMENT_REJECTED', message: 'other digest' } };
    const first = known ?? {
      settlementId: `REFL-${randomUUID()}`,
      totals: { ...s.totals, digest: s.digest },
    };
    this.settled.set(s.batchId, first);
    const { digest: _d, ...totals } = first.totals;
    void _d;
    return {
      batchAck: {
        batchId: s.batchId,
        digest: s.digest,
        settlementId: first.settlementId,
        duplicate: known !== undefined,
        ...(this.o.omitTotals ? {} : { acquirerTotals: totals }),
      },
    };
  }
}

async function agentFor(terminalId: string, port: number): Promise<Agent> {
  const dataDir = path.join(dir, terminalId);
  mkdirSync(path.join(dataDir, 'tls'), { recursive: true });
  writeFileSync(path.join(dataDir, 'tls', 'ca.crt'), material.caCert);
  writeFileSync(path.join(dataDir, 'tls', 'terminal.crt'), material.clients[terminalId]!.cert);
  writeFileSync(path.join(dataDir, 'tls', 'terminal.key'), material.clients[terminalId]!.key, {
    mode: 0o600,
  });
  const config = parseConfig({
    terminalId,
    dataDir,
    acquirer: { port, backoffInitialMs: 20, backoffMaxMs: 100, requestTimeoutMs: 3_000 },
    paymentSocket: { path: '' },
    log: { level: 'silent' },
  });
  const agent = new Agent({ config, schedules: false });
  await agent.start();
  await agent.channel.waitUntilUp(8_000);
  return agent;
}

async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 8_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sell = (agent: Agent, amounts: number[]) =>
  amounts.map((amount) =>
    agent.core.payments.record({ type: 'sale', amount, card: { pan: '4111111111111111' } }),
  );

describe('an acquirer built from the .proto by reflection', () => {
  it('activates, settles a batch exactly once, locks and unlocks the terminal', async () => {
    const acq = new ReflectionAcquirer();
    await acq.start();
    const agent = await agentFor(TERMINAL, acq.port);
    try {
      await agent.activate('ANY-CODE', 'console:tech1');
      expect(agent.core.terminal.status().state).toBe('active');
      sell(agent, [12_000, 34_500, 7_700]);
      const report = await agent.settleNow('interop');
      expect(report.error).toBeUndefined();
      expect(report.settled).toHaveLength(1);
      const batch = agent.core.store.batches.get(report.settled[0]!)!;
      expect(batch.state).toBe('acked');
      const theirs = acq.settled.get(batch.batchId)!;
      expect(batch.settlementId).toBe(theirs.settlementId);
      expect(theirs.totals).toMatchObject({ transactionCount: 3, netAmount: 54_200 });

      for (const [body, locks] of [
        [{ lock: { reason: 'interop lock' } }, ['remote']],
        [{ unlock: { source: 'remote', reason: 'interop unlock' } }, []],
      ] as const) {
        const counter = acq.push(body);
        await until(() => acq.results.length >= counter, `result ${counter}`);
        const r = acq.results[counter - 1]!;
        expect(verify(null, r.body, acq.terminalKey!, r.signature)).toBe(true);
        expect(asObject(types.CommandResultBody, r.body)).toMatchObject({
          terminalId: TERMINAL,
          counter,
          outcome: 'applied',
        });
        expect(agent.core.terminal.status().locks).toEqual(locks);
      }
    } finally {
      await agent.stop();
      await acq.stop();
    }
  });

  it('a BatchAck without acquirer_totals is refused as a protocol error; the batch stays sent', async () => {
    const acq = new ReflectionAcquirer({ omitTotals: true });
    await acq.start();
    const agent = await agentFor('TREFL02', acq.port);
    try {
      await agent.activate('ANY-CODE', 'console:tech1');
      sell(agent, [10_000]);
      const report = await agent.settleNow('interop');
      expect(report.error).toMatchObject({ code: 'PROTOCOL_MALFORMED' });
      expect(report.pending).toHaveLength(1);
      expect(agent.core.store.batches.get(report.pending[0]!)!.state).toBe('sent');
    } finally {
      await agent.stop();
      await acq.stop();
    }
  });
});
