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
import { AgentError, isAgentError } from '../agent/errors.ts';
import { silentLogger, type Logger } from '../agent/log.ts';
import { systemClock, type Clock } from '../agent/clock.ts';
import { startFrameServer, type FrameServer, type ServerConnection } from '../protocol/server.ts';
import { ensureTlsMaterial, type TlsMaterial } from '../protocol/tls-material.ts';
import {
  decodeSignedCommand,
  encodeSignedCommand,
  errorReplyFor,
  newMessageId,
  type EnvelopeBody,
  type pos,
} from '../protocol/messages.ts';
import { applyPatch, defaultBehaviour, type Behaviour, type BehaviourPatch } from './behaviour.ts';
import {
  CommandSigner,
  type RawCommandOptions,
  type SignedCommandParts,
} from './command-signer.ts';
import { handleEnvelope, type HandlerContext, type HandlerResult } from './acquirer-handlers.ts';
import { garbageBytes } from './garbage.ts';
import {
  AcquirerLedger,
  type SettlementRecord,
  type SubmissionRecord,
  type TerminalRecord,
} from './ledger.ts';

/** A terminal the acquirer knows before it ever connects. */
export interface SimTerminal {
  terminalId: string;
  activationCode: string;
  merchantId?: string;
  merchantName?: string;
  merchantCategory?: string;
}

/** Options of AcquirerSimulator.start. */
export interface AcquirerSimulatorOptions {
  /** Default 127.0.0.1; the simulator is never meant to be reachable from elsewhere. */
  host?: string;
  /** 0 (default) picks a free port; pass the old port to restart in place. */
  port?: number;
  /** Holds the ledger, the command key and (unless tlsDir is given) tls/. */
  dataDir: string;
  tlsDir?: string;
  terminals?: SimTerminal[];
  /** Extra client certificate CNs to make (terminals that need no activation code). */
  clientIds?: string[];
  clockOffsetMs?: number;
  behaviour?: BehaviourPatch;
  acquirerId?: string;
  maxFrameBytes?: number;
  clock?: Clock;
  logger?: Logger;
}

/** The body of a Command: exactly one of its oneof members. */
export type CommandBody = Pick<
  pos.v1.ICommand,
  | 'lock'
  | 'unlock'
  | 'deactivate'
  | 'riskFlag'
  | 'deactivationDecision'
  | 'feeSchedule'
  | 'settleNow'
  | 'status'
  | 'rotateKey'
>;

/** Options of issueCommand and rawSignedCommand. */
export interface IssueOptions extends RawCommandOptions {
  /** Default 10 minutes. */
  expiresInMs?: number;
  /** Use this counter instead of the next one (replays, gaps). */
  counter?: number;
  /** Put another terminal's id inside the signed command (the wrong-terminal case). */
  commandTerminalId?: string;
  issuedAtMs?: number;
}

/** A command as issued. */
export interface IssuedCommand extends SignedCommandParts {
  id: number;
  counter: number;
  /** True when it was pushed to a live link at once; otherwise it waits for a CommandPoll. */
  pushed: boolean;
}

/** Events of the simulator, for tests that act at a precise moment. */
export interface AcquirerSimulatorEvents {
  /** A message arrived (before any slowMs delay). */
  received: [terminalId: string, env: pos.v1.Envelope];
  /** A BatchSubmit was recorded. */
  submission: [s: Omit<SubmissionRecord, 'id'>];
  settled: [s: SettlementRecord];
  connected: [terminalId: string];
}

const DEFAULT_COMMAND_TTL_MS = 10 * 60_000;

