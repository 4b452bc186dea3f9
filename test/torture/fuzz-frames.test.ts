/**
 * The frame and message fuzzers (INVARIANTS 5, 6, 11): random and mutated bytes, from one seeded
 * PRNG, against every decoder and handler that takes bytes from outside —
 *   the frame decoder (split anywhere, bad prefixes; valid streams must come back exactly),
 *   decodeEnvelope -> the acquirer simulator's handlers (a real ledger file),
 *   decodeLocalRequest -> PaymentSocketServer.handle (a real journal),
 *   SignedCommand bytes -> CommandProcessor.handle (forged, altered, and genuinely signed junk),
 *   FrameConnection fed random chunks, the agent's acquirer channel end to end, and the
 *   payment-app socket with garbage over a real Unix socket.
 * Nothing may crash or hang, the heap must stay bounded, every rejection must be an AgentError
 * with a catalogued code, no forged command may be obeyed, and no card number may reach the
 * journal file.
 *
 * TORTURE_FUZZ_INPUTS (default 100 000, spread over the surfaces) scales it; TORTURE_SEED
 * replays a run. The console has its own fuzzer: test/torture/console-fuzz.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AgentError, type ErrorCode } from '../../base/errors.ts';
import { DEFAULT_MAX_FRAME_BYTES, FrameDecoder, encodeFrame } from '../../protocol/framer.ts';
import {
  decodeCommandResultBody,
  decodeEnvelope,
  decodeLocalRequest,
  decodeSignedCommand,
  encodeEnvelope,
  encodeLocalReply,
  encodeLocalRequest,
  encodeSignedCommand,
  type pos,
} from '../../protocol/messages.ts';
import { handleEnvelope, type HandlerContext } from '../../simulator/acquirer-handlers.ts';
import { AcquirerLedger } from '../../simulator/ledger.ts';
import { CommandSigner } from '../../simulator/command-signer.ts';
import { defaultBehaviour } from '../../simulator/behaviour.ts';
import { silentLogger } from '../../base/log.ts';
import { systemClock } from '../../base/clock.ts';
import { applyActivation, openCore, type Core } from '../../agent/runtime/core.ts';
import { DEFAULT_FEE_SCHEDULE } from '../../agent/policy/fees.ts';
import { PaymentSocketServer } from '../../agent/runtime/payment-socket.ts';
import { CommandProcessor } from '../../agent/policy/commands.ts';
import {
  generateEd25519,
  rawPublicKey,
  signEd25519,
  verifyEd25519,
} from '../../agent/policy/keys.ts';
import { envInt, rng } from '../fixtures/torture-env.ts';
import {
  mutate,
  randomBytes,
  randomCommand,
  signCommand,
  terminalEnvelopes,
  randomLocalRequest,
  wildString,
} from '../fixtures/fuzz-corpus.ts';
import { FuzzLedger, surface } from '../fixtures/fuzz-harness.ts';
import { fuzzConnections, fuzzUnixSocket } from '../fixtures/fuzz-streams.ts';
import { fuzzAgentChannel } from '../fixtures/fuzz-agent-channel.ts';

const TOTAL = envInt('TORTURE_FUZZ_INPUTS', 100_000);
const SEED = envInt('TORTURE_SEED', 0xf022, 0);
const share = (f: number): number => Math.max(50, Math.round(TOTAL * f));
/** Per surface: generous for CI size, and growing with the input count for large runs. */
const TIMEOUT = 120_000 + TOTAL;

// tmpfs when there is one: every refusal is a synchronous=FULL commit, and fsync on a disk would
// make this a disk benchmark. The files are real SQLite files either way.
const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
let root: string;
const summaries: string[] = [];

beforeAll(() => {
  root = mkdtempSync(path.join(base, 'pa-fuzz-'));
});
afterAll(() => {
  console.log(`fuzz (seed ${SEED}, ${TOTAL} inputs):\n  ${summaries.join('\n  ')}`);
  rmSync(root, { recursive: true, force: true });
});

function activatedCore(name: string, terminalId: string): Core {
  const core = openCore({ dataDir: path.join(root, name), terminalId });
  applyActivation(
    core,
    {
      terminalId,
      merchantId: 'M-FUZZ',
      merchantName: 'Fuzz shop',
      category: 'default',
      currency: 'CNY',
      activatedAt: Date.now(),
    },
    DEFAULT_FEE_SCHEDULE,
    'fuzz',
  );
  return core;
}

