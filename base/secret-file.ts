import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';

/**
 * Writes a key file the way a power cut cannot half-undo: mode 0600, the data fsynced,
 * then the directory entry fsynced. `exclusive` refuses to replace an existing file, so
 * two starts racing can never end up with different keys.
 */
export function writeSecretFile(
  file: string,
  data: string | Uint8Array,
  opts: { exclusive?: boolean } = {},
): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const fd = openSync(file, opts.exclusive ? 'wx' : 'w', 0o600);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}
