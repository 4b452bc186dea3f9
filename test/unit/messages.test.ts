import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AgentError, isAgentError } from '../../base/errors.ts';
import {
  bodyKind,
  decodeActivationGrant,
  decodeCommand,
  decodeCommandResultBody,
  decodeEnvelope,
  decodeLocalReply,
  decodeLocalRequest,
  decodeSignedCommand,
  decodeUnlockGrant,
  encodeActivationGrant,
  encodeCommand,
  encodeCommandResultBody,
  encodeEnvelope,
  encodeLocalReply,
  encodeLocalRequest,
  encodeSignedCommand,
  encodeUnlockGrant,
  newMessageId,
} from '../../protocol/messages.ts';

function thrown(fn: () => unknown): AgentError {
  try {
    fn();
  } catch (e) {
    if (e instanceof AgentError) return e;
    throw new Error(`expected an AgentError, got ${String(e)}`);
  }
  throw new Error('expected a throw');
}

const bigMoney = 2 ** 52 + 17; // above 2^32, still a safe integer

describe('envelopes', () => {
  it('round-trips a batch submit with int64 fields as JS numbers', () => {
    const bytes = encodeEnvelope({
      messageId: 'm-1',
      terminalId: 'T1',
      sentAtMs: 1_768_471_200_000,
      batchSubmit: {
        batchId: 'B1',
        digest: 'ab'.repeat(32),
        firstSeq: 1,
        lastSeq: 3,
        totals: {
          byType: [{ type: 'sale', count: 3, amount: bigMoney, fee: 12 }],
          transactionCount: 3,
          netAmount: bigMoney,
          netFee: 12,
          netSettlement: bigMoney - 12,
          currency: 'CNY',
        },
      },
    });
    const env = decodeEnvelope(bytes);
    expect(bodyKind(env)).toBe('batchSubmit');
    expect(env.sentAtMs).toBe(1_768_471_200_000);
    expect(typeof env.sentAtMs).toBe('number');
    const totals = env.batchSubmit?.totals;
    expect(totals?.netAmount).toBe(bigMoney);
    expect(typeof totals?.netAmount).toBe('number');
    expect(totals?.byType?.[0]?.amount).toBe(bigMoney);
    expect(totals?.netSettlement).toBe(bigMoney - 12);
    expect(env.batchSubmit?.lastSeq).toBe(3);
  });

  it('decodes unset int64 fields as the number 0 and negative ones as negative numbers', () => {
    const env = decodeEnvelope(encodeEnvelope({ heartbeatAck: { clientTimeMs: -5 } }));
    expect(env.sentAtMs).toBe(0);
    expect(env.heartbeatAck?.clientTimeMs).toBe(-5);
    expect(env.heartbeatAck?.serverTimeMs).toBe(0);
  });

  it('decodes values beyond 2^53 to numbers that are not safe integers', () => {
    // The wire allows them; the agent's Number.isSafeInteger checks must then refuse them.
    const env = decodeEnvelope(
      encodeEnvelope({ hello: { lastCommandCounter: Number.MAX_SAFE_INTEGER + 2 } }),
    );
    expect(typeof env.hello?.lastCommandCounter).toBe('number');
    expect(Number.isSafeInteger(env.hello?.lastCommandCounter)).toBe(false);
  });

  it('refuses garbage bytes with PROTOCOL_MALFORMED', () => {
    for (const bytes of [
      Buffer.from([0xff, 0xff, 0xff]),
      Buffer.from('definitely not protobuf'),
      Buffer.from([0x0a, 0x05, 0xff, 0xfe, 0xfd, 0xfc, 0xfb]), // invalid UTF-8 in a string
      Buffer.from([0x52, 0x7f]), // a length running past the end
    ]) {
      const err = thrown(() => decodeEnvelope(bytes));
      expect(err.code).toBe('PROTOCOL_MALFORMED');
      expect(err.cause).toBeDefined();
    }
  });

  it('refuses an envelope with no body', () => {
    const err = thrown(() => decodeEnvelope(encodeEnvelope({ messageId: 'x' })));
    expect(err.code).toBe('PROTOCOL_MALFORMED');
    expect(thrown(() => decodeEnvelope(new Uint8Array(0))).code).toBe('PROTOCOL_MALFORMED');
  });

  it('refuses to encode two bodies or wrongly typed fields', () => {
    expect(thrown(() => encodeEnvelope({ hello: {}, heartbeat: {} })).code).toBe(
      'PROTOCOL_MALFORMED',
    );
    expect(thrown(() => encodeEnvelope({ sentAtMs: 1.5, hello: {} })).code).toBe(
      'PROTOCOL_MALFORMED',
    );
  });

  it('throws only AgentErrors on thousands of random inputs', () => {
    for (let i = 0; i < 3000; i++) {
      const bytes = randomBytes(i % 200);
      try {
        decodeEnvelope(bytes);
        decodeLocalRequest(bytes);
      } catch (e) {
        if (!isAgentError(e, 'PROTOCOL_MALFORMED')) throw e;
      }
    }
  });

  it('makes distinct message ids', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newMessageId()));
    expect(ids.size).toBe(1000);
  });
});

