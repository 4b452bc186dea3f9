import { describe, expect, it, afterAll } from 'vitest';
import {
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
  closeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  HeadWitness,
  judgeWitness,
  readWitness,
  type JournalFacts,
  type WitnessRead,
} from '../../storage/head-witness.ts';
import { GENESIS_HASH } from '../../storage/journal.ts';

/**
 * The head witness file (two checksummed slots written in turn) and the judgement of a
 * journal against it: first run, upgrade, current, and every kind of rollback.
 */

const dir = mkdtempSync(path.join(tmpdir(), 'pa-witness-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = () => path.join(dir, `w${++n}`);
const H = (c: string) => c.repeat(64);

function facts(o: Partial<JournalFacts> & { rows?: Record<number, string> } = {}): JournalFacts {
  const rows = o.rows ?? {};
  return {
    hasRows: o.hasRows ?? Object.keys(rows).length > 0,
    incarnation: o.incarnation ?? 'INC1',
    witnessed: o.witnessed ?? true,
    head: o.head ?? { seq: 0, hash: GENESIS_HASH },
    hashAt: (seq) => rows[seq],
  };
}

describe('the witness file', () => {
  it('keeps the newest record across reopen, in alternating slots', () => {
    const f = file();
    const w = HeadWitness.open(f, readWitness(f));
    for (let seq = 1; seq <= 5; seq++) w.write({ incarnation: 'INC1', seq, hash: H(String(seq)) });
    w.close();
    expect(readWitness(f)).toMatchObject({ state: 'ok', record: { seq: 5, hash: H('5') } });
    const again = HeadWitness.open(f, readWitness(f));
    again.writeDurably({ incarnation: 'INC1', seq: 6, hash: H('6') });
    again.close();
    expect(readWitness(f)).toMatchObject({ state: 'ok', record: { seq: 6 } });
  });

  it('a torn write spoils one slot: the other, older record is read', () => {
    const f = file();
    const w = HeadWitness.open(f, readWitness(f));
    w.write({ incarnation: 'INC1', seq: 7, hash: H('7') });
    w.write({ incarnation: 'INC1', seq: 8, hash: H('8') });
    w.close();
    const r = readWitness(f) as Extract<WitnessRead, { state: 'ok' }>;
    // Damage the slot that holds seq 8 (the newest generation).
    const fd = openSync(f, 'r+');
    writeSync(fd, Buffer.from('garbage'), 0, 7, (r.gen % 2) * 512 + 40);
    closeSync(fd);
    expect(readWitness(f)).toMatchObject({ state: 'ok', record: { seq: 7 } });
  });

  it('both slots spoiled, or junk: damaged; no file: absent', () => {
    const f = file();
    writeFileSync(f, 'not a witness at all');
    expect(readWitness(f).state).toBe('damaged');
    expect(readWitness(path.join(dir, 'none')).state).toBe('absent');
    const g = file();
    const w = HeadWitness.open(g, readWitness(g));
    w.write({ incarnation: 'INC1', seq: 1, hash: H('1') });
    w.close();
    const { gen } = readWitness(g) as Extract<WitnessRead, { state: 'ok' }>;
    const bytes = readFileSync(g);
    const at = (gen % 2) * 512 + 30; // the only record written: its slot spoiled
    bytes[at] = bytes[at]! ^ 1;
    writeFileSync(g, bytes);
    expect(readWitness(g).state).toBe('damaged');
  });
});

describe('judging a journal against its witness', () => {
  const ok = (
    seq: number,
    hash: string,
    hold?: { source: string; reason: string; at: number },
  ): WitnessRead => ({
    state: 'ok',
    gen: 1,
    record: { incarnation: 'INC1', seq, hash, ...(hold ? { hold } : {}) },
  });

  it('first run, upgrade, current', () => {
    expect(judgeWitness({ state: 'absent' }, facts({ hasRows: false }))).toEqual({
      ok: true,
      kind: 'first-run',
    });
    expect(
      judgeWitness(
        { state: 'absent' },
        facts({ rows: { 3: H('3') }, witnessed: false, head: { seq: 3, hash: H('3') } }),
      ),
    ).toEqual({ ok: true, kind: 'upgrade' });
    // The witness may lag the journal (a power cut): not an alarm.
    expect(
      judgeWitness(
        ok(3, H('3')),
        facts({ rows: { 3: H('3'), 9: H('9') }, head: { seq: 9, hash: H('9') } }),
      ),
    ).toEqual({ ok: true, kind: 'current' });
  });

  it('every rollback is named', () => {
    const cases: Array<[WitnessRead, JournalFacts, RegExp]> = [
      [
        { state: 'absent' },
        facts({ rows: { 3: H('3') }, head: { seq: 3, hash: H('3') } }),
        /witness is missing/,
      ],
      [{ state: 'damaged', detail: 'x' }, facts(), /witness is damaged/],
      [ok(5, H('5')), facts({ hasRows: false }), /empty or missing/],
      [
        ok(5, H('5')),
        facts({ rows: { 3: H('3') }, head: { seq: 3, hash: H('3') } }),
        /ends at row 3, behind row 5/,
      ],
      [
        ok(5, H('5')),
        facts({ rows: { 5: H('a') }, head: { seq: 5, hash: H('a') } }),
        /row 5 is not the one/,
      ],
      [
        ok(5, H('5')),
        facts({ incarnation: 'OTHER', rows: { 5: H('5') }, head: { seq: 5, hash: H('5') } }),
        /was replaced/,
      ],
      [
        ok(5, H('5'), { source: 'the acquirer', reason: 'behind row 9', at: 1 }),
        facts({ rows: { 5: H('5') }, head: { seq: 5, hash: H('5') } }),
        /behind row 9 \(reported by the acquirer\)/,
      ],
    ];
    for (const [w, j, why] of cases) {
      const v = judgeWitness(w, j);
      expect(v.ok).toBe(false);
      if (!v.ok) expect(v.reason).toMatch(why);
    }
  });
});
