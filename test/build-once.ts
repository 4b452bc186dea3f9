/**
 * Vitest global set-up: tests that spawn bin/pos-agent.mjs run the compiled bundle, as a
 * terminal does, so dist/ is rebuilt here when the runtime sources changed since the last
 * build (scripts/build.mjs keeps a hash of them; an unchanged tree costs a few milliseconds).
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export default function buildOnce(): void {
  const root = path.resolve(import.meta.dirname, '..');
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build.mjs'), '--quiet'], {
    cwd: root,
    stdio: 'inherit',
  });
}
