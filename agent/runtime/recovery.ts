import { createHash, type KeyObject } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { fsyncDir, fsyncFile, makeDirDurable } from '../../base/durable-dir.ts';
import { writeSecretFile } from '../../base/secret-file.ts';
import path from 'node:path';
import { AgentError } from '../../base/errors.ts';
import { lockDirectory } from '../../base/dir-lock.ts';
import type { Clock } from '../../base/clock.ts';
import { Store } from '../../storage/store.ts';
import { readWitness, type WitnessRead, type WitnessVerdict } from '../../storage/head-witness.ts';
import type { VerifyResult } from '../../storage/journal.ts';
import type { Config } from '../config.ts';
import { META_COMMAND_COUNTER, META_COMMAND_KEY } from '../policy/commands.ts';
import { publicKeyFromRaw, rawPublicKey } from '../policy/keys.ts';
import { verifyRecoveryGrant, type RecoveryGrantBody } from '../policy/recovery-grant.ts';
import { applyActivation, journalPath, openCore, witnessPath, type Identity } from './core.ts';

/**
 * The technician's side of a rolled-back or broken journal (docs/recovery.md): see what was
 * lost against what the acquirer settled, export the evidence, and start a new journal
 * incarnation under an acquirer grant. Nothing here deletes or edits a journal: the old files
 * are moved, whole, into `forensics/` beside a manifest of their hashes.
 */

/** A copy of the pinned acquirer key outside the journal, so a lost journal can still check a grant. */
const ACQUIRER_KEY_FILE = path.join('keys', 'acquirer-command.pub');

const JOURNAL_FILES = ['journal.db', 'journal.db-wal', 'journal.db-shm'];

/** Keeps the pinned acquirer key beside the journal (called when the journal is sound). */
export function rememberAcquirerKey(config: Pick<Config, 'dataDir'>, store: Store): void {
  const b64 = store.state.getMeta(META_COMMAND_KEY);
  const file = path.join(config.dataDir, ACQUIRER_KEY_FILE);
  if (!b64 || (existsSync(file) && readFileSync(file, 'utf8').trim() === b64)) return;
  // Whole or absent after a power cut, never an empty name (temp, fsync, rename, dir fsync).
  writeSecretFile(file, `${b64}\n`);
}

interface OldJournal {
  verdict: WitnessVerdict;
  witness: WitnessRead;
  head: { seq: number; hash: string } | null;
  incarnation: string | null;
  identity: Identity | null;
  commandCounter: number;
  verify: VerifyResult | { error: string } | null;
  batches: Array<{
    batchId: string;
    state: string;
    digest: string | null;
    txnCount: number | null;
  }>;
  key: KeyObject | undefined;
}

