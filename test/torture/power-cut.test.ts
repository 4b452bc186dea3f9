/**
 * Power cuts (INVARIANTS 1, 2, 9, 10), not only SIGKILLs. A SIGKILL keeps the page cache, so a
 * missing fsync or directory fsync never shows in the crash campaign. Here the agent child runs
 * under an LD_PRELOAD shim (test/fixtures/powercut/powercut.c) that keeps the durable image of
 * the terminal's disk in the most pessimistic POSIX model (bytes durable only at their file's
 * fsync, names only at their directory's fsync); a cut is a SIGKILL followed by replacing the
 * disk with that image. The acquirer simulator, in this process, keeps its power.
 *
 * After every cut, from the files alone: every acknowledged transaction is there (the journal
 * audit of the crash campaign: chain, pages, lifecycle, fees, batch totals); the head witness may
 * lag the journal but never leads it (a restart would accept the journal: no false alarm); the
 * key files, once used, are still there and unchanged. Every restart must come up and go on
 * (no fatal, no journal-rollback or journal-broken lock, no frozen journal). At the end every batch is settled exactly once in the ledger.
 *
 * POWERCUT_CUTS (default 6) scales it; POWERCUT_SEED replays a run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { loadDriver } from '../../storage/db.ts';
import { Store } from '../../storage/store.ts';
import { openCore } from '../../agent/runtime/core.ts';
import { activateForTest } from '../fixtures/core.ts';
import { JournalAuditor, checkLedger } from '../fixtures/journal-audit.ts';
import { sha } from '../fixtures/journal-faults.ts';
import type { LoadProcess } from '../fixtures/load-process.ts';
import { CommandMix, agentConfig, envInt, rng, type Rng } from '../fixtures/torture-env.ts';
import { buildShim, materialize, readImage, shimEnv } from '../fixtures/powercut/image.ts';
import { KEY_FILES, PowerCutTerminal, type KeyFile } from '../fixtures/powercut/rig.ts';

const CUTS = envInt('POWERCUT_CUTS', 6);
const SEED = envInt('POWERCUT_SEED', 0x90c7, 0);

let root: string;
let sim: AcquirerSimulator;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'pa-powercut-'));
  sim = await AcquirerSimulator.start({ dataDir: path.join(root, 'acquirer') });
});

afterAll(async () => {
  await sim?.stop();
  if (!process.env.POWERCUT_KEEP) rmSync(root, { recursive: true, force: true });
  else console.log(root);
});

/** Waits `ms`, the acquirer pushing a signed command now and then (as in the crash campaign). */
async function workFor(ms: number, mix: CommandMix, r: Rng): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    await sleep(Math.min(end - performance.now(), r.int(40, 250)));
    if (performance.now() < end && r.chance(0.5)) mix.issue();
  }
}

/** What the run's events say was used: a key that signed or tokenized something acknowledged. */
function used(p: LoadProcess): Set<KeyFile> {
  const out = new Set<KeyFile>();
  if (p.events.some((e) => e.activated === true)) out.add('keys/terminal-ed25519.pem');
  if (p.events.some((e) => typeof e.ack === 'number' && e.type === 'sale' && !e.dup))
    out.add('keys/token.key');
  return out;
}

/**
 * A terminal whose journal was rolled back (two lives, then the first one's journal put back:
 * the witness sees it), with the acquirer's recovery grant for it.
 */
