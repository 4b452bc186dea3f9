import { settleBacklog } from './settlement.ts';
import { cleanupTemps, cacheDir } from './fixtures.ts';
const r = await settleBacklog(cacheDir('backlog-100000'), 'out-of-balance');
console.log(r.ms.toFixed(0), JSON.stringify(r.steps));
cleanupTemps();
