import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import {
  configError,
  configSchema,
  dataPath,
  applyEnv,
  readConfigFile,
  type Config,
} from './config.ts';
import { configProblems } from './config-problems.ts';

/**
 * What `run` and `config check` do before anything starts: validate the whole file and
 * check that the files it names are there, reporting every problem at once. Nothing is
 * opened, created or scheduled until this has passed, so a bad config can never look
 * like a healthy agent that merely retries.
 */

/** Loads, validates and checks the files of a config; throws CONFIG_INVALID listing every problem. */
export function loadCheckedConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const raw = applyEnv(readConfigFile(file), env);
  const result = configSchema.safeParse(raw);
  const problems = result.success ? [] : configProblems(result.error.issues, configSchema);
  problems.push(...fileProblems(result.success ? result.data : bestEffort(raw)));
  if (problems.length > 0) throw configError(problems);
  return result.data!;
}

type FileFields = Pick<Config, 'dataDir'> & {
  acquirer: Pick<Config['acquirer'], 'caFile' | 'certFile' | 'keyFile'>;
  console: Pick<Config['console'], 'mode' | 'serialPath'>;
};

/** The file fields of an invalid config, with defaults where a field is missing or not text. */
function bestEffort(raw: Record<string, unknown>): FileFields {
  const section = (k: string) =>
    (typeof raw[k] === 'object' && raw[k] ? raw[k] : {}) as Record<string, unknown>;
  const text = (v: unknown, d: string) => (typeof v === 'string' && v !== '' ? v : d);
  const a = section('acquirer');
  const c = section('console');
  return {
    dataDir: text(raw.dataDir, '.pos-agent/data'),
    acquirer: {
      caFile: text(a.caFile, 'tls/ca.crt'),
      certFile: text(a.certFile, 'tls/terminal.crt'),
      keyFile: text(a.keyFile, 'tls/terminal.key'),
    },
    console: {
      mode: c.mode === 'serial' ? 'serial' : 'none',
      serialPath: typeof c.serialPath === 'string' ? c.serialPath : undefined,
    },
  } as FileFields;
}

/** Files the agent needs at start that it does not make itself. */
function fileProblems(c: FileFields): string[] {
  const problems: string[] = [];
  const need = (key: string, file: string, kind: 'file' | 'device') => {
    try {
      const st = statSync(file);
      if (kind === 'file' && !st.isFile()) return problems.push(`${key}: ${file} is not a file`);
      accessSync(file, kind === 'file' ? constants.R_OK : constants.R_OK | constants.W_OK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      problems.push(
        code === 'ENOENT'
          ? `${key}: ${file} does not exist`
          : `${key}: ${file} cannot be ${kind === 'file' ? 'read' : 'opened'} (${code ?? 'error'})`,
      );
    }
  };
  need('acquirer.caFile', dataPath(c, c.acquirer.caFile), 'file');
  need('acquirer.certFile', dataPath(c, c.acquirer.certFile), 'file');
  need('acquirer.keyFile', dataPath(c, c.acquirer.keyFile), 'file');
  if (c.console.mode === 'serial' && c.console.serialPath)
    need('console.serialPath', c.console.serialPath, 'device');
  try {
    if (!statSync(c.dataDir).isDirectory())
      problems.push(`dataDir: ${c.dataDir} is not a directory`);
  } catch {
    // A missing data directory is made at first start; its parent must exist.
    try {
      statSync(path.dirname(path.resolve(c.dataDir)));
    } catch {
      problems.push(`dataDir: neither ${c.dataDir} nor its parent directory exists`);
    }
  }
  return problems;
}
