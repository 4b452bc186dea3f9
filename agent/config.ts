import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { AgentError } from '../base/errors.ts';

/**
 * The whole configuration as one validated object. Every field has a default that runs
 * on a developer machine against the embedded simulator; a real terminal overrides
 * paths, the acquirer address and the technicians.
 */

export const configSchema = z
  .object({
    terminalId: z
      .string()
      .regex(/^[A-Z0-9]{4,16}$/, 'terminal ids are 4 to 16 capital letters or digits')
      .default('T0001'),
    dataDir: z.string().min(1).default('.pos-agent/data'),
    firmwareVersion: z.string().default('0.1.0'),
    currency: z
      .string()
      .regex(/^[A-Z]{3}$/)
      .default('CNY'),
    merchantCategory: z.string().default('default'),
    timeZone: z.string().default('Asia/Shanghai'),
    log: z
      .object({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default('info'),
        file: z.string().optional(),
      })
      .prefault({}),
    acquirer: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(7443),
        servername: z.string().default('localhost'),
        /** PEM files; relative paths are under dataDir. */
        caFile: z.string().default('tls/ca.crt'),
        certFile: z.string().default('tls/terminal.crt'),
        keyFile: z.string().default('tls/terminal.key'),
        maxFrameBytes: z
          .number()
          .int()
          .min(1024)
          .max(64 * 1024 * 1024)
          .default(1024 * 1024),
        requestTimeoutMs: z.number().int().positive().default(10_000),
        heartbeatIntervalMs: z.number().int().positive().default(30_000),
        backoffInitialMs: z.number().int().positive().default(500),
        backoffMaxMs: z.number().int().positive().default(60_000),
      })
      .prefault({}),
    settlement: z
      .object({
        /** node-cron expression in timeZone: nightly cutover. */
        cutoverCron: z.string().default('0 0 23 * * *'),
        heartbeatCron: z.string().default('*/30 * * * * *'),
        /** Rows per detail frame: about 250 bytes each, so 3,000 stay under the 1 MiB frame limit. */
        detailChunkRows: z.number().int().min(1).max(3_000).default(2_000),
        /** Hour (0-23, in timeZone) at which a new business date starts. */
        businessDayStartHour: z.number().int().min(0).max(23).default(0),
      })
      .prefault({}),
    offline: z
      .object({
        maxAmount: z.number().int().nonnegative().default(100_000),
        maxTotal: z.number().int().nonnegative().default(500_000),
        maxAgeMs: z
          .number()
          .int()
          .positive()
          .default(24 * 3600_000),
      })
      .prefault({}),
    /** Store-and-forward of offline approvals (agent/policy/forwarding.ts). */
    forwarding: z
      .object({
        /** Advices per AdviceBatch frame (a DetailRow is about 250 bytes). */
        batchSize: z.number().int().min(1).max(2_000).default(200),
        /** An advice still unanswered this long after it was journaled becomes a failed problem. */
        expiryMs: z
          .number()
          .int()
          .positive()
          .default(72 * 3600_000),
        /** Backoff between failed rounds: doubles from the initial delay up to the maximum. */
        backoffInitialMs: z.number().int().positive().default(2_000),
        backoffMaxMs: z.number().int().positive().default(300_000),
      })
      .prefault({}),
    risk: z
      .object({
        lockSeverity: z.number().int().min(1).max(10).default(5),
        declineBurst: z.number().int().min(2).default(5),
        declineWindowMs: z.number().int().positive().default(60_000),
        tinyAmount: z.number().int().nonnegative().default(100),
        tinyBurst: z.number().int().min(2).default(5),
        tinyWindowMs: z.number().int().positive().default(60_000),
      })
      .prefault({}),
    commands: z
      .object({
        /** Allowance for clock drift beyond the measured offset when checking expiry. */
        expirySkewMs: z.number().int().nonnegative().default(30_000),
      })
      .prefault({}),
    activation: z
      .object({
        maxAttempts: z.number().int().min(1).default(5),
        lockoutMs: z
          .number()
          .int()
          .positive()
          .default(15 * 60_000),
      })
      .prefault({}),
    selftest: z
      .object({
        minFreeBytes: z
          .number()
          .int()
          .nonnegative()
          .default(16 * 1024 * 1024),
        /** The clock is insane before this instant (2024-01-01). */
        minSaneTimeMs: z.number().int().default(1_704_067_200_000),
      })
      .prefault({}),
    maintenance: z
      .object({ drainTimeoutMs: z.number().int().positive().default(30_000) })
      .prefault({}),
    console: z
      .object({
        /** none | stdio | serial | pty path given as serial.path */
        mode: z.enum(['none', 'stdio', 'serial']).default('none'),
        serialPath: z.string().optional(),
        baudRate: z.number().int().positive().default(115_200),
        idleTimeoutMs: z
          .number()
          .int()
          .positive()
          .default(10 * 60_000),
        maxLineBytes: z.number().int().min(16).max(4096).default(256),
        technicians: z
          .array(z.object({ id: z.string().min(1), pinHash: z.string().min(1) }))
          .default([]),
        maxFailures: z.number().int().min(1).default(3),
        lockoutAfter: z.number().int().min(1).default(5),
        lockoutMs: z
          .number()
          .int()
          .positive()
          .default(5 * 60_000),
      })
      .prefault({}),
    storage: z
      .object({
        /** Journals up to this size are checked page by page before start; bigger ones in the background. */
        syncPageCheckMaxBytes: z
          .number()
          .int()
          .nonnegative()
          .default(64 * 1024 * 1024),
      })
      .prefault({}),
    paymentSocket: z
      .object({
        /** Unix socket path for the payment app; relative to dataDir; empty disables it. */
        path: z.string().default('payment.sock'),
      })
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/** Validates a config object and lists every error with its path at once. */
export function parseConfig(input: unknown): Config {
  const result = configSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map(
    (i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`,
  );
  throw new AgentError(
    'CONFIG_INVALID',
    `the configuration is invalid:\n  ${problems.join('\n  ')}`,
    { problems },
  );
}

/**
 * Environment overrides, documented in README: POS_TERMINAL_ID, POS_DATA_DIR,
 * POS_ACQUIRER_HOST, POS_ACQUIRER_PORT, POS_LOG_LEVEL, POS_SERIAL_PATH.
 */
export function applyEnv(
  input: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(input);
  const section = (key: string): Record<string, unknown> =>
    (out[key] ??= {}) as Record<string, unknown>;
  if (env.POS_TERMINAL_ID) out.terminalId = env.POS_TERMINAL_ID;
  if (env.POS_DATA_DIR) out.dataDir = env.POS_DATA_DIR;
  if (env.POS_ACQUIRER_HOST) section('acquirer').host = env.POS_ACQUIRER_HOST;
  if (env.POS_ACQUIRER_PORT) section('acquirer').port = Number(env.POS_ACQUIRER_PORT);
  if (env.POS_LOG_LEVEL) section('log').level = env.POS_LOG_LEVEL;
  if (env.POS_SERIAL_PATH) {
    section('console').mode = 'serial';
    section('console').serialPath = env.POS_SERIAL_PATH;
  }
  return out;
}

/** Reads a JSON config file, applies environment overrides and validates. */
export function loadConfigFile(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Config {
  let raw: Record<string, unknown> = {};
  if (file) {
    try {
      raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new AgentError(
        'CONFIG_INVALID',
        `cannot read config file ${file}: ${(e as Error).message}`,
      );
    }
  }
  return parseConfig(applyEnv(raw, env));
}

/** Resolves a path from the config against the data directory. */
export function dataPath(config: Pick<Config, 'dataDir'>, p: string): string {
  return path.isAbsolute(p) ? p : path.join(config.dataDir, p);
}

/** The config with secrets replaced, for `config show`. */
export function redactedConfig(config: Config): unknown {
  return {
    ...config,
    console: {
      ...config.console,
      technicians: config.console.technicians.map((t) => ({ id: t.id, pinHash: '[redacted]' })),
    },
  };
}
