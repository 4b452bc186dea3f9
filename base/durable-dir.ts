import { closeSync, existsSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';

/**
 * Directories whose names survive a power cut. A new name (a file made, renamed or removed,
 * a directory made) is durable only once its parent directory is fsynced; a SIGKILL keeps the
 * page cache and never shows the difference, a power cut does (test/torture/power-cut.test.ts).
 */

/** Makes the directory's current entries durable (the names in it, not their contents). */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Makes a file's bytes durable (a file written in place, or copied, without its own fsync). */
export function fsyncFile(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * `mkdir -p` whose result survives a power cut: every directory it makes is named durably
 * (its parent is fsynced), so a journal or key made inside it cannot vanish with it.
 */
export function makeDirDurable(dir: string, mode?: number): void {
  const first = mkdirSync(dir, { recursive: true, mode });
  if (first === undefined) return; // it was there already
  // mkdir returned the first directory it made: that one's parent and each one below it.
  const top = path.resolve(first);
  for (let d = path.resolve(dir); d !== path.dirname(d); d = path.dirname(d)) {
    fsyncDir(path.dirname(d));
    if (d === top) break;
  }
}

/**
 * The agent's own data directory, whoever made it: `makeDirDurable`, and when it was there
 * already, its parent fsynced once anyway. systemd's `StateDirectory=` (docs/install.md) makes
 * it with a plain mkdir; a power cut shortly after the first start could otherwise take the
 * directory's name, and the journal and keys inside it, with it. Best effort on the parent: a
 * parent the agent may not open (an odd mount) leaves what it was.
 */
export function ensureDataDirDurable(dir: string): void {
  if (existsSync(dir)) {
    try {
      fsyncDir(path.dirname(path.resolve(dir)));
    } catch {
      // Not ours to open: nothing more the agent can do for that name.
    }
    return;
  }
  makeDirDurable(dir);
}
