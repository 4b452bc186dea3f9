/**
 * One error type for the whole agent. Codes are stable strings grouped by area
 * (`AREA_WHAT`); technicians see them on the console and acquirers see them in
 * error frames, so a code, once shipped, never changes meaning.
 */

export const ErrorCodes = {
  // config
  CONFIG_INVALID: 'the configuration is invalid',
  CONFIG_WEAK_PIN_HASH: 'a technician PIN hash uses scrypt parameters below the floor',
  // storage
  STORAGE_NATIVE_MODULE: 'the SQLite driver cannot load on this Node.js',
  STORAGE_CORRUPT: 'the journal file is damaged',
  STORAGE_FULL: 'the disk is full; the journal cannot grow',
  STORAGE_READONLY: 'the journal cannot be written',
  STORAGE_IO: 'the journal could not be read or written',
  STORAGE_CHAIN_BROKEN: 'the journal hash chain does not verify',
  STORAGE_NOT_FOUND: 'no such record',
  STORAGE_FROZEN: 'the journal is kept unchanged for forensics; the terminal takes nothing new',
  STORAGE_IN_USE: 'the data directory is in use by another process',
  // card data
  CARD_INVALID_PAN: 'the card number is not valid',
  CARD_SENSITIVE_DATA: 'CVV, track or PIN data may not be given to the agent',
  CARD_KEY_MISSING: 'the card token key is missing',
  // transactions and money
  TXN_INVALID_AMOUNT: 'the amount is not a positive whole number of minor units',
  TXN_INVALID: 'the transaction is not valid',
  TXN_ORIGINAL_NOT_FOUND: 'the original transaction was not found',
  TXN_EXCEEDS_ORIGINAL: 'the amount exceeds what is left of the original transaction',
  TXN_OFFLINE_LIMIT: 'the offline approval limit is reached',
  FEE_NO_SCHEDULE: 'no fee schedule is in force',
  FEE_INVALID_SCHEDULE: 'the fee schedule is invalid',
  // lifecycle
  LIFECYCLE_REFUSED: 'the terminal cannot do that in its current state',
  LIFECYCLE_LOCKED: 'the terminal is locked',
  LIFECYCLE_NOT_ACTIVE: 'the terminal is not active',
  LIFECYCLE_DEACTIVATED: 'the terminal is deactivated',
  // protocol
  PROTOCOL_FRAME_TOO_LARGE: 'a frame is larger than allowed',
  PROTOCOL_FRAME_TRUNCATED: 'a frame ended before it was complete',
  PROTOCOL_MALFORMED: 'a message could not be decoded',
  PROTOCOL_UNEXPECTED: 'an unexpected message arrived',
  PROTOCOL_TIMEOUT: 'the peer did not answer in time',
  PROTOCOL_DISCONNECTED: 'the link to the acquirer is down',
  PROTOCOL_TLS: 'the secure link could not be established',
  PROTOCOL_PEER_ERROR: 'the acquirer reported an error',
  // settlement
  SETTLEMENT_REJECTED: 'the acquirer rejected the batch',
  SETTLEMENT_BUSY: 'a settlement is already running',
  SETTLEMENT_ADVICES_PENDING: "offline advices still wait for the acquirer's answer",
  SETTLEMENT_ADVICE_EXPIRED: 'an offline advice was not answered in time',
  // commands
  COMMAND_BAD_SIGNATURE: 'the command signature does not verify',
  COMMAND_UNSIGNED: 'the command is not signed',
  COMMAND_WRONG_TERMINAL: 'the command is for another terminal',
  COMMAND_EXPIRED: 'the command has expired',
  COMMAND_REPLAYED: 'the command counter is not above the last applied one',
  COMMAND_NO_KEY: 'no acquirer command key is pinned',
  COMMAND_MALFORMED: 'the command could not be decoded',
  COMMAND_UNKNOWN: 'the command is not known',
  COMMAND_ISSUED_IN_FUTURE: 'the command was issued later than the acquirer clock says it is now',
  COMMAND_LIFETIME_TOO_LONG: 'the command is valid for longer than the terminal allows',
  COMMAND_CLOCK_UNTRUSTED:
    'the acquirer clock cannot be trusted, so the command expiry cannot be checked',
  UNLOCK_CODE_INVALID: 'the unlock code is not valid',
  ACTIVATION_REFUSED: 'the activation code was refused',
  ACTIVATION_RETRY_LIMIT: 'too many wrong activation codes',
  // console
  CONSOLE_UNKNOWN_COMMAND: 'unknown command',
  CONSOLE_BAD_ARGUMENTS: 'the command arguments are not valid',
  CONSOLE_LINE_TOO_LONG: 'the line is too long',
  CONSOLE_LOGIN_REQUIRED: 'log in first',
  CONSOLE_LOGIN_FAILED: 'wrong technician id or PIN',
  CONSOLE_LOCKED_OUT: 'too many failed logins; wait before trying again',
  CONSOLE_LOGIN_THROTTLED: 'a login failed just now; wait a moment before trying again',
  CONSOLE_COMMAND_INVALID: 'a console command definition is not valid',
  CONSOLE_PORT_UNAVAILABLE: 'the console port could not be opened',
  // self-test
  SELFTEST_FAILED: 'the self-test failed',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export type ErrorArea =
  | 'config'
  | 'storage'
  | 'card'
  | 'txn'
  | 'fee'
  | 'lifecycle'
  | 'protocol'
  | 'settlement'
  | 'command'
  | 'console'
  | 'selftest';

const areaPrefixes: ReadonlyArray<readonly [string, ErrorArea]> = [
  ['CONFIG_', 'config'],
  ['STORAGE_', 'storage'],
  ['CARD_', 'card'],
  ['TXN_', 'txn'],
  ['FEE_', 'fee'],
  ['LIFECYCLE_', 'lifecycle'],
  ['PROTOCOL_', 'protocol'],
  ['SETTLEMENT_', 'settlement'],
  ['COMMAND_', 'command'],
  ['UNLOCK_', 'command'],
  ['ACTIVATION_', 'command'],
  ['CONSOLE_', 'console'],
  ['SELFTEST_', 'selftest'],
];

/** The area an error code belongs to, from its prefix. */
function areaOf(code: ErrorCode): ErrorArea {
  for (const [prefix, area] of areaPrefixes) if (code.startsWith(prefix)) return area;
  throw new Error(`error code ${code} has no area`);
}

export class AgentError extends Error {
  override readonly name = 'AgentError';
  constructor(
    readonly code: ErrorCode,
    /** Plain words for a technician; defaults to the code's catalogue text. */
    message: string = ErrorCodes[code],
    /** Machine-readable detail; must never carry card data or secrets. */
    readonly context: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get area(): ErrorArea {
    return areaOf(this.code);
  }

  /** `refused (LIFECYCLE_LOCKED): terminal is locked by risk` */
  toDisplay(verb = 'refused'): string {
    return `${verb} (${this.code}): ${this.message}`;
  }
}

export function isAgentError(e: unknown, code?: ErrorCode): e is AgentError {
  return e instanceof AgentError && (code === undefined || e.code === code);
}

export function isAreaError(e: unknown, area: ErrorArea): e is AgentError {
  return e instanceof AgentError && e.area === area;
}

/** Wraps anything thrown into an AgentError, keeping AgentErrors as they are. */
export function toAgentError(e: unknown, fallback: ErrorCode): AgentError {
  if (e instanceof AgentError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new AgentError(fallback, `${ErrorCodes[fallback]}: ${message}`, {}, { cause: e });
}
