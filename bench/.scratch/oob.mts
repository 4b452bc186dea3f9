import { settleBacklog } from '../settlement.ts';
import { ensureBacklog } from '../journal-builder.ts';
const opts = { quick: false, log: (m: string) => console.error(m) };
const dir = await ensureBacklog(100_000, opts);
for (let i = 0; i < 2; i++) {
  const r = await settleBacklog(dir, 'out-of-balance');
  console.log(r.ms.toFixed(0), JSON.stringify(r.steps), r.chunks);
}