/** The acquirer simulator. */
export class AcquirerSimulator extends EventEmitter<AcquirerSimulatorEvents> {
  readonly host: string;
  readonly dataDir: string;
  readonly tlsDir: string;
  readonly behaviour: Behaviour;
  private readonly opts: AcquirerSimulatorOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private material!: TlsMaterial;
  private signer!: CommandSigner;
  private db: AcquirerLedger | undefined;
  private server: FrameServer | undefined;
  private boundPort = 0;
  private stopped = true;
  private readonly links = new Map<string, ServerConnection[]>();
  private readonly helloDone = new WeakSet<ServerConnection>();
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  private readonly ctx: HandlerContext;

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
    const self = this;
    this.ctx = {
      get ledger() {
        return self.ledger;
      },
      get signer() {
        return self.signer;
      },
      behaviour: this.behaviour,
      acquirerId: options.acquirerId ?? 'SIM-ACQUIRER',
      log: this.log,
      now: () => this.now(),
      deliverPending: (t, after) => this.deliverPending(t, after),
      decideDeactivation: (t, approve, reason) => this.decideDeactivation(t, approve, reason),
      issueRiskFlag: (t, code, severity, reason) =>
        void this.issueCommand(t, { riskFlag: { code, severity, reason } }),
      submissionSeen: (s) => this.emit('submission', s),
      settled: (s) => this.emit('settled', s),
    };
  }

  /** Starts a simulator: TLS material (made on first run), ledger, command key, server. */
  static async start(options: AcquirerSimulatorOptions): Promise<AcquirerSimulator> {
    const sim = new AcquirerSimulator(options);
    await sim.open(options.port ?? 0);
    return sim;
  }

  /** The listening port (kept across restart). */
  get port(): number {
    return this.boundPort;
  }

  /** The acquirer's ledger. @throws if the simulator is stopped. */
  get ledger(): AcquirerLedger {
    if (!this.db)
      throw new AgentError('PROTOCOL_DISCONNECTED', 'the acquirer simulator is stopped');
    return this.db;
  }

  /** The TLS material: CA, server and one client certificate per known terminal. */
  get tls(): TlsMaterial {
    return this.material;
  }

  /** The command public key, as a key object and as the raw 32 bytes of the grant. */
  get commandPublicKey(): KeyObject {
    return this.signer.publicKey;
  }
  get commandPublicKeyRaw(): Buffer {
    return this.signer.publicKeyRaw;
  }

  /** True while it listens. */
  get running(): boolean {
    return !this.stopped;
  }

  /** Acquirer time: the clock shifted by the configured offset. */
  now(): number {
    return this.clock.now() + this.behaviour.clockOffsetMs;
  }

  /** Switches behaviours; takes effect for the next message. */
  behave(patch: BehaviourPatch): Behaviour {
    applyPatch(this.behaviour, patch);
    if (patch.refuseConnections) this.dropConnections();
    return this.behaviour;
  }

  /**
   * What a terminal needs to reach this simulator: host, port, CA and its client certificate
   * (made now if missing). Shaped as protocol/channel.ts's TlsTarget.
   */
  clientTls(terminalId: string): {
    host: string;
    port: number;
    ca: string;
    cert: string;
    key: string;
    servername: string;
  } {
    let client = this.material.clients[terminalId];
    if (!client) {
      this.material = ensureTlsMaterial(this.tlsDir, [
        ...Object.keys(this.material.clients),
        terminalId,
      ]);
      client = this.material.clients[terminalId]!;
    }
    return {
      host: this.host,
      port: this.port,
      ca: this.material.caCert,
      servername: 'localhost',
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
    return [...this.links].filter(([, l]) => l.length > 0).map(([t]) => t);
  }

  /** Drops the live links of one terminal, or of all. */
  dropConnections(terminalId?: string): void {
    for (const [t, links] of this.links) {
      if (terminalId === undefined || t === terminalId) for (const c of [...links]) c.destroy();
    }
  }

  /** Crafts a signed command without queueing it (for forgeries, replays, altered bytes). */
  rawSignedCommand(
    terminalId: string,
    body: CommandBody,
    options: IssueOptions = {},
  ): SignedCommandParts {
    const issuedAtMs = options.issuedAtMs ?? this.now();
    const counter = options.counter ?? this.ledger.nextCounter(terminalId);
    if (options.counter !== undefined) this.ledger.bumpCounter(terminalId, counter);
    return this.signer.command(
      {
        terminalId: options.commandTerminalId ?? terminalId,
        counter,
        issuedAtMs,
        expiresAtMs: issuedAtMs + (options.expiresInMs ?? DEFAULT_COMMAND_TTL_MS),
        ...body,
      },
      options,
    );
  }

  /**
   * Signs a command for a terminal (next counter, fresh nonce) and pushes it if the terminal is
   * connected; otherwise it waits in the ledger for the terminal's next CommandPoll.
   */
  issueCommand(terminalId: string, body: CommandBody, options: IssueOptions = {}): IssuedCommand {
    return this.deliverSignedCommand(terminalId, this.rawSignedCommand(terminalId, body, options));
  }

  /** Queues (and pushes, if connected) an already signed command, crafted or genuine. */
  deliverSignedCommand(terminalId: string, parts: SignedCommandParts): IssuedCommand {
    const signed = encodeSignedCommand(parts.signed);
    const c = parts.command;
    const kind =
      Object.keys(c).find(
        (k) => !['terminalId', 'counter', 'issuedAtMs', 'expiresAtMs', 'nonce'].includes(k),
      ) ?? 'none';
    const messageId = newMessageId();
    const id = this.ledger.addCommand({
      terminalId,
      counter: Number(c.counter ?? 0),
      kind,
      signed: Buffer.from(signed),
      messageId,
      issuedAt: Number(c.issuedAtMs ?? this.now()),
      expiresAt: Number(c.expiresAtMs ?? this.now()),
    });
    const link = this.liveLink(terminalId);
    const pushed =
      link !== undefined &&
      this.pushCommand(link, terminalId, { id, signed: Buffer.from(signed), messageId });
    return { ...parts, id, counter: Number(c.counter ?? 0), pushed };
  }

  /** Signs an UnlockGrant for a challenge shown on a terminal's console. */
  signUnlockGrant(
    terminalId: string,
    challenge: string,
    expiresAt: number,
    source = 'risk',
  ): { grant: Uint8Array; signature: Buffer } {
    const g = this.signer.unlockGrant({ terminalId, challenge, expiresAtMs: expiresAt, source });
    return { grant: g.bytes, signature: g.signature };
  }

  /** Decides the terminal's open deactivation review and sends the decision as a signed command. */
  decideDeactivation(terminalId: string, approve: boolean, reason: string): IssuedCommand {
    const review = this.ledger.decideReview(terminalId, approve, reason, this.now());
    if (!review)
      throw new AgentError(
        'STORAGE_NOT_FOUND',
        `terminal ${terminalId} has no deactivation under review`,
      );
    if (approve) this.ledger.setTerminalStatus(terminalId, 'deactivated');
    return this.issueCommand(terminalId, { deactivationDecision: { approve, reason } });
  }

  /** Stops: closes the server and every link, closes the ledger, leaves no timer. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const s of this.sleepers) {
      clearTimeout(s.timer);
      s.wake();
    }
    this.sleepers.clear();
    await this.server?.close();
    this.server = undefined;
    this.links.clear();
    this.db?.close();
    this.db = undefined;
  }

  /** Stops and starts again on the same port and data directory; the ledger persists. */
  async restart(): Promise<void> {
    await this.stop();
    await this.open(this.boundPort);
  }

  private async open(port: number): Promise<void> {
    const ids = [
      ...(this.opts.terminals ?? []).map((t) => t.terminalId),
      ...(this.opts.clientIds ?? []),
    ];
    this.material = ensureTlsMaterial(this.tlsDir, [
      ...new Set([...ids, ...Object.keys(this.material?.clients ?? {})]),
    ]);
    this.signer = CommandSigner.loadOrCreate(this.dataDir);
    this.db = AcquirerLedger.open(this.dataDir);
    try {
      for (const t of this.opts.terminals ?? []) this.registerTerminal(t);
      this.server = await startFrameServer({
        host: this.host,
        port,
        ca: this.material.caCert,
        cert: this.material.serverCert,
        key: this.material.serverKey,
        maxFrameBytes: this.opts.maxFrameBytes,
        logger: this.log,
        onConnection: (conn, cn) => this.onConnection(conn, cn),
      });
    } catch (e) {
      this.db.close();
      this.db = undefined;
      throw e;
    }
    this.boundPort = this.server.port;
    this.stopped = false;
    this.log.info({ port: this.boundPort, dataDir: this.dataDir }, 'acquirer simulator listening');
  }

  private onConnection(conn: ServerConnection, cn: string): void {
    if (this.stopped || this.behaviour.refuseConnections) {
      conn.destroy();
      return;
    }
    const links = this.links.get(cn) ?? [];
    links.push(conn);
    this.links.set(cn, links);
    conn.once('close', () => {
      const l = this.links.get(cn);
      if (l)
        this.links.set(
          cn,
          l.filter((c) => c !== conn),
        );
    });
    conn.on('message', (env) => void this.onMessage(conn, cn, env));
    conn.on('protocol-error', (err) =>
      this.log.info({ terminalId: cn, code: err.code }, 'bad input from a terminal'),
    );
    this.emit('connected', cn);
  }

  private async onMessage(conn: ServerConnection, cn: string, env: pos.v1.Envelope): Promise<void> {
    this.emit('received', cn, env);
    if (this.behaviour.slowMs > 0) await this.sleep(this.behaviour.slowMs);
    if (this.stopped || conn.closed) return;
    let result: HandlerResult;
    try {
      // The certificate names the terminal; an envelope naming another one is refused outright.
      if (env.terminalId && env.terminalId !== cn) {
        throw new AgentError(
          'PROTOCOL_UNEXPECTED',
          `the envelope names terminal ${env.terminalId.slice(0, 16)} but the certificate is ${cn}`,
        );
      }
      result = handleEnvelope(this.ctx, cn, env);
    } catch (e) {
      if (!isAgentError(e)) this.log.error({ err: e, kind: env.body }, 'simulator handler failed');
      const err = isAgentError(e)
        ? e
        : new AgentError('PROTOCOL_UNEXPECTED', 'the acquirer failed to handle the message');
      result = { kind: 'reply', body: { error: errorReplyFor(err) } };
    }
    if (result.kind === 'drop') {
      conn.destroy();
      return;
    }
    if (result.kind === 'none') return;
    const g = this.behaviour.garbage;
    if (g && g.times > 0 && (!g.on || g.on === env.body)) {
      g.times -= 1;
      conn.socket.write(garbageBytes(g.kind));
      return;
    }
    if (env.body === 'hello' && 'helloAck' in result.body) this.helloDone.add(conn);
    const sent = this.send(conn, cn, result.body, env.messageId);
    if (sent && this.behaviour.duplicateAcks) this.send(conn, cn, result.body, env.messageId);
    result.then?.();
  }

  private send(
    conn: ServerConnection,
    cn: string,
    body: EnvelopeBody,
    correlationId = '',
  ): boolean {
    try {
      conn.send({
        ...body,
        messageId: newMessageId(),
        terminalId: cn,
        correlationId,
        sentAtMs: this.now(),
      });
      return true;
    } catch (e) {
      this.log.debug({ err: e, terminalId: cn }, 'could not send to the terminal');
      return false;
    }
  }

  /** The newest link of a terminal that has said Hello (the channel refuses pushes before). */
  private liveLink(terminalId: string): ServerConnection | undefined {
    return (this.links.get(terminalId) ?? [])
      .filter((c) => !c.closed && this.helloDone.has(c))
      .at(-1);
  }

  private pushCommand(
    conn: ServerConnection,
    terminalId: string,
    c: { id: number; signed: Buffer; messageId: string },
  ): boolean {
    const env: pos.v1.IEnvelope = {
      messageId: c.messageId,
      terminalId,
      sentAtMs: this.now(),
      command: decodeSignedCommand(c.signed),
    };
    try {
      conn.send(env);
    } catch {
      return false;
    }
    this.ledger.markDelivered(c.id, this.now());
    return true;
  }

  private deliverPending(terminalId: string, afterCounter: number): number {
    const link = this.liveLink(terminalId);
    if (!link) return 0;
    let sent = 0;
    for (const c of this.ledger.pendingCommands(terminalId, afterCounter, this.now())) {
      if (this.pushCommand(link, terminalId, c)) sent += 1;
    }
    return sent;
  }

  /** A delay that stop() cuts short, so a slow handler never outlives the simulator. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const s = {
        timer: setTimeout(() => {
          this.sleepers.delete(s);
          resolve();
        }, ms),
        wake: resolve,
      };
      this.sleepers.add(s);
    });
  }
}
