import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { z } from 'zod';
import type { validate } from 'node-cron';
import { AgentError } from '../base/errors.ts';
import { parsePinHash, technicianIdPattern } from './console/auth.ts';
import { configProblems } from './config-problems.ts';

/**
 * The whole configuration as one validated object. Every field has a default that runs
 * on a developer machine against the embedded simulator; a real terminal overrides
 * paths, the acquirer address and the technicians.
 */

const filePath = z
  .string()
  .min(1, 'a path may not be empty')
  .max(4096)
  .refine((p) => !/[\0\n\r]/.test(p), 'a path may not hold NUL or line breaks');

// node-cron (its CommonJS build, as scheduler.ts loads it) only for an expression the file
// sets: zod does not re-check a default (test/unit/config.test.ts checks those), so an agent
// on the default schedules loads node-cron after ready, when it schedules them.
const requireCjs = createRequire(import.meta.url);
const cronExpression = z
  .string()
  .refine(
    (e) => (requireCjs('node-cron') as { validate: typeof validate }).validate(e),
    'not a cron expression (six fields: second minute hour day month weekday)',
  );

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return tz.length > 0;
  } catch {
    return false;
  }
}

const pinHashSchema = z.string().superRefine((h, ctx) => {
  try {
    parsePinHash(h);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
  }
});

/** A unix socket path is limited to 107 bytes on Linux (sun_path). */
const maxSocketPathBytes = 107;

/** Rules that span fields, each reported with the path of the field to change. */
function crossChecks(c: Config, ctx: z.RefinementCtx): void {
  if (c.console.mode === 'serial' && !c.console.serialPath)
    ctx.addIssue({
      code: 'custom',
      path: ['console', 'serialPath'],
      message: 'console.mode is serial, so a serialPath is required',
    });
  if (c.console.lockoutAfter < c.console.maxFailures)
    ctx.addIssue({
      code: 'custom',
      path: ['console', 'lockoutAfter'],
      message: 'must be at least console.maxFailures',
    });
  if (c.acquirer.backoffMaxMs < c.acquirer.backoffInitialMs)
    ctx.addIssue({
      code: 'custom',
      path: ['acquirer', 'backoffMaxMs'],
      message: 'must be at least acquirer.backoffInitialMs',
    });
  const seen = new Set<string>();
  c.console.technicians.forEach((t, i) => {
    const id = t.id.toLowerCase();
    if (seen.has(id))
      ctx.addIssue({
        code: 'custom',
        path: ['console', 'technicians', i, 'id'],
        message: `${t.id} is listed twice`,
      });
    seen.add(id);
  });
  if (c.paymentSocket.path) {
    const full = dataPath(c, c.paymentSocket.path);
    if (Buffer.byteLength(full) > maxSocketPathBytes)
      ctx.addIssue({
        code: 'custom',
        path: ['paymentSocket', 'path'],
        message: `${full} is longer than the ${maxSocketPathBytes} bytes a unix socket path may take`,
      });
  }
}

