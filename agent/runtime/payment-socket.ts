import net from 'node:net';
import { existsSync, rmSync, chmodSync, lstatSync } from 'node:fs';
import { localClientConnection, localServerConnection } from '../../protocol/connection.ts';
import { DEFAULT_MAX_FRAME_BYTES } from '../../protocol/framer.ts';
import { errorReplyFor, newMessageId, type pos } from '../../protocol/messages.ts';
import { PendingRequests } from '../../protocol/pending-requests.ts';
import type { Logger } from '../../base/log.ts';
import { AgentError, isAgentError, toAgentError } from '../../base/errors.ts';
import type { Payments, RecordInput, RecordResult } from '../policy/payments.ts';
import type { TerminalState } from '../policy/terminal-state.ts';
import type { Store } from '../../storage/store.ts';
import type { TxnRow, TxnStatus, TxnType } from '../../storage/journal.ts';
import { adviceFields, adviceOutcomes } from './advice-socket.ts';

/**
 * The payment app's local interface: a Unix domain socket speaking length-prefixed
 * LocalRequest/LocalReply frames from the same schema. A record is answered only after
 * its journal row is durable. A bad frame gets a typed error and that client is
 * dropped; other clients and the agent carry on.
 */

export interface PaymentSocketDeps {
  payments: Payments;
  terminal: TerminalState;
  store: Store;
  log: Logger;
  maxFrameBytes?: number;
}

export class PaymentSocketServer {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly d: PaymentSocketDeps) {}

  private get maxFrameBytes(): number {
    return this.d.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /** Listens on `path` (a stale socket file from a crash is replaced; anything else is refused). */
  async listen(path: string): Promise<void> {
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket())
        throw new AgentError('CONFIG_INVALID', `${path} exists and is not a socket`);
      rmSync(path);
    }
    const server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Only the agent's user (and its group: the payment app) may connect.
    chmodSync(path, 0o660);
    this.server = server;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    const conn = localServerConnection(socket, {
      maxFrameBytes: this.d.maxFrameBytes,
      logger: this.d.log,
    });
    conn.on('protocol-error', (err) =>
      this.d.log.warn({ code: err.code }, 'payment app sent a bad frame'),
    );
    conn.on('message', (req) => {
      const reply = this.handle(req);
      if (conn.closed) return;
      this.answer(conn, reply);
      // An app that writes without reading its replies is held back (its writes wait in the
      // kernel) instead of having its replies buffered here without end.
      if (socket.writableNeedDrain && !socket.isPaused()) {
        socket.pause();
        socket.once('drain', () => socket.resume());
      }
    });
  }

  /**
   * Sends a reply; one that cannot be sent (larger than a frame may be) becomes an error
   * reply to the same request, so the app is never left waiting for an answer that is not coming.
   */
  private answer(conn: ReturnType<typeof localServerConnection>, reply: pos.v1.ILocalReply): void {
    try {
      conn.send(reply);
    } catch (e) {
      const err = toAgentError(e, 'PROTOCOL_MALFORMED');
      this.d.log.error({ code: err.code }, 'a reply to the payment app could not be sent');
      try {
        conn.send({ requestId: reply.requestId ?? '', error: errorReplyFor(err) });
      } catch {
        // Not even the error fits (a request id near the frame limit): the app sees the close.
        conn.destroy(err);
      }
    }
  }

  /** One request to one reply; never throws. */
  handle(req: pos.v1.LocalRequest): pos.v1.ILocalReply {
    const requestId = req.requestId ?? '';
    try {
      switch (req.body) {
        case 'record': {
          const r = this.d.payments.recordFromApp(recordInputFrom(req.record!));
          return {
            requestId,
            record: {
              seq: r.seq,
              fee: r.fee,
              feeScheduleVersion: r.feeVersion ?? '',
              maskedPan: r.maskedPan ?? '',
              status: r.status,
              localId: r.localId,
              batchId: r.batchId,
              duplicate: r.duplicate,
            },
          };
        }
        case 'mayTransact': {
          const s = this.d.terminal.status();
          const may = this.d.terminal.mayTransact();
          return {
            requestId,
            mayTransact: {
              allowed: may.allowed,
              state: s.state,
              locks: s.locks,
              reason: may.allowed ? '' : may.reason,
            },
          };
        }
        case 'query': {
          const row = findQueried(this.d.store, req.query!);
          return {
            requestId,
            transaction: {
              seq: row.seq,
              localId: row.localId,
              type: row.type,
              amount: row.amount,
              currency: row.currency,
              fee: row.fee,
              status: row.status,
              maskedPan: row.maskedPan ?? '',
              authCode: row.authCode ?? '',
              originalSeq: row.originalSeq ?? 0,
              batchId: row.batchId,
              createdAtMs: row.createdAt,
              ...adviceFields(this.d.store, row.seq),
            },
          };
        }
        case 'adviceOutcomes':
          return {
            requestId,
            adviceOutcomes: adviceOutcomes(
              this.d.store,
              req.adviceOutcomes!,
              // What the reply frame leaves for the outcomes once the echoed id and the rest are in.
              this.maxFrameBytes - Buffer.byteLength(requestId) - 64,
            ),
          };
        default:
          throw new AgentError('PROTOCOL_UNEXPECTED', 'the request has no body');
      }
    } catch (e) {
      const err = isAgentError(e) ? e : toAgentError(e, 'PROTOCOL_MALFORMED');
      return { requestId, error: errorReplyFor(err) };
    }
  }
}

