import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AgentError } from './errors.ts';

/**
 * A lock file that says "this directory is in use by process N", so two processes never
 * work on one data directory (a simulator started beside the demo, two demos). A lock
 * left by a process that is gone is taken over; the lock is released on exit.
 */
export interface DirLock {
  readonly file: string;
  release(): void;
}

function alive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `dir/.lock` (making `dir` when needed).
 * @throws AgentError STORAGE_IN_USE naming the process that holds it.
 */
export function lockDirectory(dir: string, what: string): DirLock {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, '.lock');
  const mine = `${process.pid} ${what}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(file, mine, { flag: 'wx', mode: 0o644 });
      const release = (): void => {
        process.off('exit', release);
        try {
          if (readFileSync(file, 'utf8') === mine) rmSync(file, { force: true });
        } catch {
          // Already gone: nothing to release.
        }
      };
      process.on('exit', release);
      return { file, release };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let held = '';
    try {
      held = readFileSync(file, 'utf8');
    } catch {
      continue; // released between our write and our read: try again
    }
    const [pid, ...rest] = held.trim().split(' ');
    if (alive(Number(pid)) && Number(pid) !== process.pid)
      throw new AgentError(
        'STORAGE_IN_USE',
        `${dir} is in use by process ${pid} (${rest.join(' ') || 'unknown'}); stop it first, or give another directory`,
        { dir, pid: Number(pid) },
      );
    rmSync(file, { force: true }); // stale: its process is gone
  }
  throw new AgentError('STORAGE_IN_USE', `${dir}: could not take its lock file ${file}`, { dir });
}