export const configSchema = z
  .object({
    terminalId: z
      .string()
      .regex(/^[A-Z0-9]{4,16}$/, 'terminal ids are 4 to 16 capital letters or digits')
      .default('T0001'),
    dataDir: filePath.default('.pos-agent/data'),
    firmwareVersion: z.string().default('0.1.0'),
    currency: z
      .string()
      .regex(/^[A-Z]{3}$/)
      .default('CNY'),
    merchantCategory: z.string().default('default'),
    timeZone: z
      .string()
      .refine(isTimeZone, 'not a time zone name (e.g. Asia/Shanghai, UTC)')
      .default('Asia/Shanghai'),
    log: z
      .object({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default('info'),
        file: filePath.optional(),
      })
      .strict()
      .prefault({}),
    acquirer: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(1).max(65535).default(7443),
        servername: z.string().default('localhost'),
        /** PEM files; relative paths are under dataDir. */
        caFile: filePath.default('tls/ca.crt'),
        certFile: filePath.default('tls/terminal.crt'),
        keyFile: filePath.default('tls/terminal.key'),
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
      .strict()
      .prefault({}),
    settlement: z
      .object({
        /** node-cron expression in timeZone: nightly cutover. */
        cutoverCron: cronExpression.default('0 0 23 * * *'),
        heartbeatCron: cronExpression.default('*/30 * * * * *'),
        /** Rows per detail frame: about 250 bytes each, so 3,000 stay under the 1 MiB frame limit. */
        detailChunkRows: z.number().int().min(1).max(3_000).default(2_000),
        /** Detail chunks in flight at once, at most (the acquirer may allow fewer). */
        detailWindow: z.number().int().min(1).max(64).default(8),
        /** Hour (0-23, in timeZone) at which a new business date starts. */
        businessDayStartHour: z.number().int().min(0).max(23).default(0),
      })
      .strict()
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
      .strict()
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
      .strict()
      .prefault({}),
    commands: z
      .object({
        /** Allowance for clock drift beyond the measured offset when checking expiry. */
        expirySkewMs: z.number().int().nonnegative().default(30_000),
        /** Longest a command may be valid: expires_at - issued_at (docs/protocol.md). */
        maxLifetimeMs: z
          .number()
          .int()
          .positive()
          .default(24 * 3600_000),
        /** The acquirer clock is not trusted beyond these (docs/protocol.md, clock offset). */
        maxClockOffsetMs: z.number().int().positive().default(600_000),
        maxClockStepMs: z.number().int().positive().default(5_000),
        maxClockDriftMs: z.number().int().positive().default(120_000),
      })
      .strict()
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
      .strict()
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
      .strict()
      .prefault({}),
    maintenance: z
      .object({ drainTimeoutMs: z.number().int().positive().default(30_000) })
      .strict()
      .prefault({}),
    console: z
      .object({
        /** none | stdio | serial | pty path given as serial.path */
        mode: z.enum(['none', 'stdio', 'serial']).default('none'),
        serialPath: filePath.optional(),
        baudRate: z.number().int().positive().default(115_200),
        idleTimeoutMs: z
          .number()
          .int()
          .positive()
          .default(10 * 60_000),
        maxLineBytes: z.number().int().min(16).max(4096).default(256),
        technicians: z
          .array(
            z
              .object({
                id: z.string().regex(technicianIdPattern, 'ids are letters, digits, . _ - (1-32)'),
                pinHash: pinHashSchema,
              })
              .strict(),
          )
          .default([]),
        maxFailures: z.number().int().min(1).default(3),
        lockoutAfter: z.number().int().min(1).default(5),
        lockoutMs: z
          .number()
          .int()
          .positive()
          .default(5 * 60_000),
      })
      .strict()
      .prefault({}),
    storage: z
      .object({
        /** Journals up to this size are checked page by page before start; bigger ones in the background. */
        syncPageCheckMaxBytes: z
          .number()
          .int()
          .nonnegative()
          .default(64 * 1024 * 1024),
        /**
         * The local head witness (docs/design.md "Rollback"), relative to dataDir. Put it on
         * another file system than the journal when the terminal has one: a copy of the data
         * directory restored as a whole then no longer carries its own witness.
         */
        witnessFile: z.string().min(1).default('journal.witness'),
        /** The full chain walk (on a worker thread) repeats this often; 0 only at start. */
        verifyEveryMs: z
          .number()
          .int()
          .nonnegative()
          .default(6 * 3600_000),
      })
      .strict()
      .prefault({}),
    paymentSocket: z
      .object({
        /** Unix socket path for the payment app; relative to dataDir; empty disables it. */
        path: z.union([z.literal(''), filePath]).default('payment.sock'),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine(crossChecks);

export type Config = z.infer<typeof configSchema>;

/** Validates a config object and lists every error with its path at once. */
export function parseConfig(input: unknown): Config {
  const result = configSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  throw configError(configProblems(result.error.issues, configSchema));
}

export function configError(problems: readonly string[]): AgentError {
  return new AgentError(
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

/** Reads a JSON config file (an object); CONFIG_INVALID when it cannot. */
export function readConfigFile(file: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new AgentError(
      'CONFIG_INVALID',
      `cannot read config file ${file}: ${(e as Error).message}`,
    );
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new AgentError('CONFIG_INVALID', `config file ${file} must hold one JSON object`);
  return raw as Record<string, unknown>;
}

/** Reads a JSON config file, applies environment overrides and validates. */
export function loadConfigFile(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Config {
  return parseConfig(applyEnv(file ? readConfigFile(file) : {}, env));
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
