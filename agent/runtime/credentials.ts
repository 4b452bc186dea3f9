import { existsSync } from 'node:fs';
import { destroySecretFile } from '../../base/secret-file.ts';
import { dataPath, type Config } from '../config.ts';
import type { TerminalKeyFile } from '../policy/keys.ts';
import type { Core } from './core.ts';

/**
 * After deactivation: no token key, no signing key, no TLS key. Idempotent across crashes:
 * run at every start of a deactivated terminal, it journals only when a key was still there.
 */
export function destroyCredentialsIfDeactivated(
  core: Core,
  config: Config,
  terminalKeyFile: TerminalKeyFile,
): void {
  if (core.terminal.status().state !== 'deactivated') return;
  const keyFile = dataPath(config, config.acquirer.keyFile);
  const had = terminalKeyFile.exists() || existsSync(core.tokenKeys.file) || existsSync(keyFile);
  core.tokenKeys.destroy();
  terminalKeyFile.destroy();
  destroySecretFile(keyFile);
  if (had)
    core.store.atomically(() =>
      core.store.journal.appendEvent(
        'credentials-destroyed',
        { keys: ['token', 'terminal-signing', 'tls-client'] },
        core.clock.now(),
      ),
    );
}
