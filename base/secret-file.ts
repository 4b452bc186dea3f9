import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  fstatSync,
  fsyncSync,
  linkSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { fsyncDir, makeDirDurable } from './durable-dir.ts';

/**
 * The one writer of keys and certificates. A file is never made in place: the bytes go to a
 * temp file in the same directory (mode 0600), which is fsynced and then moved onto the
 * name, and the directory is fsynced. A crash therefore leaves either no file or the whole
 * file, never a short or empty one that the next start would trust or refuse.
 *
 * `exclusive` refuses to replace an existing file (the temp is hard-linked onto the name,
 * which fails if the name exists), so two starts racing can never end up with different keys;
 * the loser gets EEXIST and reads the winner's key.
 */
export function writeSecretFile(
  file: string,
  data: string | Uint8Array,
  opts: { exclusive?: boolean } = {},
): void {
  const dir = path.dirname(file);
  makeDirDurable(dir, 0o700);
  removeStaleTemps(file);
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      // The umask cannot widen 0600, but it may have narrowed it: set it exactly.
      fchmodSync(fd, 0o600);
      writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (opts.exclusive) {
      linkSync(tmp, file);
      unlinkSync(tmp);
    } else {
      renameSync(tmp, file);
    }
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dir);
}

/**
 * Overwrites a secret in place with random bytes, fsyncs, then removes it and fsyncs the
 * directory: the key is gone from the name and, as far as the file system allows, from the
 * blocks it was on. Nothing to do if the file does not exist.
 */
export function destroySecretFile(file: string): void {
  let fd: number;
  try {
    fd = openSync(file, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  try {
    const size = fstatSync(fd).size;
    if (size > 0) writeSync(fd, randomBytes(size), 0, size, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  rmSync(file, { force: true });
  fsyncDir(path.dirname(file));
}

/** True for an empty file: what an in-place writer killed between create and write left. */
export function isEmptyFile(file: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return false;
  }
  try {
    return fstatSync(fd).size === 0;
  } finally {
    closeSync(fd);
  }
}

/** Temps of this file left by a writer that died (its process is gone) are removed. */
function removeStaleTemps(file: string): void {
  const base = path.basename(file);
  const dir = path.dirname(file);
  for (const name of readdirSync(dir)) {
    const m = name.startsWith(`${base}.`) && /\.(\d+)\.[0-9a-f]{8}\.tmp$/.exec(name);
    if (!m || name.length !== base.length + m[0].length) continue;
    if (!processAlive(Number(m[1]))) rmSync(path.join(dir, name), { force: true });
  }
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
