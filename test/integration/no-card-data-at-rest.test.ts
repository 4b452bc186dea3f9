import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { applyActivation, journalPath, openCore } from '../../agent/runtime/core.ts';
import { createLogger } from '../../base/log.ts';
import { DEFAULT_FEE_SCHEDULE } from '../../agent/policy/fees.ts';
import { AgentError } from '../../base/errors.ts';
import type { RecordInput } from '../../agent/policy/payments.ts';
import { luhnCheckDigit } from '../../simulator/card-sim.ts';

/**
 * INVARIANT 5 checked on the raw bytes: after real sales, refunds, voids and refused
 * attempts carrying CVV, track 2 and PIN data, no file the agent wrote (journal, its WAL
 * taken while the agent was still running, the log) holds the full PAN in any obvious
 * encoding, the CVV, the track data or the PIN block. The masked PAN must be found, which
 * proves the scan reads the files the agent actually wrote.
 */

/** Completes `body` with its Luhn check digit (the card simulator's, not the code under test). */
const withCheckDigit = (body: string): string => body + String(luhnCheckDigit(body));

const PAN = '4111111111111111';
const PAN_B = withCheckDigit('622848040256489'); // 16 digits, distinctive middle
const CVV = '739';
const DISCRETIONARY = '29121015432112345678';
const TRACK2 = `${PAN}=${DISCRETIONARY}`;
const TRACK2_B = `;${PAN_B}D${DISCRETIONARY}?`;
const PIN_BLOCK = '0412AC89ABCDEF67';

function mask(pan: string): string {
  return pan.slice(0, 6) + '*'.repeat(pan.length - 10) + pan.slice(-4);
}

/** Every encoding of a PAN we refuse to find. */
function panNeedles(pan: string): Array<[string, Buffer]> {
  const spaced = pan.replace(/(\d{4})(?=\d)/g, '$1 ');
  const dashed = pan.replace(/(\d{4})(?=\d)/g, '$1-');
  const utf16be = Buffer.from(pan, 'utf16le').swap16();
  return [
    [`${pan} ascii`, Buffer.from(pan)],
    [`${pan} utf-16le`, Buffer.from(pan, 'utf16le')],
    [`${pan} utf-16be`, utf16be],
    [`${pan} with spaces`, Buffer.from(spaced)],
    [`${pan} with dashes`, Buffer.from(dashed)],
    [`${pan} spaced utf-16le`, Buffer.from(spaced, 'utf16le')],
    [`${pan} packed BCD`, Buffer.from(pan.length % 2 ? pan + 'f' : pan, 'hex')],
  ];
}

const NEEDLES: Array<[string, Buffer]> = [
  ...panNeedles(PAN),
  ...panNeedles(PAN_B),
  ['track 2 discretionary data', Buffer.from(DISCRETIONARY)],
  ['track 2 discretionary data utf-16le', Buffer.from(DISCRETIONARY, 'utf16le')],
  ['PIN block (text)', Buffer.from(PIN_BLOCK)],
  ['PIN block (text, lower case)', Buffer.from(PIN_BLOCK.toLowerCase())],
  ['PIN block (bytes)', Buffer.from(PIN_BLOCK, 'hex')],
];

/**
 * A CVV is three digits, which random hashes and binary integers contain by chance; what
 * would betray a stored CVV is the value standing alone, not inside a run of hex digits.
 */
const CVV_ALONE = new RegExp(`(?<![0-9A-Fa-f])${CVV}(?![0-9A-Fa-f])`);