/** Maps a wire request to the entry point's input; empty proto3 defaults mean "absent". */
function recordInputFrom(r: pos.v1.IRecordRequest): RecordInput {
  const card = r.card
    ? {
        pan: r.card.pan ?? '',
        ...(r.card.cvv ? { cvv: r.card.cvv } : {}),
        ...(r.card.track2 ? { track2: r.card.track2 } : {}),
        ...(r.card.pinBlock && r.card.pinBlock.length ? { pinBlock: r.card.pinBlock } : {}),
      }
    : undefined;
  return {
    type: (r.type ?? '') as TxnType,
    amount: Number(r.amount ?? 0),
    currency: r.currency || undefined,
    card,
    // Empty is absent: the app's check refuses it rather than guessing "approved".
    status: (r.status || undefined) as TxnStatus | undefined,
    authCode: r.authCode || undefined,
    originalSeq: r.originalSeq ? Number(r.originalSeq) : undefined,
    localId: r.localId || undefined,
    approvedAt: r.approvedAtMs ? Number(r.approvedAtMs) : undefined,
  };
}

/**
 * A client for the payment app (and tests, and the card simulator): one connection,
 * requests correlated by id, each answered, failed or timed out (PROTOCOL_TIMEOUT after
 * `requestTimeoutMs`; a reply arriving later is dropped). The link dropping fails every
 * request still waiting.
 */
export class PaymentClient {
  private readonly waiting = new PendingRequests<pos.v1.LocalReply>();
  private constructor(
    private readonly conn: ReturnType<typeof localClientConnection>,
    private readonly requestTimeoutMs: number,
  ) {
    conn.on('message', (reply) => void this.waiting.resolve(reply.requestId, reply));
    conn.on('close', (reason) => this.waiting.rejectAll(reason));
  }

