/**
 * The crash campaign (INVARIANTS 1, 2, 4, 6, 9, 10): a real agent child under mixed load —
 * group-committed sales, refunds, voids, declined and offline sales, retries and online
 * authorisations, a cutover and settlement every 120 ms, and signed commands from the
 * acquirer simulator (remote lock and unlock, fee-schedule updates, settle-now, status), which
 * answers some runs slowly or out of balance (so settlements span kills and detail uploads) — is
 * killed with SIGKILL at random moments (some in start-up, most under load, many in the middle
 * of a settlement) and restarted on the same journal, again and again.
 *
 * After every kill, from the journal file alone: every acknowledged transaction is there with
 * its localId, seq and amount, no localId twice, the hash chain verifies, integrity_check is ok,
 * the lifecycle history only grew and replays through agent/lifecycle.ts, no command counter was
 * used twice, every sale's fee is the schedule in force's, closed batches hold their rows'
 * totals. At the end, everything is settled and the acquirer's ledger shows every closed batch
 * settled exactly once, on totals equal to computeTotals over the terminal's rows.
 *
 * TORTURE_KILLS (default 50) scales it; TORTURE_SEED replays a run.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { Store } from '../../storage/store.ts';
import { loadDriver } from '../../storage/db.ts';
import { openCore } from '../../agent/runtime/core.ts';
import { JournalAuditor, checkLedger } from '../fixtures/journal-audit.ts';
import { LoadProcess } from '../fixtures/load-process.ts';
import { CommandMix, agentConfig, envInt, rng } from '../fixtures/torture-env.ts';
import { activateForTest } from '../fixtures/core.ts';

const KILLS = envInt('TORTURE_KILLS', 50);
const SEED = envInt('TORTURE_SEED', 0xc4a5, 0);
const TERMINAL = 'TKILL01';
const CODE = 'KILL-CODE-1';

let root: string;
let sim: AcquirerSimulator;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'pa-torture-crash-'));
  sim = await AcquirerSimulator.start({ dataDir: path.join(root, 'acquirer') });
  sim.registerTerminal({ terminalId: TERMINAL, activationCode: CODE });
});

afterAll(async () => {
  await sim?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** Waits `ms`, issuing a signed command now and then while the child works. */
async function workFor(ms: number, mix: CommandMix, r: ReturnType<typeof rng>): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    await sleep(Math.min(end - performance.now(), r.int(40, 250)));
    if (performance.now() < end && r.chance(0.5)) mix.issue();
  }
}

/** Where the kill landed, from the child's last words. */
function moment(p: LoadProcess): 'start-up' | 'settlement' | 'load' {
  if (!p.events.some((e) => e.loading === true)) return 'start-up';
  const started = p.events.filter((e) => e.settling === true).length;
  const ended = p.events.filter((e) => 'settled' in e || 'settleFailed' in e).length;
  return started > ended ? 'settlement' : 'load';
}

