/**
 * The acquirer simulator: a mutual-TLS frame server on 127.0.0.1 with its own ledger, its own
 * Ed25519 command key and a set of behaviours a test switches at runtime (approve, out of
 * balance, slow, drop before or after the ack, duplicate acks, garbage, refuse connections).
 * A scenario test drives the real agent against it and then reads the ledger to prove, from
 * the acquirer's side, that every batch was settled exactly once.
 *
 * Restartable: stop() closes everything and leaves no timer; restart() (or a new start() on the
 * same data directory and port) reopens the same ledger, key and TLS material.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { AgentError } from '../base/errors.ts';
import { silentLogger, type Logger } from '../base/log.ts';
import { systemClock, type Clock } from '../base/clock.ts';
import { decodeAcquirerEnvelope } from './detail-wire.ts';
import { ChunkBatcher } from './chunk-batcher.ts';
import { forgetFolds } from './detail-fold.ts';
import { startFrameServer, type FrameServer, type ServerConnection } from '../protocol/server.ts';
import { ensureTlsMaterial, type TlsMaterial } from '../protocol/tls-material.ts';
import type { pos } from '../protocol/messages.ts';
import {
  answerOrRefusal,
  refusal,
  type HandlerContext,
  type HandlerResult,
} from './acquirer-handlers.ts';
import { applyPatch, defaultBehaviour, type Behaviour, type BehaviourPatch } from './behaviour.ts';
import {
  CommandDesk,
  type CommandBody,
  type IssueOptions,
  type IssuedCommand,
} from './command-desk.ts';
import { CommandSigner, type SignedCommandParts } from './command-signer.ts';
import { answer } from './acquirer-replies.ts';
import { Sleepers } from './sleepers.ts';
import { AcquirerLedger, type TerminalRecord } from './ledger.ts';
import { TerminalLinks } from './terminal-links.ts';
import { signRecoveryGrant } from './recovery-desk.ts';
import { allowNewIncarnation, reportedHead, type ReportedHead } from './head-watch.ts';
import type {
  AcquirerSimulatorEvents,
  AcquirerSimulatorOptions,
  SimTerminal,
} from './acquirer-options.ts';

export type { CommandBody, IssueOptions, IssuedCommand };
export type { AcquirerSimulatorEvents, AcquirerSimulatorOptions, SimTerminal };

/** The acquirer simulator. */
export class AcquirerSimulator extends EventEmitter<AcquirerSimulatorEvents> {
  readonly host: string;
  readonly dataDir: string;
  readonly tlsDir: string;
  /** The live behaviour; change it with behave(). */
  readonly behaviour: Behaviour;
  private readonly opts: AcquirerSimulatorOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly links = new TerminalLinks();
  private readonly sleepers = new Sleepers();
  private material: TlsMaterial | undefined;
  private signer: CommandSigner | undefined;
  private db: AcquirerLedger | undefined;
  private desk: CommandDesk | undefined;
  private ctx: HandlerContext | undefined;
  /** Detail chunks waiting to be stored in one commit (simulator/chunk-batcher.ts). */
  private readonly chunks = new ChunkBatcher(
    (fn) => this.need(this.db).atomically(fn),
    (e) => {
      // Folded rows of chunks that were not stored after all must not count.
      if (this.db) forgetFolds(this.db);
      return refusal(this.log, e, 'batchDetailChunk');
    },
  );
  private server: FrameServer | undefined;
  private boundPort = 0;

  private constructor(options: AcquirerSimulatorOptions) {
    super();
    this.opts = options;
    this.host = options.host ?? '127.0.0.1';
    this.dataDir = path.resolve(options.dataDir);
    this.tlsDir = path.resolve(options.tlsDir ?? path.join(this.dataDir, 'tls'));
    this.clock = options.clock ?? systemClock;
    this.log = (options.logger ?? silentLogger()).child({ component: 'acquirer-sim' });
    this.behaviour = applyPatch(defaultBehaviour(), {
      clockOffsetMs: options.clockOffsetMs ?? 0,
      ...options.behaviour,
    });
  }

  /** Starts a simulator: TLS material (made on first run), ledger, command key, server. */
  static async start(options: AcquirerSimulatorOptions): Promise<AcquirerSimulator> {
    const sim = new AcquirerSimulator(options);
    await sim.open(options.port ?? 0);
    return sim;
  }

  /** The listening port (kept across restart()). */
  get port(): number {
    return this.boundPort;
  }

  /** True while it listens. */
  get running(): boolean {
    return this.server !== undefined;
  }

  /** The acquirer's ledger. @throws AgentError PROTOCOL_DISCONNECTED while stopped. */
  get ledger(): AcquirerLedger {
    return this.need(this.db);
  }

