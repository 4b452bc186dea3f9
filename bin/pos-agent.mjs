#!/usr/bin/env node
// Entry point: runs the TypeScript sources through tsx. In a checkout the dev entry adds the
// demo and the simulators on top of the production commands.
import { register } from 'tsx/esm/api';

register();
const { devMain } = await import('../dev/cli.ts');
process.exitCode = await devMain(process.argv.slice(2));
