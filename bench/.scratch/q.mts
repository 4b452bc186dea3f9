import { openActivatedCore, sale, tempDir, cleanupTemps } from '../fixtures.ts';
const core = openActivatedCore(tempDir('q'));
core.store.db.pragma('synchronous = OFF');
for (let i = 0; i < 3000; i++) core.payments.record(sale(i));
const s = core.store;
const N = 20000;
function t(name: string, f: () => unknown) {
  for (let i = 0; i < 2000; i++) f();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) f();
  console.log(name.padEnd(28), (Number(process.hrtime.bigint() - t0) / 1e3 / N).toFixed(2), 'µs');
}
t('headOf', () => s.journal.headOf());
t('lifecycle', () => s.state.lifecycle());
t('terminal.status', () => core.terminal.status());
t('feeScheduleAt', () => s.state.feeScheduleAt(Date.now()));
t('batches.open', () => s.batches.open(Date.now()));
t('incarnation', () => s.incarnation);
t('empty atomically', () => s.atomically(() => 1));
t('record (sync off)', () => core.payments.record(sale(1)));
core.close();
cleanupTemps();
