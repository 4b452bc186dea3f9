import { ensureBacklog } from './journal-builder.ts';
import { settleBacklog } from './settlement.ts';
import { cleanupTemps } from './fixtures.ts';
const rows = Number(process.argv[2] ?? 100000);
const dir = await ensureBacklog(rows, { quick: false, log: console.error });
for (const mode of ['approve', 'out-of-balance'] as const) {
  const r = await settleBacklog(dir, mode);
  console.log(mode, r.ms.toFixed(0), JSON.stringify(r.steps), r.chunks);
}
cleanupTemps();
