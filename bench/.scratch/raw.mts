import path from 'node:path';
import { loadDriver } from '../../storage/db.ts';
import { migrations } from '../../storage/migrations.ts';
import { tempDir, cleanupTemps } from '../fixtures.ts';
const db = new (loadDriver())(path.join(tempDir('raw'), 'raw.db'));
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec(migrations[0]!.sql);
const insert =
  db.prepare(`INSERT INTO journal (seq, kind, created_at, local_id, type, amount, currency, category, fee,
       fee_version, masked_pan, pan_token, status, batch_id, prev_hash, hash)
     VALUES (?, 'txn', ?, ?, 'sale', ?, 'CNY', 'default', ?, 'std-2026.1', '411111******1111', ?,
       'approved', 'B000001-ABCDEF', ?, ?)`);
const HEX = 'a'.repeat(64);
const n = Number(process.argv[2] ?? 2000);
const c0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
for (let seq = 1; seq <= n; seq++)
  insert.run(seq, Date.now(), `R${seq}`, 1000 + (seq % 5000), 300, HEX, HEX, HEX);
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
const c = process.cpuUsage(c0);
console.log(
  `raw ${n}: ${((n * 1000) / ms).toFixed(0)} rows/s, CPU ${((c.user + c.system) / n).toFixed(1)} µs/row`,
);
db.close();
cleanupTemps();
