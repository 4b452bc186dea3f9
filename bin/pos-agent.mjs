#!/usr/bin/env node
// The `pos-agent` command. Production commands run the compiled bundle in dist/ (built by
// scripts/build.mjs at install, never at start). `demo` and `simulate` are development tools: in
// a checkout they run the TypeScript dev entry through tsx (a devDependency); a release carries
// neither dev/ nor tsx, and the production CLI refuses them.
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

const argv = process.argv.slice(2);
const devEntry = new URL('../dev/cli.ts', import.meta.url);

if ((argv[0] === 'demo' || argv[0] === 'simulate') && existsSync(devEntry)) {
  const { register } = await import('tsx/esm/api');
  register();
  const { devMain } = await import(devEntry.href);
  process.exitCode = await devMain(argv);
} else {
  const bundle = new URL('../dist/main.js', import.meta.url);
  if (!existsSync(bundle)) {
    process.stderr.write('pos-agent is not built: run `npm run build` in its directory\n');
    process.exit(70);
  }
  const { main } = await import(bundle.href);
  process.exitCode = await main(argv);
}
