import { openActivatedCore, sale, tempDir, cleanupTemps } from '../fixtures.ts';
const core = openActivatedCore(tempDir('prof'));
const n = Number(process.argv[2] ?? 20000);
if (process.env.NOSYNC) core.store.db.pragma('synchronous = OFF');
for (let i = 0; i < 500; i++) core.payments.record(sale(i));
const c0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
for (let i = 0; i < n; i++) core.payments.record(sale(i));
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
const c = process.cpuUsage(c0);
console.log(
  `${n} records: ${((n * 1000) / ms).toFixed(0)} rows/s, CPU ${((c.user + c.system) / n).toFixed(1)} µs/row (user ${(c.user / n).toFixed(1)} sys ${(c.system / n).toFixed(1)})`,
);
core.close();
cleanupTemps();