/** Everything readable of the journal as it is, read-only. */
function readOld(config: Pick<Config, 'dataDir' | 'storage'>): OldJournal {
  const file = journalPath(config);
  const wfile = witnessPath(config);
  const verdict = Store.judge(file, wfile);
  const out: OldJournal = {
    verdict,
    witness: readWitness(wfile),
    head: null,
    incarnation: null,
    identity: null,
    commandCounter: 0,
    verify: null,
    batches: [],
    key: undefined,
  };
  if (existsSync(file) && statSync(file).size > 0) {
    let store: Store | undefined;
    try {
      store = Store.open(file, { readonly: true, mustExist: true });
      out.head = store.journal.headOf();
      out.incarnation = store.state.getMeta('incarnation') ?? null;
      out.identity = store.state.getJson<Identity>('identity') ?? null;
      out.commandCounter = Number(store.state.getMeta(META_COMMAND_COUNTER) ?? 0);
      const raw = store.state.getMeta(META_COMMAND_KEY);
      if (raw) out.key = publicKeyFromRaw(Buffer.from(raw, 'base64'));
      out.batches = store.batches.list(100_000).map((b) => ({
        batchId: b.batchId,
        state: b.state,
        digest: b.digest,
        txnCount: b.txnCount,
      }));
      try {
        out.verify = store.journal.verify();
      } catch (e) {
        out.verify = { error: (e as Error).message };
      }
    } catch (e) {
      out.verify = { error: (e as Error).message };
    } finally {
      store?.close();
    }
  }
  const keyFile = path.join(config.dataDir, ACQUIRER_KEY_FILE);
  if (!out.key && existsSync(keyFile))
    out.key = publicKeyFromRaw(Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64'));
  return out;
}

export interface RecoveryReport {
  journal: Omit<OldJournal, 'key' | 'batches'> & { batches: number };
  /** Present with a grant: the acquirer's settled batches against the local journal. */
  acquirer?: {
    lastReportedHead: { seq: number; hash: string } | null;
    /** Rows the terminal reported to the acquirer that this journal no longer has. */
    rowsMissing: number | null;
    settled: Array<{
      batchId: string;
      local: 'same' | 'other-digest' | 'reborn-open' | 'missing';
    }>;
    /** Local batches closed or sent that the acquirer never settled. */
    unsettledHere: string[];
  };
}

/** What was lost: the journal against its witness and, with a grant, against the acquirer. */
export function recoveryReport(
  config: Pick<Config, 'dataDir' | 'storage' | 'terminalId'>,
  clock: Clock,
  grantText?: string,
): RecoveryReport {
  const old = readOld(config);
  const { key: _key, batches, ...journal } = old;
  const report: RecoveryReport = { journal: { ...journal, batches: batches.length } };
  if (grantText === undefined) return report;
  const grant = checkGrant(old, config, clock, grantText);
  const local = new Map(batches.map((b) => [b.batchId, b]));
  const settledIds = new Set(grant.settled.map((s) => s.batchId));
  const head = grant.lastReportedHead;
  report.acquirer = {
    lastReportedHead: head,
    rowsMissing: head ? Math.max(0, head.seq - (old.head?.seq ?? 0)) : null,
    settled: grant.settled.map((s) => {
      const mine = local.get(s.batchId);
      // 'reborn-open': the id is open here again (its close and settlement were lost): a
      // resend of it would be a conflicting batch, which is why nothing settles until recovery.
      const state = !mine
        ? 'missing'
        : mine.digest === s.digest
          ? 'same'
          : mine.state === 'open'
            ? 'reborn-open'
            : 'other-digest';
      return { batchId: s.batchId, local: state };
    }),
    unsettledHere: batches
      .filter((b) => b.state !== 'open' && !settledIds.has(b.batchId))
      .map((b) => b.batchId),
  };
  return report;
}

function checkGrant(
  old: OldJournal,
  config: Pick<Config, 'terminalId'>,
  clock: Clock,
  grantText: string,
): RecoveryGrantBody {
  if (!old.key)
    throw new AgentError(
      'UNLOCK_CODE_INVALID',
      'no pinned acquirer key is left (neither in the journal nor in keys/acquirer-command.pub): the terminal must be activated again from scratch',
    );
  return verifyRecoveryGrant(grantText, {
    key: old.key,
    terminalId: old.identity?.terminalId ?? config.terminalId,
    now: clock.now(),
  });
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** Copies the journal files and the witness, with their hashes, into `outDir` (nothing moves). */
export function exportForensics(
  config: Pick<Config, 'dataDir' | 'storage'>,
  outDir: string,
): Array<{ file: string; bytes: number; sha256: string }> {
  // Evidence must outlive a power cut: each copy and the manifest are fsynced, then the names.
  makeDirDurable(outDir);
  const files = [...JOURNAL_FILES.map((f) => path.join(config.dataDir, f)), witnessPath(config)];
  const copied = files
    .filter((f) => existsSync(f))
    .map((f) => {
      const to = path.join(outDir, path.basename(f));
      copyFileSync(f, to);
      fsyncFile(to);
      return { file: path.basename(f), bytes: statSync(to).size, sha256: sha256(to) };
    });
  const old = readOld(config);
  const { key: _key, ...facts } = old;
  const manifest = path.join(outDir, 'manifest.json');
  writeFileSync(
    manifest,
    JSON.stringify(
      { exportedAt: new Date().toISOString(), files: copied, journal: facts },
      null,
      2,
    ),
  );
  fsyncFile(manifest);
  fsyncDir(outDir);
  return copied;
}

/**
 * Moves the journal and its witness into `forensics/<incarnation>-<time>/` and starts a new
 * journal incarnation from the acquirer's grant: identity, tariff, pinned key and command
 * counter, activated, with a `journal-recovered` event naming the old incarnation.
 */
export function startNewIncarnation(
  config: Config,
  clock: Clock,
  grantText: string,
): { previous: string | null; incarnation: string; forensicsDir: string } {
  const lock = lockDirectory(config.dataDir, 'pos-agent recovery');
  try {
    const old = readOld(config);
    const grant = checkGrant(old, config, clock, grantText);
    const stamp = new Date(clock.now()).toISOString().replace(/[:.]/g, '-');
    const forensicsDir = path.join(
      config.dataDir,
      'forensics',
      `${old.incarnation ?? 'unknown'}-${stamp}`,
    );
    exportForensics(config, forensicsDir);
    const grantFile = path.join(forensicsDir, 'grant.json');
    writeFileSync(grantFile, grantText);
    fsyncFile(grantFile);
    // Moved, not deleted: the copies above are the manifest's; the originals go beside them.
    const moved = [...JOURNAL_FILES.map((n) => path.join(config.dataDir, n)), witnessPath(config)];
    for (const f of moved)
      if (existsSync(f)) renameSync(f, path.join(forensicsDir, `original-${path.basename(f)}`));
    // Their new names durable before the old ones are gone for good: a power cut from here on
    // leaves them in forensics/ (and, until the second fsync, perhaps in both places too).
    fsyncDir(forensicsDir);
    for (const d of new Set(moved.map((f) => path.dirname(f)))) fsyncDir(d);
    const core = openCore(config, { clock });
    try {
      const identity: Identity = {
        terminalId: grant.terminalId,
        ...grant.identity,
        activatedAt: clock.now(),
      };
      core.store.atomically(() => {
        core.store.state.setMeta(META_COMMAND_KEY, rawPublicKey(old.key!).toString('base64'));
        core.store.state.setMeta(
          META_COMMAND_COUNTER,
          String(Math.max(grant.lastCommandCounter, old.commandCounter)),
        );
        applyActivation(core, identity, grant.feeSchedule, 'recovery');
        core.store.journal.appendEvent(
          'journal-recovered',
          {
            previousIncarnation: old.incarnation,
            previousHead: old.head,
            lastReportedHead: grant.lastReportedHead,
            settledAtAcquirer: grant.settled.length,
            grantIssuedAt: grant.issuedAtMs,
            forensicsDir,
            why: old.verdict.ok ? 'technician' : old.verdict.reason,
          },
          clock.now(),
        );
      });
      return { previous: old.incarnation, incarnation: core.store.incarnation, forensicsDir };
    } finally {
      core.close();
    }
  } finally {
    lock.release();
  }
}