describe('local socket messages', () => {
  it('round-trips a record request and reply', () => {
    const req = decodeLocalRequest(
      encodeLocalRequest({
        requestId: 'r1',
        record: { type: 'sale', amount: 1234, currency: 'CNY', card: { pan: '4111111111111111' } },
      }),
    );
    expect(req.body).toBe('record');
    expect(req.record?.amount).toBe(1234);
    const reply = decodeLocalReply(
      encodeLocalReply({
        requestId: 'r1',
        record: { seq: 7, fee: 6, maskedPan: '411111******1111' },
      }),
    );
    expect(reply.body).toBe('record');
    expect(reply.record?.seq).toBe(7);
  });

  it('refuses a local request or reply with no body', () => {
    expect(thrown(() => decodeLocalRequest(encodeLocalRequest({ requestId: 'r' }))).code).toBe(
      'PROTOCOL_MALFORMED',
    );
    expect(thrown(() => decodeLocalReply(encodeLocalReply({ requestId: 'r' }))).code).toBe(
      'PROTOCOL_MALFORMED',
    );
  });
});

describe('signed payloads', () => {
  it('round-trips a command, keeping the exact bytes decodable', () => {
    const bytes = encodeCommand({
      terminalId: 'T1',
      counter: 42,
      issuedAtMs: 1_768_471_200_000,
      expiresAtMs: 1_768_471_500_000,
      nonce: Buffer.from('nonce'),
      lock: { reason: 'audit' },
    });
    const cmd = decodeCommand(bytes);
    expect(cmd.body).toBe('lock');
    expect(cmd.counter).toBe(42);
    expect(cmd.expiresAtMs).toBe(1_768_471_500_000);
    expect(Buffer.from(encodeCommand(cmd)).equals(Buffer.from(bytes))).toBe(true);

    const signed = decodeSignedCommand(
      encodeSignedCommand({ command: bytes, signature: randomBytes(64) }),
    );
    expect(Buffer.from(signed.command).equals(Buffer.from(bytes))).toBe(true);
    expect(signed.signature).toHaveLength(64);
  });

  it('round-trips command results, activation grants and unlock grants', () => {
    const result = decodeCommandResultBody(
      encodeCommandResultBody({
        terminalId: 'T1',
        counter: 3,
        outcome: 'applied',
        locks: ['risk'],
        atMs: 9,
      }),
    );
    expect(result.locks).toEqual(['risk']);
    expect(result.atMs).toBe(9);
    const grant = decodeActivationGrant(
      encodeActivationGrant({
        terminalId: 'T1',
        merchantId: 'M1',
        commandPublicKey: randomBytes(32),
        feeSchedule: {
          version: 'v1',
          rules: [{ category: '5411', rateBp: 38, fixed: 0, cap: 2000 }],
        },
        issuedAtMs: 5,
      }),
    );
    expect(grant.feeSchedule?.rules?.[0]?.cap).toBe(2000);
    expect(grant.commandPublicKey).toHaveLength(32);
    const unlock = decodeUnlockGrant(
      encodeUnlockGrant({ terminalId: 'T1', challenge: 'c', expiresAtMs: 10, source: 'risk' }),
    );
    expect(unlock.source).toBe('risk');
    expect(unlock.expiresAtMs).toBe(10);
  });

  it('turns decode failures into PROTOCOL_MALFORMED', () => {
    const garbage = Buffer.from([0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    for (const decode of [
      decodeCommand,
      decodeSignedCommand,
      decodeCommandResultBody,
      decodeActivationGrant,
      decodeUnlockGrant,
    ]) {
      expect(thrown(() => decode(garbage)).code).toBe('PROTOCOL_MALFORMED');
    }
  });
});