function findings(name: string, bytes: Buffer): string[] {
  const found: string[] = [];
  for (const [what, needle] of NEEDLES) {
    const at = bytes.indexOf(needle);
    if (at >= 0) found.push(`${name}: ${what} at byte ${at}`);
  }
  const text = bytes.toString('latin1');
  const m = CVV_ALONE.exec(text);
  if (m)
    found.push(
      `${name}: CVV at byte ${m.index}: ${JSON.stringify(text.slice(m.index - 20, m.index + 20))}`,
    );
  return found;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => path.join(dir, f))
    .filter((f) => statSync(f).isFile());
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('no sensitive card data at rest', () => {
  it('journal, WAL and log hold the masked PAN and never the PAN, CVV, track or PIN data', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pos-pci-'));
    dirs.push(dir);
    const logFile = path.join(dir, 'agent.log');
    const log = createLogger({ level: 'trace' }, pino.destination({ dest: logFile, sync: true }));
    const core = openCore({ dataDir: dir }, { log });
    applyActivation(
      core,
      {
        terminalId: 'T0001',
        merchantId: 'M-PCI',
        merchantName: 'PCI Shop',
        category: 'catering',
        currency: 'CNY',
        activatedAt: 0,
      },
      DEFAULT_FEE_SCHEDULE,
      'test',
    );

    // Real money movements with both cards, in several spellings.
    const s1 = core.payments.record({
      type: 'sale',
      amount: 120_000,
      card: { pan: PAN },
      localId: 'P-1',
    });
    const s2 = core.payments.record({
      type: 'sale',
      amount: 64_000,
      card: { pan: '4111 1111 1111 1111' },
    });
    const s3 = core.payments.record({ type: 'sale', amount: 88_800, card: { pan: PAN_B } });
    const s4 = core.payments.record({
      type: 'sale',
      amount: 5_000,
      card: { pan: PAN_B },
      status: 'declined',
    });
    core.payments.record({
      type: 'sale',
      amount: 9_000,
      card: { pan: PAN },
      status: 'pending-offline',
    });
    core.payments.record({ type: 'refund', amount: 20_000, originalSeq: s1.seq });
    core.payments.record({
      type: 'refund',
      amount: 1_000,
      originalSeq: s3.seq,
      card: { pan: PAN_B },
    });
    core.payments.record({ type: 'void', amount: 64_000, originalSeq: s2.seq });
    await core.payments.authorize(
      { type: 'sale', amount: 33_000, card: { pan: PAN_B } },
      async () => ({ approved: true, authCode: 'OK42' }),
    );
    expect(s4.fee).toBe(0);

    // Attempts carrying sensitive data: each refused, each leaving a record.
    const attempts: RecordInput[] = [
      { type: 'sale', amount: 10_000, card: { pan: PAN, cvv: CVV } },
      { type: 'sale', amount: 10_000, card: { pan: PAN, track2: TRACK2 } },
      {
        type: 'sale',
        amount: 10_000,
        card: { pan: PAN_B, cvv: CVV, track2: TRACK2_B, pinBlock: PIN_BLOCK },
      },
      { type: 'sale', amount: 10_000, card: { pan: TRACK2 } },
      { type: 'sale', amount: 10_000, card: { pan: TRACK2_B } },
      { type: 'sale', amount: 10_000, card: { pan: PAN, pinBlock: Buffer.from(PIN_BLOCK, 'hex') } },
      { type: 'refund', amount: 100, originalSeq: s1.seq, card: { pan: PAN, cvv: CVV } },
    ];
    for (const a of attempts) {
      expect(() => core.payments.record(a)).toThrow(AgentError);
    }
    await expect(
      core.payments.authorize(
        { type: 'sale', amount: 10_000, card: { pan: PAN, cvv: CVV } },
        async () => ({ approved: true }),
      ),
    ).rejects.toMatchObject({ code: 'CARD_SENSITIVE_DATA' });
    // A valid card refused for another reason after masking: the error path must not carry the PAN either.
    core.terminal.apply(
      { type: 'lock', source: 'technician', by: 'technician' },
      'visit',
      'console:t1',
    );
    expect(() =>
      core.payments.record({ type: 'sale', amount: 10_000, card: { pan: PAN } }),
    ).toThrow(AgentError);
    // A careless caller logging the card through the agent's logger is redacted.
    core.log.warn(
      { card: { pan: PAN, cvv: CVV }, track2: TRACK2, pinBlock: PIN_BLOCK },
      'payment app sent this',
    );

    const refused = core.store.journal.events('txn-refused');
    expect(refused.map((e) => e.detail.code)).toEqual([
      'CARD_SENSITIVE_DATA',
      'CARD_SENSITIVE_DATA',
      'CARD_SENSITIVE_DATA',
      'CARD_INVALID_PAN',
      'CARD_INVALID_PAN',
      'CARD_SENSITIVE_DATA',
      'CARD_SENSITIVE_DATA',
      'CARD_SENSITIVE_DATA',
      'LIFECYCLE_LOCKED',
    ]);

    // The WAL, taken while the agent still runs: it must hold the recent rows.
    const file = journalPath(core.config);
    const wal = readFileSync(file + '-wal');
    const shm = existsSync(file + '-shm') ? readFileSync(file + '-shm') : Buffer.alloc(0);
    const liveDb = readFileSync(file);
    expect(wal.length).toBeGreaterThan(4096);
    expect(wal.includes(Buffer.from(mask(PAN)))).toBe(true);
    expect(wal.includes(Buffer.from(mask(PAN_B)))).toBe(true);
    core.close();

    const db = readFileSync(file);
    const logBytes = readFileSync(logFile);
    expect(db.includes(Buffer.from(mask(PAN)))).toBe(true);
    expect(db.includes(Buffer.from(mask(PAN_B)))).toBe(true);
    const logText = logBytes.toString('utf8');
    expect(logText).toContain('txn-refused');
    expect(logText).toContain('CARD_SENSITIVE_DATA');
    expect(logText).toContain('payment app sent this');
    expect(logText).toContain('[redacted]');

    const found = [
      ...findings('journal.db-wal (live)', wal),
      ...findings('journal.db-shm (live)', shm),
      ...findings('journal.db (live)', liveDb),
      ...findings('journal.db', db),
      ...findings('agent.log', logBytes),
      // and anything else left in the data directory
      ...filesUnder(dir)
        .filter((f) => f !== file && f !== logFile)
        .flatMap((f) => findings(path.relative(dir, f), readFileSync(f))),
    ];
    expect(found).toEqual([]);
  });

  it('the scan itself finds planted data (it is not blind)', () => {
    const planted = Buffer.concat([
      Buffer.from('xx'),
      Buffer.from(PAN_B, 'utf16le'),
      Buffer.from(` "cvv":"${CVV}" `),
      Buffer.from(PAN.replace(/(\d{4})(?=\d)/g, '$1 ')),
      Buffer.from(PIN_BLOCK, 'hex'),
    ]);
    const f = findings('planted', planted);
    expect(f.some((x) => x.includes(`${PAN_B} utf-16le`))).toBe(true);
    expect(f.some((x) => x.includes('CVV'))).toBe(true);
    expect(f.some((x) => x.includes(`${PAN} with spaces`))).toBe(true);
    expect(f.some((x) => x.includes('PIN block (bytes)'))).toBe(true);
    // and a CVV-like run inside a hex hash is not a finding
    expect(findings('hash', Buffer.from(`"hash":"ab${CVV}cd01"`))).toEqual([]);
  });
});