const FRAMER: ErrorCode[] = [
  'PROTOCOL_FRAME_TOO_LARGE',
  'PROTOCOL_MALFORMED',
  'PROTOCOL_FRAME_TRUNCATED',
];

describe(`frame and message fuzz (seed ${SEED}, ${TOTAL} inputs)`, () => {
  it(
    'the frame decoder: split anywhere, bad prefixes, garbage',
    async () => {
      const r = rng(SEED + 1);
      const led = new FuzzLedger('framer');
      await surface(summaries, led, () => {
        for (let i = 0; i < share(0.34); i++, led.inputs++) {
          const max = [16, 64, 1024, DEFAULT_MAX_FRAME_BYTES][r.int(0, 3)]!;
          const payloads = Array.from({ length: r.int(0, 4) }, () => {
            const p = randomBytes(r, Math.min(max, 200));
            return p.length ? p : Buffer.from([1]);
          });
          let stream: Buffer = Buffer.concat(payloads.map((p) => encodeFrame(p)));
          const kind = r.int(0, 9);
          if (kind < 4) stream = mutate(r, stream);
          else if (kind === 4) stream = randomBytes(r, 400);
          else if (kind === 5) {
            const bad = Buffer.alloc(4);
            bad.writeUInt32BE([0, max + 1, 0xffff_ffff, 0x8000_0000][r.int(0, 3)]!);
            stream = Buffer.concat([stream, bad, randomBytes(r, 20)]);
          }
          const intact = kind > 5;
          const d = new FrameDecoder(max);
          const got: Buffer[] = [];
          led.timed(() => {
            try {
              for (let at = 0; at < stream.length;) {
                const n = r.chance(0.1) ? 1 : r.int(1, stream.length);
                const chunk = stream.subarray(at, at + n);
                at += n;
                got.push(...d.push(chunk));
                if (d.buffered > 4 + max + chunk.length)
                  led.finding(`buffered ${d.buffered}`, stream);
              }
              if (r.chance(0.7)) d.end();
            } catch (e) {
              if (intact)
                led.finding(`an intact stream was refused: ${(e as Error).message}`, stream);
              else if (led.rejected(e, stream, FRAMER)) {
                // Sticky: a failed stream is never parsed again.
                try {
                  d.push(Buffer.from([0, 0, 0, 1, 7]));
                  led.finding('the decoder took bytes after failing', stream);
                } catch (again) {
                  if (again !== e && again !== d.failure)
                    led.finding('a second, other error', stream);
                }
              }
            }
          });
          if (intact && Buffer.concat(got).compare(Buffer.concat(payloads)) !== 0)
            led.finding('an intact stream came back different', stream);
        }
      });
    },
    TIMEOUT,
  );

  it(
    'decodeEnvelope -> the acquirer simulator handlers, on a real ledger',
    async () => {
      const r = rng(SEED + 2);
      const led = new FuzzLedger('envelope -> simulator');
      const dir = path.join(root, 'acquirer');
      const ledger = AcquirerLedger.open(dir);
      const cn = 'TFUZZ01';
      ledger.registerTerminal({
        terminalId: cn,
        activationCode: 'FUZZ-CODE-1',
        merchantId: 'M',
        merchantName: 'M',
        merchantCategory: 'default',
      });
      const ctx: HandlerContext = {
        ledger,
        signer: CommandSigner.loadOrCreate(dir),
        behaviour: defaultBehaviour(),
        acquirerId: 'FUZZ',
        log: silentLogger(),
        now: () => Date.now(),
        deliverPending: () => 0,
        decideDeactivation: () => {},
        issueRiskFlag: () => {},
        submissionSeen: () => {},
        settled: () => {},
      };
      const corpus = terminalEnvelopes(
        cn,
        'FUZZ-CODE-1',
        rawPublicKey(generateEd25519().publicKey),
      );
      const pick = (): Uint8Array => corpus[r.int(0, corpus.length - 1)]!;
      await surface(summaries, led, () => {
        for (let i = 0; i < share(0.24); i++, led.inputs++) {
          const x = r.next();
          const bytes = x < 0.1 ? randomBytes(r) : x < 0.92 ? mutate(r, pick(), pick()) : pick();
          // Now and then the acquirer itself is in a mood.
          ctx.behaviour.settle = (['approve', 'out-of-balance', 'out-of-balance-once'] as const)[
            r.int(0, 2)
          ]!;
          led.timed(() => {
            let env: pos.v1.Envelope;
            try {
              env = decodeEnvelope(bytes);
            } catch (e) {
              led.rejected(e, bytes, ['PROTOCOL_MALFORMED']);
              return;
            }
            try {
              const res = handleEnvelope(ctx, cn, env);
              if (res.kind === 'reply') {
                // What the simulator would send must itself be a valid envelope.
                encodeEnvelope({ messageId: 'r', terminalId: cn, correlationId: 'c', ...res.body });
                res.then?.();
              }
            } catch (e) {
              led.rejected(e, bytes);
            }
          });
        }
      });
      ledger.close();
    },
    TIMEOUT,
  );

  it(
    'decodeLocalRequest -> PaymentSocketServer.handle, on a real journal',
    async () => {
      const r = rng(SEED + 3);
      const led = new FuzzLedger('local request -> payment socket');
      const core = activatedCore('payments', 'TFUZZ02');
      const server = new PaymentSocketServer({
        payments: core.payments,
        terminal: core.terminal,
        store: core.store,
        log: core.log,
      });
      const seqs: number[] = [1];
      // Every card number sent, in whatever field: wildString() puts one in type, status, ids...
      const pans = new Set<string>([wildString(rng(0)), '4000001234567899']);
      await surface(summaries, led, () => {
        for (let i = 0; i < share(0.16); i++) {
          let bytes: Uint8Array;
          try {
            bytes = encodeLocalRequest(randomLocalRequest(r, `q${i}`, seqs, pans));
          } catch {
            continue; // a value the schema cannot even carry: not an input
          }
          if (r.chance(0.3)) bytes = mutate(r, bytes);
          led.inputs++;
          led.timed(() => {
            let req: pos.v1.LocalRequest;
            try {
              req = decodeLocalRequest(bytes);
            } catch (e) {
              led.rejected(e, bytes, ['PROTOCOL_MALFORMED']);
              return;
            }
            let reply: pos.v1.ILocalReply;
            try {
              reply = server.handle(req);
              encodeLocalReply(reply);
            } catch (e) {
              led.finding(`handle() threw: ${(e as Error).message}`, bytes);
              return;
            }
            if (reply.error) {
              const code = reply.error.code ?? '';
              // handle() maps an internal failure to PROTOCOL_MALFORMED; a decoded request never earns it.
              if (code === 'PROTOCOL_MALFORMED')
                led.finding(`an internal error surfaced: ${reply.error.message}`, bytes);
              else
                led.rejected(new AgentError(code as ErrorCode, reply.error.message ?? ''), bytes);
            } else if (reply.record) seqs.push(Number(reply.record.seq));
          });
        }
      });
      // No card number, whole or as track data, in the journal or its WAL (INVARIANT 5).
      const files = ['journal.db', 'journal.db-wal'].map((f) => path.join(core.config.dataDir, f));
      core.store.checkpoint();
      const text = files
        .filter(existsSync)
        .map((f) => readFileSync(f).toString('latin1'))
        .join('');
      const runs = text.match(/\d{13,}/g) ?? [];
      const leaked = [...pans].filter(
        (p) => /^\d{13,19}$/.test(p) && runs.some((run) => run.includes(p)),
      );
      expect(leaked).toEqual([]);
      expect(seqs.length).toBeGreaterThan(share(0.16) / 40);
      core.close();
    },
    TIMEOUT,
  );

  it(
    'SignedCommand bytes -> CommandProcessor.handle: forged, altered and signed junk',
    async () => {
      const r = rng(SEED + 4);
      const led = new FuzzLedger('signed command -> command processor');
      const acquirer = generateEd25519();
      const terminalKey = generateEd25519().privateKey;
      const terminalId = 'TFUZZ03';
      let core: Core | undefined;
      let processor: CommandProcessor | undefined;
      let applied = 0;
      let generation = 0;
      const fresh = (): CommandProcessor => {
        core?.close();
        core = activatedCore(`commands-${generation++}`, terminalId);
        processor = new CommandProcessor({
          store: core.store,
          clock: systemClock,
          log: core.log,
          config: {
            terminalId,
            risk: { lockSeverity: 5 } as never,
            commands: { expirySkewMs: 30_000, maxLifetimeMs: 24 * 3600_000 },
          },
          terminal: core.terminal,
          clockOffsetMs: () => 0,
          terminalKey: () => terminalKey,
        });
        processor.pinKey(rawPublicKey(acquirer.publicKey));
        return processor;
      };
      const known =
        /^(the command could not be decoded|the counter is not a positive whole number|the nonce is shorter than 8 bytes|unknown lock source|a deactivate command needs a reason|an approved deactivation needs a reason|the command's issue time|the command expires before it was issued)/;
      await surface(summaries, led, () => {
        for (let i = 0; i < share(0.1); i++, led.inputs++) {
          // A fresh terminal now and then, so deactivations and key rotations do not end the run.
          const p = i % 2500 === 0 ? fresh() : processor!;
          const counter = p.lastCounter() + (r.chance(0.9) ? 1 : r.int(0, 3));
          const genuine = signCommand(
            randomCommand(r, terminalId, counter, Date.now()),
            acquirer.privateKey,
          );
          const x = r.next();
          let bytes: Uint8Array;
          if (x < 0.2) bytes = randomBytes(r);
          else if (x < 0.45) bytes = mutate(r, encodeSignedCommand(genuine));
          else if (x < 0.55) {
            // Junk that verifies: the decoder and checks behind the signature see garbage too.
            const junk = mutate(r, genuine.command!);
            bytes = encodeSignedCommand({
              command: junk,
              signature: signEd25519(acquirer.privateKey, junk),
            });
          } else bytes = encodeSignedCommand(genuine);
          led.timed(() => {
            let signed: pos.v1.SignedCommand;
            try {
              signed = decodeSignedCommand(bytes);
            } catch (e) {
              led.rejected(e, bytes, ['PROTOCOL_MALFORMED']);
              return;
            }
            try {
              const out = p.handle(signed);
              const valid = verifyEd25519(
                acquirer.publicKey,
                signed.command ?? new Uint8Array(),
                signed.signature ?? new Uint8Array(),
              );
              if (out.applied && !valid)
                led.finding('a command without a valid signature was applied', bytes);
              if (out.applied) applied++;
              if (out.error) {
                led.rejected(out.error, bytes);
                if (out.error.code === 'COMMAND_MALFORMED' && !known.test(out.error.message))
                  led.finding(`an internal error surfaced: ${out.error.message}`, bytes);
              }
              const body = decodeCommandResultBody(out.result.body!);
              if (body.terminalId !== terminalId || !out.result.signature?.length)
                led.finding("the result is not the terminal's signed answer", bytes);
            } catch (e) {
              led.finding(`handle() threw: ${(e as Error).message}`, bytes);
            }
            // A rotate-key command may pin another key; pin ours back so later commands verify.
            if (!p.pinnedKey()?.equals(acquirer.publicKey))
              p.pinKey(rawPublicKey(acquirer.publicKey));
          });
        }
      });
      core?.close();
      expect(applied).toBeGreaterThan(0);
    },
    TIMEOUT,
  );

  it(
    'FrameConnection fed random chunks',
    async () => {
      const led = new FuzzLedger('frame connection chunks');
      await surface(summaries, led, () => fuzzConnections(rng(SEED + 5), led, share(0.12)));
    },
    TIMEOUT,
  );

  it(
    "the agent's acquirer channel, end to end, against a hostile acquirer",
    async () => {
      const led = new FuzzLedger('agent channel envelopes');
      await surface(summaries, led, () =>
        fuzzAgentChannel(rng(SEED + 6), led, share(0.02), path.join(root, 'agent')),
      );
    },
    TIMEOUT,
  );

  it(
    'the payment-app socket with garbage over a real Unix socket',
    async () => {
      const led = new FuzzLedger('payment socket connections');
      await surface(summaries, led, () =>
        fuzzUnixSocket(rng(SEED + 7), led, share(0.02), path.join(root, 'socket')),
      );
    },
    TIMEOUT,
  );
});