  /** The TLS material: CA, server and one client certificate per known terminal. */
  get tls(): TlsMaterial {
    return this.need(this.material);
  }

  /** The command public key, as a key object. */
  get commandPublicKey(): KeyObject {
    return this.need(this.signer).publicKey;
  }

  /** The command public key as the raw 32 bytes the activation grant carries. */
  get commandPublicKeyRaw(): Buffer {
    return this.need(this.signer).publicKeyRaw;
  }

  /** Acquirer time: the clock shifted by the configured offset. */
  now(): number {
    return this.clock.now() + this.behaviour.clockOffsetMs;
  }

  /** Switches behaviours; they apply from the next message on. */
  behave(patch: BehaviourPatch): Behaviour {
    applyPatch(this.behaviour, patch);
    if (patch.refuseConnections) this.links.drop();
    return this.behaviour;
  }

  /**
   * What a terminal needs to reach this simulator: host, port, CA and its client certificate
   * (made now if missing), shaped as the channel's TlsTarget.
   */
  clientTls(terminalId: string): {
    host: string;
    port: number;
    servername: string;
    ca: string;
    cert: string;
    key: string;
  } {
    let material = this.tls;
    if (!material.clients[terminalId]) {
      material = ensureTlsMaterial(this.tlsDir, [...Object.keys(material.clients), terminalId]);
      this.material = material;
    }
    const client = material.clients[terminalId]!;
    return {
      host: this.host,
      port: this.port,
      servername: 'localhost',
      ca: material.caCert,
      ...client,
    };
  }

  /** Registers a terminal and its activation code (an existing one keeps its state). */
  registerTerminal(t: SimTerminal): TerminalRecord {
    this.ledger.registerTerminal({
      terminalId: t.terminalId,
      activationCode: t.activationCode,
      merchantId: t.merchantId ?? `M-${t.terminalId}`,
      merchantName: t.merchantName ?? `Test merchant ${t.terminalId}`,
      merchantCategory: t.merchantCategory ?? 'default',
    });
    return this.ledger.terminal(t.terminalId)!;
  }

  /** Terminals with a live link. */
  connectedTerminals(): string[] {
    return this.links.terminals();
  }

  /** Drops the live links of one terminal, or of all. */
  dropConnections(terminalId?: string): void {
    this.links.drop(terminalId);
  }

  /** Crafts a signed command without queueing it (forgeries, replays, altered bytes). */
  rawSignedCommand(
    terminalId: string,
    body: CommandBody,
    options: IssueOptions = {},
  ): SignedCommandParts {
    return this.need(this.desk).craft(terminalId, body, options);
  }

  /**
   * Signs a command for a terminal (next counter, fresh nonce) and pushes it if the terminal is
   * connected; otherwise it waits in the ledger for the terminal's next CommandPoll.
   */
  issueCommand(terminalId: string, body: CommandBody, options: IssueOptions = {}): IssuedCommand {
    const desk = this.need(this.desk);
    return desk.deliver(terminalId, desk.craft(terminalId, body, options));
  }

  /** Queues (and pushes, if connected) an already signed command, crafted or genuine. */
  deliverSignedCommand(terminalId: string, parts: SignedCommandParts): IssuedCommand {
    return this.need(this.desk).deliver(terminalId, parts);
  }

  /** Signs an UnlockGrant for a challenge shown on a terminal's console. */
  signUnlockGrant(
    terminalId: string,
    challenge: string,
    expiresAt: number,
    source = 'risk',
  ): { grant: Uint8Array; signature: Buffer } {
    const g = this.need(this.signer).unlockGrant({
      terminalId,
      challenge,
      expiresAtMs: expiresAt,
      source,
    });
    return { grant: g.bytes, signature: g.signature };
  }

  /** Signs a grant for a new journal incarnation of a rolled-back terminal (recovery-desk.ts). */
  signRecoveryGrant(terminalId: string, ttlMs = 3600_000): string {
    const head = reportedHead(this.ledger, terminalId);
    allowNewIncarnation(this.ledger, terminalId);
    return signRecoveryGrant(this.ledger, this.need(this.signer), {
      terminalId,
      now: this.now(),
      ttlMs,
      lastReportedHead: head ? { seq: head.seq, hash: head.hash } : null,
    });
  }

  /** The remote witness's record of a terminal's journal head (head-watch.ts). */
  reportedHead(terminalId: string): ReportedHead | undefined {
    return reportedHead(this.ledger, terminalId);
  }