describe(`crash campaign (${KILLS} kills, seed ${SEED})`, () => {
  it('its checks are not vacuous: a lost row, a changed amount, a broken chain are all named', () => {
    const dataDir = path.join(root, 'self-check');
    const core = openCore({ dataDir });
    activateForTest(core);
    const acks = [1_000, 2_000, 3_000].map((amount, i) => {
      const r = core.payments.record({
        type: 'sale',
        amount,
        card: { pan: '4000001234567899' },
        localId: `s${i}`,
      });
      return { ack: r.seq, localId: r.localId, type: 'sale', amount };
    });
    core.close();
    const file = path.join(dataDir, 'journal.db');
    const auditor = new JournalAuditor();
    expect(auditor.takeAcks('self', acks)).toEqual([]);
    expect(auditor.audit(file, { label: 'clean', full: true, readonly: true })).toEqual([]);
    // An acknowledgement the journal never got, and an attacker's edit of a committed amount.
    auditor.takeAcks('self', [{ ack: 99, localId: 'ghost', type: 'sale', amount: 5 }]);
    const db = new (loadDriver())(file);
    db.exec('DROP TRIGGER journal_immutable_update');
    db.prepare('UPDATE journal SET amount = amount + 1 WHERE local_id = ?').run('s1');
    // ...and puts the guard back, so only the chain can tell.
    db.exec(
      "CREATE TRIGGER journal_immutable_update BEFORE UPDATE ON journal BEGIN SELECT RAISE(ABORT, 'journal rows are immutable'); END",
    );
    db.close();
    const problems = auditor
      .audit(file, { label: 'tampered', full: true, readonly: true })
      .join('\n');
    expect(problems).toMatch(/ghost .* is missing/);
    expect(problems).toMatch(/s1.*is journaled as/);
    expect(problems).toMatch(/chain:/);
    expect(auditor.totals).toMatchObject({ lost: 1, duplicated: 1, chainBreaks: 1 });
  });

  it(
    'loses, duplicates and breaks nothing; settles every batch exactly once',
    async () => {
      const r = rng(SEED);
      const dataDir = path.join(root, TERMINAL);
      const file = path.join(dataDir, 'journal.db');
      const config = agentConfig(sim, TERMINAL, dataDir);
      const auditor = new JournalAuditor();
      const mix = new CommandMix(sim, TERMINAL, r);
      const problems: string[] = [];
      const moments = { 'start-up': 0, settlement: 0, load: 0 };
      const started = performance.now();

      for (let run = 0; run < KILLS && problems.length === 0; run++) {
        // A slow acquirer stretches settlements so more kills land inside them, and an
        // out-of-balance one sends the agent through the detail upload.
        const settle = r.chance(0.6)
          ? 'approve'
          : r.chance(0.6)
            ? 'out-of-balance-once'
            : 'out-of-balance';
        sim.behave({ settle, slowMs: r.chance(0.5) ? 0 : r.int(5, 40) });
        const p = LoadProcess.spawn({
          config,
          run,
          seed: SEED,
          activationCode: CODE,
          settleMs: 120,
        });
        if (run > 0 && r.chance(0.15)) {
          // Start-up: module load, journal open, self-test, Hello, command poll, resumed settlement.
          await workFor(r.int(0, 450), mix, r);
        } else {
          await p.waitFor((e) => e.loading === true, 30_000);
          await workFor(r.int(20, 650), mix, r);
        }
        const exit = await p.kill();
        moments[moment(p)]++;
        if (exit.signal !== 'SIGKILL') {
          problems.push(
            `run ${run} ended by itself (${JSON.stringify(exit)}): ${JSON.stringify(p.events.filter((e) => 'fatal' in e))} ${p.stderr.slice(-500)}`,
          );
        }
        problems.push(...auditor.takeAcks(`run ${run}`, p.events));
        problems.push(
          ...auditor.audit(file, {
            label: `after kill ${run + 1}`,
            full: run % 10 === 9,
            readonly: run % 2 === 0,
          }),
        );
      }
      expect(problems).toEqual([]);

      // The end: no load, unlocked, settle everything, stop cleanly.
      sim.behave({ settle: 'approve', slowMs: 0 });
      if (mix.lockIssued) mix.issue('unlock');
      const last = LoadProcess.spawn({ config, run: KILLS, seed: SEED, idle: true });
      await last.waitFor((e) => e.ready === true, 30_000);
      // Commands queued for the terminal while it was down (a settle-now among them) arrive on
      // its first poll and may start a settlement of their own: everything the acquirer still
      // holds is applied first, so "everything settled" is not judged before one of them lands.
      const owed = Math.max(
        0,
        ...sim.ledger
          .commands(TERMINAL)
          .filter((c) => c.expiresAt > Date.now() + 10_000) // one about to expire may never land
          .map((c) => c.counter),
      );
      await vi.waitFor(
        async () => {
          const s = await last.ask({ op: 'status' }, 'status');
          expect(Number(s.commandCounter)).toBeGreaterThanOrEqual(owed);
        },
        { timeout: 30_000, interval: 100 },
      );
      const settled = await last.ask({ op: 'settle-all', timeoutMs: 60_000 }, 'settledAll', 90_000);
      expect(settled, JSON.stringify(settled)).toMatchObject({ settledAll: true });
      await last.ask({ op: 'stop' }, 'stopped');
      expect((await last.exited).code).toBe(0);
      problems.push(...auditor.takeAcks('final run', last.events));
      problems.push(...auditor.audit(file, { label: 'final', full: true, readonly: false }));
      const ledger = checkLedger(file, sim.ledger, TERMINAL);
      problems.push(...ledger.problems);

      // Rows a kill committed before their acknowledgement reached the pipe (legal, counted).
      const store = Store.open(file, { readonly: true });
      const journaled = store.db
        .prepare("SELECT local_id AS id FROM journal WHERE kind = 'txn' AND local_id LIKE 'r%'")
        .all() as Array<{ id: string }>;
      const applied = store.journal.events('command-applied', 1_000_000).length;
      // Approvals a lock overtook mid-authorisation: journaled with their reversal, together.
      const reversals = (
        store.db.prepare("SELECT count(*) AS n FROM journal WHERE type = 'reversal'").get() as {
          n: number;
        }
      ).n;
      store.close();
      const unheard = journaled.filter((x) => !auditor.acked.has(x.id)).length;

      const t = auditor.totals;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.log(
        `crash: ${KILLS} kills, ${auditor.acked.size} acknowledged, ${t.lost} lost, ${t.duplicated} duplicated, ${t.chainBreaks} chain breaks;` +
          ` ${ledger.batches} batches settled exactly once (${ledger.transactions} txns, ${ledger.resends} resends answered as duplicates);` +
          ` kills in start-up/settlement/load ${moments['start-up']}/${moments.settlement}/${moments.load};` +
          ` ${applied} commands applied of ${JSON.stringify(mix.issued)}, ${reversals} lock-mid-authorisation reversals;` +
          ` ${t.unacknowledged + unheard} rows committed but killed before the ack; seed ${SEED}, ${seconds} s`,
      );
      expect(problems).toEqual([]);
      expect(auditor.acked.size).toBeGreaterThan(KILLS * 5);
      expect(ledger.batches).toBeGreaterThan(0);
    },
    KILLS * 4_000 + 120_000,
  );
});
