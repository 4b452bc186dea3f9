import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { openCore, type Core } from '../../agent/runtime/core.ts';
import { ManualClock } from '../../base/clock.ts';
import { AgentError } from '../../base/errors.ts';
import { SecurityEvents } from '../../agent/policy/security-events.ts';
import { Settlement, type AcquirerLink } from '../../agent/policy/settlement.ts';
import { classifySocketError } from '../../protocol/connection.ts';
import { activateForTest, commandProcessorFor } from '../fixtures/core.ts';
import { generateEd25519, signEd25519 } from '../../agent/policy/keys.ts';
import { encodeCommand, type Envelope, type EnvelopeBody, pos } from '../../protocol/messages.ts';

/**
 * Holes an outside acquirer found, closed: link refusals journaled but rate-limited, a BatchAck
 * without acquirer_totals refused, certificate faults classified as TLS, deactivation reasons.
 */

let dir: string;
let core: Core;
let clock: ManualClock;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'pa-holes-'));
  clock = new ManualClock();
  core = openCore({ dataDir: dir, terminalId: 'T0001' }, { clock });
  activateForTest(core);
});
afterEach(() => {
  core.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('link-level refusals in the journal', () => {
  it('journals up to the quota per window, counts the rest, and journals the count next window', () => {
    const sec = new SecurityEvents(core, { perWindow: 3, windowMs: 60_000 });
    const bad = new AgentError('PROTOCOL_MALFORMED', 'x'.repeat(5_000));
    const written = Array.from({ length: 500 }, () => sec.record('link-refused', bad));
    expect(written.filter(Boolean)).toHaveLength(3);
    expect(sec.pendingSuppressed).toBe(497);
    const rows = core.store.journal.events('link-refused');
    expect(rows).toHaveLength(3);
    expect(rows[0]!.detail).toMatchObject({ code: 'PROTOCOL_MALFORMED' });
    expect(String(rows[0]!.detail.reason).length).toBeLessThanOrEqual(200);
    clock.advance(60_000);
    sec.record('link-refused', new AgentError('PROTOCOL_UNEXPECTED'));
    expect(core.store.journal.events('security-events-suppressed')).toMatchObject([
      { detail: { count: 497 } },
    ]);
    expect(core.store.journal.events('link-refused')).toHaveLength(4);
    expect(core.store.journal.verify().ok).toBe(true);
  });
});

describe('BatchAck and OutOfBalance must carry acquirer_totals', () => {
  function settlementAnswering(answer: (batchId: string, digest: string) => EnvelopeBody) {
    const link: AcquirerLink = {
      isUp: true,
      request: async (body) => {
        const s = body.batchSubmit!;
        return pos.v1.Envelope.create({ ...answer(s.batchId!, s.digest!) }) as Envelope;
      },
    };
    return new Settlement({ store: core.store, clock, log: core.log, config: core.config, link });
  }

  it.each([
    [
      'BatchAck',
      (b: string, d: string) => ({ batchAck: { batchId: b, digest: d, settlementId: 'S1' } }),
    ],
    ['OutOfBalance', (b: string, d: string) => ({ outOfBalance: { batchId: b, digest: d } })],
  ])('a %s without totals is a protocol error; the batch stays sent', async (_name, answer) => {
    core.payments.record({ type: 'sale', amount: 1234, card: { pan: '4111111111111111' } });
    const settlement = settlementAnswering(answer);
    const batch = settlement.cutover({ force: true, reason: 'test' })!;
    const report = await settlement.settleAll();
    expect(report.error).toMatchObject({ code: 'PROTOCOL_MALFORMED' });
    expect(report.error!.message).toMatch(/acquirer_totals/);
    expect(core.store.batches.get(batch.batchId)!.state).toBe('sent');
    expect(core.store.journal.events('batch-acked')).toHaveLength(0);
  });
});

describe('certificate faults are TLS errors', () => {
  it.each([
    'INVALID_PURPOSE',
    'INVALID_CA',
    'PATH_LENGTH_EXCEEDED',
    'CERT_HAS_EXPIRED',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'DEPTH_ZERO_SELF_SIGNED_CERT',
    'ERR_TLS_CERT_ALTNAME_INVALID',
    'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
    'CRL_HAS_EXPIRED',
    'ERROR_IN_CERT_NOT_AFTER_FIELD',
  ])('%s is PROTOCOL_TLS', (code) => {
    const err = Object.assign(new Error('unsuitable certificate purpose'), { code });
    expect(classifySocketError(err)).toMatchObject({
      code: 'PROTOCOL_TLS',
      context: { socketError: code },
    });
  });

  it.each(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'INVALID_PURPOSE_X'])(
    '%s is a network fault',
    (code) => {
      const err = Object.assign(new Error('x'), { code });
      expect(classifySocketError(err).code).toBe('PROTOCOL_DISCONNECTED');
    },
  );
});

describe('a deactivation needs a reason everywhere', () => {
  const acquirer = generateEd25519();
  function deliver(counter: number, body: pos.v1.ICommand) {
    const processor = commandProcessorFor(core, { acquirerPublicKey: acquirer.publicKey });
    const bytes = encodeCommand({
      terminalId: 'T0001',
      counter,
      issuedAtMs: clock.now(),
      expiresAtMs: clock.now() + 60_000,
      nonce: randomBytes(12),
      ...body,
    });
    return processor.handle({ command: bytes, signature: signEd25519(acquirer.privateKey, bytes) });
  }

  it.each([
    ['deactivate, no reason', { deactivate: { violation: true } }],
    ['deactivate, blank', { deactivate: { violation: false, reason: '   ' } }],
    ['approval, two letters', { deactivationDecision: { approve: true, reason: 'ok' } }],
  ])('%s: refused, state kept, counter used, journaled', (_name, body) => {
    const out = deliver(1, body);
    expect(out.applied).toBe(false);
    expect(out.error).toMatchObject({ code: 'COMMAND_MALFORMED' });
    expect(out.error!.message).toMatch(/needs a reason/);
    expect(core.terminal.status().state).toBe('active');
    expect(core.store.journal.events('command-refused').at(-1)!.detail).toMatchObject({
      counter: 1,
      code: 'COMMAND_MALFORMED',
    });
  });

  it('a remote deactivation with a reason is applied', () => {
    const out = deliver(2, { deactivate: { violation: false, reason: 'merchant closed' } });
    expect(out.applied).toBe(true);
    expect(core.terminal.status().state).toBe('deactivation-pending');
  });
});