async function rolledBack(terminalId: string, code: string) {
  sim.registerTerminal({ terminalId, activationCode: code });
  const term = new PowerCutTerminal(path.join(root, terminalId));
  const config = agentConfig(sim, terminalId, term.dataDir);
  const life = async (run: number): Promise<void> => {
    const p = term.spawn({ config, run, seed: SEED, activationCode: code, settleMs: 0 });
    await p.waitFor((e) => e.loading === true, 30_000);
    await sleep(200);
    await p.ask({ op: 'stop' }, 'stopped');
    expect((await p.exited).code).toBe(0);
  };
  await life(0);
  const older = path.join(root, `${terminalId}-older.db`);
  cpSync(term.journal, older);
  await life(1);
  cpSync(older, term.journal);
  expect(Store.judge(term.journal, term.witness)).toMatchObject({ ok: false });
  const grant = path.join(root, `${terminalId}-grant.json`);
  writeFileSync(grant, sim.signRecoveryGrant(terminalId));
  return { term, config, oldSha: sha(term.journal), grant };
}

describe(`power cuts (${CUTS} cuts, seed ${SEED})`, () => {
  it('the shim keeps only what was made durable (the model is not vacuous)', async () => {
    const disk = path.join(root, 'probe-disk');
    mkdirSync(disk);
    const dir = path.join(root, 'probe-shim');
    mkdirSync(dir);
    const log = path.join(root, 'probe.log');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(import.meta.dirname, '../fixtures/powercut/probe-child.ts'),
        disk,
      ],
      { env: { ...process.env, ...shimEnv(buildShim(dir), disk, log) }, stdio: 'pipe' },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    for (let i = 0; i < 300 && !out.includes('ready'); i++) await sleep(50);
    expect(out, err).toContain('ready');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    const image = readImage(log);
    const after = path.join(root, 'probe-after');
    materialize(image, after);
    const read = (f: string): string => readFileSync(path.join(after, f), 'utf8');
    expect(read('no-fsync')).toBe('');
    expect(read('kept')).toBe('old');
    expect(read('renamed')).toBe('new');
    expect(existsSync(path.join(after, 'renamed.tmp'))).toBe(false);
    expect(readdirSync(path.join(after, 'sub'))).toEqual([]);
    expect(read('async')).toBe('async bytes');
    expect(existsSync(path.join(after, 'unnamed'))).toBe(false);
    const db = new (loadDriver())(path.join(after, 'probe.db'), { readonly: true });
    expect(db.prepare('SELECT v FROM t').all()).toEqual([{ v: 'committed' }]);
    db.close();
    // ...while the live directory (what a SIGKILL leaves) still had all of it.
    expect(readFileSync(path.join(disk, 'kept'), 'utf8')).toBe('NEW');
    expect(readFileSync(path.join(disk, 'unnamed'), 'utf8')).toBe('x');
  });

  it('a disk that lies about the WAL fsync loses acknowledged rows: named, and the restart refuses', async () => {
    const terminalId = 'TCUTLIE';
    const code = 'CUT-LIE-1';
    sim.registerTerminal({ terminalId, activationCode: code });
    sim.behave({ settle: 'approve', slowMs: 0 });
    const term = new PowerCutTerminal(path.join(root, terminalId));
    const config = agentConfig(sim, terminalId, term.dataDir);
    const auditor = new JournalAuditor();
    const honest = term.spawn({ config, run: 0, seed: SEED, activationCode: code, settleMs: 0 });
    await honest.waitFor((e) => e.loading === true, 30_000);
    await sleep(200);
    await term.cut(honest);
    expect(auditor.takeAcks('honest', honest.events)).toEqual([]);
    expect(auditor.audit(term.journal, { label: 'honest', full: true, readonly: true })).toEqual(
      [],
    );

    // The same agent on a disk that acknowledges the WAL's fsyncs and keeps nothing of them;
    // long enough for the witness's background fdatasync (every second) to pass lost rows.
    const liar = term.spawn({ config, run: 1, seed: SEED, settleMs: 0 }, 'journal.db-wal');
    await liar.waitFor((e) => e.loading === true, 30_000);
    await sleep(2_500);
    await term.cut(liar);
    expect(auditor.takeAcks('lying', liar.events)).toEqual([]);
    const lost = auditor.audit(term.journal, { label: 'lying', full: true, readonly: true });
    expect(lost.join('\n')).toMatch(/acknowledged r1-\d+ \(seq \d+\) is missing/);
    expect(term.witnessProblems('lying').join('\n')).toMatch(/behind row \d+ that the witness saw/);

    // The restart sees it and takes nothing: the journal is kept as evidence, not written on.
    const after = term.spawn({ config, run: 2, seed: SEED, settleMs: 0 });
    await after.waitFor((e) => typeof e.refused === 'string', 30_000);
    await sleep(300);
    expect(after.acks()).toEqual([]);
    after.send({ op: 'status' });
    const { status } = (await after.waitFor((e) => 'head' in e, 30_000)) as {
      status: { locks: string[] };
    };
    expect(status.locks).toContain('journal-rollback');
    await after.kill();
  });

  it('a cut in the very first start (not yet activated) raises no false alarm', async () => {
    const terminalId = 'TCUT00';
    const term = new PowerCutTerminal(path.join(root, terminalId));
    const config = agentConfig(sim, terminalId, term.dataDir);
    // Not activated: every sale is refused, and every refusal is journaled (durably).
    const p = term.spawn({ config, run: 0, seed: SEED, settleMs: 0 });
    await p.waitFor((e) => typeof e.refused === 'string', 30_000);
    await term.cut(p);
    // The journal's rows and its "a witness is kept" mark are durable: the witness must be too.
    expect(existsSync(term.journal)).toBe(true);
    expect(term.witnessProblems('first start')).toEqual([]);
    const again = term.spawn({ config, run: 1, seed: SEED, idle: true });
    const ready = await again.waitFor((e) => e.ready === true, 30_000);
    expect(ready.state).toBe('unactivated');
    const status = await again.ask({ op: 'status' }, 'status');
    expect(JSON.stringify(status)).not.toMatch(/rollback|frozen/i);
    await again.ask({ op: 'stop' }, 'stopped');
    expect((await again.exited).code).toBe(0);
  });

  it('a data directory made before the agent (systemd StateDirectory=, a plain mkdir) outlives a cut', async () => {
    const terminalId = 'TCUTSD';
    const term = new PowerCutTerminal(path.join(root, terminalId));
    const config = agentConfig(sim, terminalId, term.dataDir);
    // Not activated: every sale is refused, and every refusal is journaled durably.
    const p = term.spawn({ config, run: 0, seed: SEED, settleMs: 0, makeDataDir: true });
    await p.waitFor((e) => typeof e.refused === 'string', 30_000);
    await term.cut(p);
    expect(existsSync(term.journal), 'the data directory and its journal after the cut').toBe(true);
    expect(term.witnessProblems('made by systemd')).toEqual([]);
  });

  it('a cut just after the first start that keeps a witness (an upgrade) raises no false alarm', async () => {
    const terminalId = 'TCUTUP';
    const term = new PowerCutTerminal(path.join(root, terminalId));
    const config = agentConfig(sim, terminalId, term.dataDir);
    // A journal from before head witnesses: rows, no witness, no mark that one was kept.
    const core = openCore(config);
    activateForTest(core);
    core.payments.record({ type: 'sale', amount: 1_000, card: { pan: '4000001234567899' } });
    core.close();
    rmSync(term.witness);
    const db = new (loadDriver())(term.journal);
    db.prepare("DELETE FROM meta WHERE key = 'witness_since'").run();
    db.close();
    expect(Store.judge(term.journal, term.witness)).toMatchObject({ ok: true, kind: 'upgrade' });

    const p = term.spawn({ config, run: 0, seed: SEED, idle: true });
    await p.waitFor((e) => e.ready === true, 30_000);
    await term.cut(p);
    // The journal now says a witness is kept: its name must have been made durable with it.
    expect(term.witnessProblems('upgrade')).toEqual([]);
  });

  it('a cut after a recovery keeps the old journal as evidence, and the new one', async () => {
    const { term, config, oldSha, grant } = await rolledBack('TCUTREC', 'CUT-REC-1');
    const started = term.cli('recovery', 'start', '--data', term.dataDir, '--grant', grant);
    expect(started.status, started.stderr).toBe(0);
    term.powerOff();

    // "Nothing here deletes a journal": the old files were moved into forensics/, and must be
    // there after the cut, whole; the new incarnation must open as a sound, witnessed journal.
    const forensics = path.join(term.dataDir, 'forensics');
    const kept = existsSync(forensics) ? readdirSync(forensics) : [];
    expect(kept).toHaveLength(1);
    const original = path.join(forensics, kept[0]!, 'original-journal.db');
    expect(existsSync(original) && sha(original)).toBe(oldSha);
    expect(term.witnessProblems('after recovery')).toEqual([]);
    const again = term.spawn({ config, run: 2, seed: SEED, idle: true });
    const ready = await again.waitFor((e) => e.ready === true, 30_000);
    expect(ready.state).toBe('active');
    await again.ask({ op: 'stop' }, 'stopped');
    expect((await again.exited).code).toBe(0);
  });

  it('a cut during a recovery leaves the old journal whole: in place (still refused) or in forensics/', async () => {
    const r = rng(SEED + 1);
    const where: string[] = [];
    for (let i = 0; i < Math.ceil(CUTS / 6); i++) {
      const { term, oldSha, grant } = await rolledBack(`TCUTMID${i}`, `CUT-MID-${i}`);
      const cli = term.cliProcess('recovery', 'start', '--data', term.dataDir, '--grant', grant);
      const exited = new Promise((resolve) => cli.once('exit', resolve));
      await sleep(r.int(50, 350));
      cli.kill('SIGKILL');
      await exited;
      term.powerOff();
      const forensics = path.join(term.dataDir, 'forensics');
      const moved = (existsSync(forensics) ? readdirSync(forensics) : [])
        .map((d) => path.join(forensics, d, 'original-journal.db'))
        .filter((f) => existsSync(f) && sha(f) === oldSha);
      const inPlace = existsSync(term.journal) && sha(term.journal) === oldSha;
      where.push(inPlace ? 'in place' : moved.length ? 'in forensics' : 'nowhere');
      expect(inPlace || moved.length > 0, `cut ${i}: the old journal is nowhere`).toBe(true);
      // Still in place: still a rollback the next start refuses, never silently reused.
      if (inPlace) expect(Store.judge(term.journal, term.witness).ok).toBe(false);
    }
    console.log(`power cuts during recovery: the old journal was ${where.join(', ')}`);
  });

  it(
    'loses no acknowledged row, no used key, raises no false alarm; settles exactly once',
    async () => {
      const r = rng(SEED);
      const terminalId = 'TCUT01';
      const code = 'CUT-CODE-1';
      sim.registerTerminal({ terminalId, activationCode: code });
      const term = new PowerCutTerminal(path.join(root, terminalId));
      const config = agentConfig(sim, terminalId, term.dataDir);
      const auditor = new JournalAuditor();
      const mix = new CommandMix(sim, terminalId, r);
      const problems: string[] = [];
      const keys = new Map<KeyFile, Buffer>();
      const everUsed = new Set<KeyFile>();
      let groups = 0;

      for (let run = 0; run < CUTS && problems.length === 0; run++) {
        sim.behave({
          settle: r.chance(0.7) ? 'approve' : 'out-of-balance-once',
          slowMs: r.chance(0.5) ? 0 : r.int(5, 40),
        });
        const p = term.spawn({ config, run, seed: SEED, activationCode: code, settleMs: 150 });
        if (run > 0 && r.chance(0.2)) {
          await workFor(r.int(100, 900), mix, r); // in start-up
        } else {
          await p.waitFor((e) => e.loading === true, 30_000);
          // It came back on the last image and went on: no lock of its own journal's making.
          p.send({ op: 'status' });
          const { status } = (await p.waitFor((e) => 'head' in e, 30_000)) as {
            status: { locks: string[] };
          };
          const own = status.locks.filter((l) => l.startsWith('journal-'));
          if (own.length) problems.push(`run ${run}: the agent locked itself: ${own.join(', ')}`);
          await workFor(r.int(30, 700), mix, r);
        }
        for (const k of used(p)) everUsed.add(k);
        const live = term.keys();
        for (const k of everUsed) if (!keys.has(k) && live[k]) keys.set(k, live[k]);
        const label = `cut ${run + 1}`;
        const fatal = p.events.find((e) => 'fatal' in e);
        if (fatal) problems.push(`${label}: the agent failed: ${JSON.stringify(fatal)}`);
        const refused = p.events.filter(
          (e) => typeof e.refused === 'string' && e.refused.startsWith('STORAGE_'),
        );
        if (refused.length)
          problems.push(`${label}: the journal refused writes: ${JSON.stringify(refused[0])}`);
        groups += (await term.cut(p)).groups;

        problems.push(...term.witnessProblems(label));
        const image = term.keys();
        for (const [k, bytes] of keys)
          if (!image[k]?.equals(bytes))
            problems.push(
              `${label}: ${k} was used, and after the cut it is ${image[k] ? 'another key' : 'gone'}`,
            );
        // The pinned acquirer key's copy (for a grant check when the journal is lost), if named,
        // is whole: 32 raw bytes in base64.
        const pub = path.join(term.dataDir, 'keys', 'acquirer-command.pub');
        if (
          existsSync(pub) &&
          Buffer.from(readFileSync(pub, 'utf8').trim(), 'base64').length !== 32
        )
          problems.push(
            `${label}: keys/acquirer-command.pub is ${JSON.stringify(readFileSync(pub, 'utf8'))}`,
          );
        problems.push(...auditor.takeAcks(label, p.events));
        if (existsSync(term.journal))
          problems.push(
            ...auditor.audit(term.journal, { label, full: run % 3 === 2, readonly: true }),
          );
        else if (auditor.acked.size) problems.push(`${label}: the journal is gone`);
      }
      expect(problems).toEqual([]);

      // Power stays on: settle everything and stop cleanly.
      sim.behave({ settle: 'approve', slowMs: 0 });
      if (mix.lockIssued) mix.issue('unlock');
      const last = term.spawn({ config, run: CUTS, seed: SEED, idle: true });
      await last.waitFor((e) => e.ready === true, 30_000);
      const settled = await last.ask({ op: 'settle-all', timeoutMs: 60_000 }, 'settledAll', 90_000);
      expect(settled, JSON.stringify(settled)).toMatchObject({ settledAll: true });
      await last.ask({ op: 'stop' }, 'stopped');
      expect((await last.exited).code).toBe(0);
      // A cut after the clean stop (the WAL deleted, its removal never fsynced) loses nothing.
      term.powerOff();
      problems.push(...term.witnessProblems('after the stop'));
      problems.push(...auditor.takeAcks('final run', last.events));
      problems.push(...auditor.audit(term.journal, { label: 'final', full: true, readonly: true }));
      const ledger = checkLedger(term.journal, sim.ledger, terminalId);
      problems.push(...ledger.problems);
      console.log(
        `power cuts: ${CUTS} cuts, ${auditor.acked.size} acknowledged, ${auditor.totals.lost} lost;` +
          ` ${ledger.batches} batches settled exactly once (${ledger.resends} resends);` +
          ` commands ${JSON.stringify(mix.issued)}; ${groups} durable moments imaged; keys kept: ${[...keys.keys()].join(', ') || 'none'}; seed ${SEED}`,
      );
      expect(problems).toEqual([]);
      expect(auditor.acked.size).toBeGreaterThan(CUTS);
      for (const k of KEY_FILES) expect(keys.has(k), k).toBe(true);
    },
    CUTS * 8_000 + 120_000,
  );
});