  /** Decides the terminal's open deactivation review and sends the decision as a signed command. */
  decideDeactivation(terminalId: string, approve: boolean, reason: string): IssuedCommand {
    const review = this.ledger.decideReview(terminalId, approve, reason, this.now());
    if (!review) {
      throw new AgentError(
        'STORAGE_NOT_FOUND',
        `terminal ${terminalId} has no deactivation under review`,
      );
    }
    if (approve) this.ledger.setTerminalStatus(terminalId, 'deactivated');
    return this.issueCommand(terminalId, { deactivationDecision: { approve, reason } });
  }

  /** Stops: closes the server and every link, then the ledger; leaves no timer behind. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    // Cleared first: a handler woken from slowMs below then finds no context and does nothing.
    this.ctx = undefined;
    this.chunks.discard();
    this.sleepers.wakeAll();
    await server.close();
    this.links.clear();
    this.db?.close();
    this.db = undefined;
    this.desk = undefined;
  }

  /** Stops and starts again on the same port and data directory; the ledger persists. */
  async restart(): Promise<void> {
    await this.stop();
    await this.open(this.boundPort);
  }

  private need<T>(v: T | undefined): T {
    if (v === undefined)
      throw new AgentError('PROTOCOL_DISCONNECTED', 'the acquirer simulator is stopped');
    return v;
  }

  private async open(port: number): Promise<void> {
    const ids = new Set([
      ...(this.opts.terminals ?? []).map((t) => t.terminalId),
      ...(this.opts.clientIds ?? []),
      ...Object.keys(this.material?.clients ?? {}),
    ]);
    this.material = ensureTlsMaterial(this.tlsDir, [...ids]);
    const signer = CommandSigner.loadOrCreate(this.dataDir);
    const db = AcquirerLedger.open(this.dataDir);
    try {
      this.signer = signer;
      this.db = db;
      this.desk = new CommandDesk(db, signer, this.links, () => this.now());
      this.ctx = this.context(db, signer, this.desk);
      for (const t of this.opts.terminals ?? []) this.registerTerminal(t);
      this.server = await startFrameServer({
        host: this.host,
        port,
        ca: this.material.caCert,
        cert: this.material.serverCert,
        key: this.material.serverKey,
        maxFrameBytes: this.opts.maxFrameBytes,
        decode: decodeAcquirerEnvelope,
        logger: this.log,
        onConnection: (conn, cn) => this.onConnection(conn, cn),
      });
    } catch (e) {
      db.close();
      this.db = undefined;
      throw e;
    }
    this.boundPort = this.server.port;
    this.log.info({ port: this.boundPort, dataDir: this.dataDir }, 'acquirer simulator listening');
  }

  /** Made per open(), since a restart brings a new ledger handle. */
  private context(
    ledger: AcquirerLedger,
    signer: CommandSigner,
    desk: CommandDesk,
  ): HandlerContext {
    return {
      ledger,
      signer,
      behaviour: this.behaviour,
      acquirerId: this.opts.acquirerId ?? 'SIM-ACQUIRER',
      log: this.log,
      now: () => this.now(),
      deliverPending: (t, after) => desk.deliverPending(t, after),
      decideDeactivation: (t, approve, reason) => void this.decideDeactivation(t, approve, reason),
      issueRiskFlag: (t, code, severity, reason) =>
        void this.issueCommand(t, { riskFlag: { code, severity, reason } }),
      submissionSeen: (s) => this.emit('submission', s),
      settled: (s) => this.emit('settled', s),
    };
  }

  private onConnection(conn: ServerConnection, cn: string): void {
    if (!this.server || this.behaviour.refuseConnections) {
      conn.destroy();
      return;
    }
    this.links.add(cn, conn);
    conn.on('message', (env, payload) => void this.onMessage(conn, cn, env, payload));
    conn.on('protocol-error', (err) =>
      this.log.info({ terminalId: cn, code: err.code }, 'bad input from a terminal'),
    );
    this.emit('connected', cn);
  }

  private async onMessage(
    conn: ServerConnection,
    cn: string,
    env: pos.v1.Envelope,
    payload: Buffer,
  ): Promise<void> {
    this.emit('received', cn, env);
    if (this.behaviour.slowMs > 0) await this.sleepers.sleep(this.behaviour.slowMs);
    const ctx = this.ctx;
    if (!ctx || conn.closed) return;
    const send = (result: HandlerResult) =>
      answer(conn, cn, env, result, {
        behaviour: this.behaviour,
        links: this.links,
        now: () => this.now(),
        log: this.log,
      });
    const handle = () => answerOrRefusal(ctx, cn, env, payload);
    if (env.body === 'batchDetailChunk') {
      this.chunks.add({ handle, answer: send });
      return;
    }
    this.chunks.flush();
    send(handle());
  }
}
