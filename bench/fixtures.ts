/**
 * What every benchmark shares: options, temporary and cache directories, the bench terminal's
 * identity and config, and an activated core on a fresh data directory.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { applyActivation, openCore, type Core, type Identity } from '../agent/runtime/core.ts';
import { parseConfig, type Config } from '../agent/config.ts';
import { DEFAULT_FEE_SCHEDULE } from '../agent/policy/fees.ts';
import type { RecordInput } from '../agent/policy/payments.ts';
import { ensureTlsMaterial } from '../protocol/tls-material.ts';
import { CardSim } from '../simulator/card-sim.ts';

export interface BenchOptions {
  /** A ~30 s smoke run: smaller data, shorter windows, fewer samples. */
  quick: boolean;
  /** Progress lines (to stderr, so stdout stays the table). */
  log: (msg: string) => void;
}

/** The terminal every benchmark runs as (its TLS client certificate has this CN). */
export const BENCH_TERMINAL = 'BENCH0001';
/** A Luhn-valid number from the card simulator's test range; only its mask and token reach the journal. */
export const TEST_PAN = new CardSim(7).pan();

/** Built journals kept between runs (gitignored by bench/.gitignore). */
const CACHE_DIR = path.join(import.meta.dirname, '.cache');

const temps: string[] = [];

/** A fresh directory under the system temp dir, removed by cleanupTemps(). */
export function tempDir(prefix: string, under = tmpdir()): string {
  const dir = mkdtempSync(path.join(under, `pa-bench-${prefix}-`));
  temps.push(dir);
  return dir;
}

export function cleanupTemps(): void {
  for (const d of temps.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Copies a cached data directory (closed, WAL checkpointed) into a fresh temp dir. */
export function copyDataDir(from: string, prefix: string): string {
  const dir = tempDir(prefix);
  cpSync(from, dir, { recursive: true });
  return dir;
}

export function cacheDir(name: string): string {
  mkdirSync(CACHE_DIR, { recursive: true });
  return path.join(CACHE_DIR, name);
}

export function isBuilt(dir: string, marker = 'built.txt'): boolean {
  return existsSync(path.join(dir, marker));
}

export function benchIdentity(): Identity {
  return {
    terminalId: BENCH_TERMINAL,
    merchantId: 'M-BENCH',
    merchantName: 'Bench Shop',
    category: 'default',
    currency: 'CNY',
    activatedAt: Date.now(),
  };
}

/** The config input of the bench terminal on `dataDir`; `extra` sections replace defaults. */
export function benchConfigInput(
  dataDir: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    terminalId: BENCH_TERMINAL,
    dataDir,
    log: { level: 'silent' },
    paymentSocket: { path: '' },
    ...extra,
  };
}

export function benchConfig(dataDir: string, extra: Record<string, unknown> = {}): Config {
  return parseConfig(benchConfigInput(dataDir, extra));
}

/** The offline core on `dataDir`, activated with the default fee schedule if it is not yet. */
export function openActivatedCore(dataDir: string): Core {
  const core = openCore(benchConfig(dataDir));
  if (core.terminal.status().state === 'unactivated')
    applyActivation(core, benchIdentity(), DEFAULT_FEE_SCHEDULE, 'bench');
  return core;
}

/** The i-th sale of a benchmark: an approved card sale of 10.00 to 59.99 yuan. */
export function sale(i: number): RecordInput {
  return { type: 'sale', amount: 1000 + (i % 5000), card: { pan: TEST_PAN } };
}

/** The acquirer CA, server and bench-terminal certificates, made once with openssl. */
export function ensureBenchTls(): string {
  const dir = cacheDir('tls');
  return ensureTlsMaterial(dir, [BENCH_TERMINAL]).dir;
}

/** The config's acquirer section for a simulator listening on `port` with material in `tlsDir`. */
export function acquirerSection(tlsDir: string, port: number): Record<string, unknown> {
  return {
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    caFile: path.join(tlsDir, 'ca.crt'),
    certFile: path.join(tlsDir, 'clients', `${BENCH_TERMINAL}.crt`),
    keyFile: path.join(tlsDir, 'clients', `${BENCH_TERMINAL}.key`),
    backoffInitialMs: 50,
    backoffMaxMs: 500,
    requestTimeoutMs: 60_000,
  };
}
