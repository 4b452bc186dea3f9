import { recordEvent } from '../policy/terminal-state.ts';
import type { Core } from './core.ts';
import type { SerialRunner } from './serial-runner.ts';

/**
 * A journal too big to check page by page before start is checked on a worker thread
 * while the agent runs; damage found locks the terminal (hardware-fault) at once.
 * Resolves true when the file is sound.
 */
export async function checkPagesInBackground(
  core: Core,
  runner: SerialRunner,
  d: { stopped: () => boolean; logFailure: (what: string, e: unknown) => void },
): Promise<boolean> {
  const found = await core.store.checkPagesLater();
  if (found.length === 1 && found[0] === 'ok') return true;
  const detail = found.slice(0, 3).join('; ');
  core.log.error({ found: detail }, 'the journal file is damaged');
  if (d.stopped()) return false;
  await runner
    .run('page-check', () => {
      recordEvent(core.store, core.clock, core.log, 'page-check-failed', { found: detail });
      core.terminal.applyOrRecord(
        { type: 'lock', source: 'hardware-fault', by: 'agent' },
        `the journal file is damaged: ${detail}`,
        'page-check',
      );
    })
    .catch((e) => d.logFailure('page check', e));
  return false;
}
