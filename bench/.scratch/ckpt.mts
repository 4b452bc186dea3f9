import path from 'node:path';
import { loadDriver } from '../../storage/db.ts';
import { migrations } from '../../storage/migrations.ts';
import { tempDir, cleanupTemps } from '../fixtures.ts';
function open(auto: number) {
  const db = new (loadDriver())(path.join(tempDir('raw'), 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma(`wal_autocheckpoint = ${auto}`);
  db.exec(migrations[0]!.sql);
  const insert =
    db.prepare(`INSERT INTO journal (seq, kind, created_at, local_id, type, amount, currency, category, fee,
       fee_version, masked_pan, pan_token, status, batch_id, prev_hash, hash)
     VALUES (?, 'txn', ?, ?, 'sale', ?, 'CNY', 'default', ?, 'std-2026.1', '411111******1111', ?,
       'approved', 'B000001-ABCDEF', ?, ?)`);
  let seq = 0;
  const HEX = 'a'.repeat(64);
  return {
    db,
    run: () => {
      seq++;
      insert.run(seq, Date.now(), `R${seq}`, 1000 + (seq % 5000), 300, HEX, HEX, HEX);
    },
  };
}
const a = open(Number(process.argv[2])),
  b = open(Number(process.argv[3]));
const t = { a: 0, b: 0 };
const c = { a: 0, b: 0 };
for (let r = 0; r < 30; r++)
  for (const [k, x] of [
    ['a', a],
    ['b', b],
  ] as const) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 150; i++) x.run();
    t[k] += Number(process.hrtime.bigint() - t0) / 1e6;
    const cu = process.cpuUsage(c0);
    c[k] += (cu.user + cu.system) / 1000;
  }
console.log(
  'autocheckpoint 1000: ',
  ((4500 * 1000) / t.a).toFixed(0),
  'rows/s',
  ((c.a * 1000) / 4500).toFixed(1),
  'µs CPU/row',
);
console.log(
  'autocheckpoint off : ',
  ((4500 * 1000) / t.b).toFixed(0),
  'rows/s',
  ((c.b * 1000) / 4500).toFixed(1),
  'µs CPU/row',
);
a.db.close();
b.db.close();
cleanupTemps();
