/**
 * Durable journal append: rows acknowledged per second through the agent's entry point
 * (`core.payments.record`, durable on return: WAL, synchronous=FULL), one lane and with
 * concurrent lanes on `recordAsync` (group commit), against raw better-sqlite3 inserts into
 * the same journal table (same migration, same indexes) with the same pragmas and one
 * commit per row. Agent and raw windows alternate so drift hits both alike.
 */
import path from 'node:path';
import type { Database, Statement } from 'better-sqlite3';
import { loadDriver } from '../storage/db.ts';
import { migrations } from '../storage/migrations.ts';
import type { Core } from '../agent/runtime/core.ts';
import { openActivatedCore, sale, tempDir, type BenchOptions } from './fixtures.ts';
import type { Figure } from './report.ts';
import { msBetween, nowNs, perSecond, rateFor } from './stats.ts';
import { HeadWitness, readWitness } from '../storage/head-witness.ts';
import { Store } from '../storage/store.ts';

/** A fresh file holding the journal's own table, opened the way the agent opens it. */
function openRawJournal(dir: string): { db: Database; insert: Statement; next: () => number } {
  const Driver = loadDriver();
  const db = new Driver(path.join(dir, 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(migrations[0]!.sql);
  const insert = db.prepare(
    `INSERT INTO journal (seq, kind, created_at, local_id, type, amount, currency, category, fee,
       fee_version, masked_pan, pan_token, status, batch_id, prev_hash, hash)
     VALUES (?, 'txn', ?, ?, 'sale', ?, 'CNY', 'default', ?, 'std-2026.1', '411111******1111', ?,
       'approved', 'B000001-ABCDEF', ?, ?)`,
  );
  let seq = 0;
  return { db, insert, next: () => ++seq };
}

const HEX = 'a'.repeat(64);

/** One raw insert, its own autocommit transaction: one durable commit per row. */
function rawAppend(raw: ReturnType<typeof openRawJournal>): void {
  const seq = raw.next();
  raw.insert.run(seq, Date.now(), `R${seq}`, 1000 + (seq % 5000), 300, HEX, HEX, HEX);
}

/** `lanes` payment apps, each awaiting its own acknowledgement before its next record. */
async function lanesSlice(core: Core, lanes: number, ms: number): Promise<Tally> {
  let stop = false;
  let acks = 0;
  let i = 0;
  const start = nowNs();
  const lane = async (): Promise<void> => {
    while (!stop) {
      await core.payments.recordAsync(sale(i++));
      acks++;
    }
  };
  const running = Array.from({ length: lanes }, lane);
  setTimeout(() => (stop = true), ms);
  await Promise.all(running);
  return { units: acks, ms: msBetween(start) };
}

interface Tally {
  units: number;
  ms: number;
}

const add = (a: Tally, b: Tally): Tally => ({ units: a.units + b.units, ms: a.ms + b.ms });
const rateOf = (t: Tally): number => perSecond(t.units, t.ms);

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const rounds = opts.quick ? 1 : 3;
  // Short slices, raw and agent in turn: the disk's flush time drifts by several times within
  // seconds on a shared machine, and interleaving is what makes the two comparable.
  const slices = opts.quick ? 3 : 8;
  const sliceMs = 250;
  const raw = openRawJournal(tempDir('append-raw'));
  const core = openActivatedCore(tempDir('append-agent'));
  // The storage layer alone, with and without the head witness: what policy adds on top, and
  // what the witness costs in place (after each real commit, not in a loop of its own).
  const floor = storageFloor(tempDir('append-floor'), true);
  const bare = storageFloor(tempDir('append-bare'), false);
  const LANES = [1, 8, 32];
  const rawRates: number[] = [];
  const agentRates = new Map<number, number[]>(LANES.map((l) => [l, []]));
  // CPU time (user + system) per row on one lane: what the agent adds to each commit.
  const cpu = { raw: { units: 0, ms: 0 }, agent: { units: 0, ms: 0 }, floor: { units: 0, ms: 0 } };
  const floorRates: number[] = [];
  const bareRates: number[] = [];
  let witnessUs = 0;
  const cpuMs = (since: NodeJS.CpuUsage): number => {
    const d = process.cpuUsage(since);
    return (d.user + d.system) / 1000;
  };
  try {
    // Warm-up: statements prepared, pages cached, JIT done, on both sides.
    for (let i = 0; i < 200; i++) rawAppend(raw);
    for (let i = 0; i < 200; i++) core.payments.record(sale(i));
    for (let i = 0; i < 200; i++) floor.append();
    for (let i = 0; i < 200; i++) bare.append();
    let n = 0;
    for (let r = 0; r < rounds; r++) {
      let rawTally: Tally = { units: 0, ms: 0 };
      let floorTally: Tally = { units: 0, ms: 0 };
      let bareTally: Tally = { units: 0, ms: 0 };
      const agent = new Map<number, Tally>(LANES.map((l) => [l, { units: 0, ms: 0 }]));
      for (let k = 0; k < slices; k++) {
        let c = process.cpuUsage();
        const x = await rateFor(sliceMs, 1, () => rawAppend(raw));
        cpu.raw = add(cpu.raw, { units: x.units, ms: cpuMs(c) });
        rawTally = add(rawTally, x);
        c = process.cpuUsage();
        const y = await rateFor(sliceMs, 1, () => void core.payments.record(sale(n++)));
        cpu.agent = add(cpu.agent, { units: y.units, ms: cpuMs(c) });
        agent.set(1, add(agent.get(1)!, y));
        c = process.cpuUsage();
        const z = await rateFor(sliceMs, 1, floor.append);
        cpu.floor = add(cpu.floor, { units: z.units, ms: cpuMs(c) });
        floorTally = add(floorTally, z);
        bareTally = add(bareTally, await rateFor(sliceMs, 1, bare.append));
        for (const lanes of [8, 32])
          agent.set(lanes, add(agent.get(lanes)!, await lanesSlice(core, lanes, sliceMs)));
      }
      rawRates.push(rateOf(rawTally));
      floorRates.push(rateOf(floorTally));
      bareRates.push(rateOf(bareTally));
      for (const l of LANES) agentRates.get(l)!.push(rateOf(agent.get(l)!));
      opts.log(
        `  round ${r + 1}/${rounds}: raw ${rawRates.at(-1)!.toFixed(0)} rows/s, agent ` +
          LANES.map((l) => `${l} lane(s) ${agentRates.get(l)!.at(-1)!.toFixed(0)}`).join(', '),
      );
    }
    witnessUs = witnessStepUs(core, tempDir('append-witness'));
  } finally {
    raw.db.close();
    core.close();
    floor.store.close();
    bare.store.close();
  }
  const baselineIs =
    'raw better-sqlite3 INSERT into the same journal table, WAL + synchronous=FULL, one commit per row, same run';
  const target = { on: 'ratio', op: '>=', limit: 1 } as const;
  const figures: Figure[] = [1, 8, 32].map((lanes) => {
    // The disk's flush time moves a lot between windows on a shared machine: report the round
    // whose agent/raw ratio is the median, so value, baseline and ratio come from one round.
    const rates = agentRates.get(lanes)!;
    const mid = medianRound(rates, rawRates);
    const ratios = rates
      .map((v, i) => v / rawRates[i]!)
      .sort((a, b) => a - b)
      .map((x) => x.toFixed(2))
      .join(', ');
    return {
      name:
        lanes === 1
          ? 'journal append, 1 lane (payments.record)'
          : `journal append, ${lanes} lanes (recordAsync group commit)`,
      value: rates[mid]!,
      unit: 'rows/s',
      baseline: rawRates[mid]!,
      baselineIs,
      target,
      note: `${lanes === 1 ? `CPU per row: agent ${((cpu.agent.ms * 1000) / cpu.agent.units).toFixed(0)} µs, raw ${((cpu.raw.ms * 1000) / cpu.raw.units).toFixed(0)} µs; ` : ''}round with the median ratio of ${rounds} (each ${slices} x ${sliceMs} ms slices per side, raw and agent in turn; ratios ${ratios})${lanes > 1 ? '; each lane awaits its own durable ack' : ''}`,
    };
  });
  // What the storage layer alone reaches on one lane: the part of the gap to raw that no
  // policy change can close (chain hash, witness, the full row), measured in the same rounds.
  const mid = medianRound(floorRates, rawRates);
  const perRow = (t: Tally): string => ((t.ms * 1000) / t.units).toFixed(0);
  figures.push({
    name: 'journal append, 1 lane, storage alone (Journal.appendTxn, no policy)',
    value: floorRates[mid]!,
    unit: 'rows/s',
    baseline: rawRates[mid]!,
    baselineIs,
    note: `the agent's own row, chain hash and head witness in a lone commit, without validation, lifecycle, fee or card token; CPU per row ${perRow(cpu.floor)} µs (raw ${perRow(cpu.raw)} µs)`,
  });
  const w = medianRound(floorRates, bareRates);
  figures.push({
    name: 'head witness in place: 1-lane storage append with it, vs without',
    value: floorRates[w]!,
    unit: 'rows/s',
    baseline: bareRates[w]!,
    baselineIs: 'the same storage append on a journal without a head witness, same rounds',
    target: { on: 'ratio', op: '>=', limit: 0.95 },
    note: `issue 11's 5% budget measured on the durable path itself (rounds ${floorRates.map((v, i) => (v / bareRates[i]!).toFixed(2)).join(', ')})`,
  });
  // The witness's share of a 1-lane append: its step after each commit against the whole
  // acknowledged append, both from this run (issue 11's budget: at most 5%).
  const appendUs = 1e6 / figures[0]!.value;
  figures.push({
    name: 'head witness step, share of a 1-lane append',
    value: witnessUs,
    unit: 'µs/row',
    baseline: appendUs,
    baselineIs: 'one durable 1-lane append through payments.record, same run',
    target: { on: 'ratio', op: '<', limit: 0.05 },
    note: 'the step Store runs after each commit: head query + one slot written to the witness file (its fdatasync runs off the event loop once a second)',
  });
  return figures;
}

/** The round whose value/baseline ratio is the median, so both come from the same round. */
function medianRound(values: number[], baselines: number[]): number {
  const order = values
    .map((_, i) => i)
    .sort((a, b) => values[a]! / baselines[a]! - values[b]! / baselines[b]!);
  return order[Math.floor(order.length / 2)]!;
}

/** Appends through the storage layer only: the row the agent writes, with nothing decided. */
function storageFloor(dir: string, witness: boolean): { store: Store; append: () => void } {
  const store = Store.open(path.join(dir, 'journal.db'), {
    ...(witness ? { witnessFile: path.join(dir, 'journal.witness') } : {}),
  });
  const { batchId } = store.atomically(() => store.batches.open(Date.now()));
  let i = 0;
  const append = (): void => {
    i++;
    store.appendAlone(() =>
      store.journal.appendTxn(
        {
          localId: `F${i}`,
          type: 'sale',
          originalSeq: null,
          amount: 1000 + (i % 5000),
          currency: 'CNY',
          category: 'default',
          fee: 300,
          feeVersion: 'std-2026.1',
          maskedPan: '411111******1111',
          panToken: 'a'.repeat(64),
          authCode: null,
          status: 'approved',
          batchId,
        },
        Date.now(),
      ),
    );
  };
  return { store, append };
}

/** Microseconds per witness step, timed on a witness file of its own beside the bench core. */
function witnessStepUs(core: Core, dir: string): number {
  const file = path.join(dir, 'journal.witness');
  const witness = HeadWitness.open(file, readWitness(file));
  const n = 20_000;
  try {
    const t0 = nowNs();
    for (let i = 1; i <= n; i++) {
      const head = core.store.journal.headOf();
      // A new seq each time, as after each commit (the witness skips a head it already holds).
      witness.write({ incarnation: core.store.incarnation, seq: head.seq + i, hash: head.hash });
    }
    return (msBetween(t0, nowNs()) * 1000) / n;
  } finally {
    witness.close();
  }
}