  /** Default 15 000 ms: a record is answered once durable, well within that on a sound disk. */
  static connect(path: string, opts: { requestTimeoutMs?: number } = {}): Promise<PaymentClient> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(path);
      socket.once('error', (e) => reject(toAgentError(e, 'PROTOCOL_DISCONNECTED')));
      socket.once('connect', () =>
        resolve(new PaymentClient(localClientConnection(socket), opts.requestTimeoutMs ?? 15_000)),
      );
    });
  }

  private ask(req: Omit<pos.v1.ILocalRequest, 'requestId'>): Promise<pos.v1.LocalReply> {
    const requestId = newMessageId();
    const kind = Object.keys(req)[0];
    const reply = this.waiting.track(requestId, kind, this.requestTimeoutMs);
    try {
      this.conn.send({ ...req, requestId });
    } catch (e) {
      this.waiting.reject(requestId, toAgentError(e, 'PROTOCOL_DISCONNECTED'));
    }
    return reply;
  }

  private static unwrap<T>(
    reply: pos.v1.LocalReply,
    pick: (r: pos.v1.LocalReply) => T | null | undefined,
  ): T {
    if (reply.error)
      throw new AgentError(
        (reply.error.code || 'PROTOCOL_PEER_ERROR') as 'PROTOCOL_PEER_ERROR',
        reply.error.message ?? '',
      );
    const v = pick(reply);
    if (v === null || v === undefined)
      throw new AgentError('PROTOCOL_UNEXPECTED', 'the agent answered with something else');
    return v;
  }

  async record(input: RecordInput): Promise<RecordResult> {
    const card = input.card as { pan: string; cvv?: string; track2?: string } | undefined;
    const r = PaymentClient.unwrap(
      await this.ask({
        record: {
          type: input.type,
          amount: input.amount,
          currency: input.currency ?? '',
          card: card
            ? { pan: card.pan, cvv: card.cvv ?? '', track2: card.track2 ?? '' }
            : undefined,
          status: input.status ?? 'approved',
          authCode: input.authCode ?? '',
          originalSeq: input.originalSeq ?? 0,
          localId: input.localId ?? '',
          approvedAtMs: input.approvedAt ?? 0,
        },
      }),
      (x) => x.record,
    );
    return {
      seq: Number(r.seq),
      fee: Number(r.fee),
      feeVersion: r.feeScheduleVersion || null,
      maskedPan: r.maskedPan || null,
      status: r.status as TxnStatus,
      localId: r.localId ?? '',
      batchId: r.batchId ?? '',
      duplicate: r.duplicate ?? false,
    };
  }

  async mayTransact(): Promise<pos.v1.IMayTransactReply> {
    return PaymentClient.unwrap(await this.ask({ mayTransact: {} }), (x) => x.mayTransact);
  }

  /** One journaled transaction, by its seq or by the app's own local id. */
  async query(which: number | { localId: string }): Promise<pos.v1.ITransactionView> {
    const query = typeof which === 'number' ? { seq: which } : { localId: which.localId };
    return PaymentClient.unwrap(await this.ask({ query }), (x) => x.transaction);
  }

  /** Advices answered after journal row `afterSeq` (declines included), oldest first. */
  async adviceOutcomes(afterSeq = 0, limit = 100): Promise<pos.v1.IAdviceOutcomesReply> {
    return PaymentClient.unwrap(
      await this.ask({ adviceOutcomes: { afterSeq, limit } }),
      (x) => x.adviceOutcomes,
    );
  }

  close(): void {
    this.conn.destroy();
  }
}

/** The transaction a query names: by seq or by the app's local_id, exactly one of them. */
function findQueried(store: Store, q: pos.v1.IQueryRequest): TxnRow {
  const seq = Number(q.seq ?? 0);
  const localId = q.localId ?? '';
  if ((seq !== 0) === (localId !== ''))
    throw new AgentError('TXN_INVALID', 'a query names a seq or a local_id, exactly one of them');
  const row = localId ? store.journal.findByLocalId(localId) : store.journal.getTxn(seq);
  if (!row)
    throw new AgentError(
      'STORAGE_NOT_FOUND',
      // The id is not echoed: whatever the app sent (a card number by mistake) stays out of
      // replies and logs.
      localId ? 'no transaction has that local_id' : `no transaction ${seq}`,
    );
  return row;
}
