import { cleanupTemps } from './fixtures.ts';
import { textTable, notes } from './report.ts';
const mod = await import(`./${process.argv[2]}.ts`);
const figs = await mod.run({
  quick: process.argv.includes('--quick'),
  log: (m: string) => console.error(m),
});
cleanupTemps();
console.log(textTable(figs));
console.log(notes(figs));
