/**
 * Typed access to the generated protobuf code (protocol/generated, from pos.proto) plus
 * encode/decode helpers that turn every decoding failure into one AgentError code, so no
 * protobufjs exception type leaks into the rest of the agent.
 *
 * int64 fields are plain JS numbers (the generator switches Long off); callers that read money
 * still check Number.isSafeInteger, because a peer can send values beyond 2^53.
 */
import { randomUUID } from 'node:crypto';
import { AgentError } from '../base/errors.ts';
import { pos } from './generated/pos.js';

export { pos };

export type Envelope = pos.v1.Envelope;

/** Name of the field set in an Envelope's `body` oneof (`'hello'`, `'batchAck'`, ...). */
export type EnvelopeBodyKind = NonNullable<pos.v1.Envelope['body']>;

/** The body part of an envelope: exactly one oneof member is meant to be set, e.g. `{ hello }`. */
export type EnvelopeBody = Pick<pos.v1.IEnvelope, EnvelopeBodyKind>;

interface MessageType<T, I> {
  encode(message: I): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
  verify(message: { [k: string]: unknown }): string | null;
}

function verifyChecked<T, I extends object>(
  type: MessageType<T, I>,
  name: string,
  message: I,
): void {
  // verify() catches wrong types and two members of one oneof, which encode() would write
  // silently and the peer would then refuse or misread.
  const problem = type.verify(message as { [k: string]: unknown });
  if (problem !== null) {
    throw new AgentError('PROTOCOL_MALFORMED', `cannot encode ${name}: ${problem}`, {
      message: name,
      reason: problem,
    });
  }
}

function encodeChecked<T, I extends object>(
  type: MessageType<T, I>,
  name: string,
  message: I,
): Uint8Array {
  verifyChecked(type, name, message);
  return type.encode(message).finish();
}

function decodeChecked<T>(type: MessageType<T, never>, name: string, bytes: Uint8Array): T {
  try {
    return type.decode(bytes);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new AgentError(
      'PROTOCOL_MALFORMED',
      `could not decode ${name}`,
      { message: name, reason, length: bytes.length },
      { cause: e },
    );
  }
}

function requireBody<T extends { body?: string }>(message: T, name: string, length: number): T {
  if (!message.body) {
    throw new AgentError('PROTOCOL_MALFORMED', `${name} arrived with no body`, {
      message: name,
      length,
    });
  }
  return message;
}

/** A fresh random message or request id. */
export function newMessageId(): string {
  return randomUUID();
}

/** The oneof case set in an envelope's body, or undefined when none is. */
export function bodyKind(env: Pick<pos.v1.Envelope, 'body'>): EnvelopeBodyKind | undefined {
  return env.body ?? undefined;
}

/** Encodes an Envelope. @throws AgentError PROTOCOL_MALFORMED if it does not verify. */
export function encodeEnvelope(env: pos.v1.IEnvelope): Uint8Array {
  return encodeChecked(pos.v1.Envelope, 'Envelope', env);
}

/** Checks an Envelope as encodeEnvelope would. @throws AgentError PROTOCOL_MALFORMED. */
export function verifyEnvelope(env: pos.v1.IEnvelope): void {
  verifyChecked(pos.v1.Envelope, 'Envelope', env);
}

/** Decodes an Envelope. @throws AgentError PROTOCOL_MALFORMED on bad bytes or no body set. */
export function decodeEnvelope(bytes: Uint8Array): pos.v1.Envelope {
  return requireBody(decodeChecked(pos.v1.Envelope, 'Envelope', bytes), 'Envelope', bytes.length);
}

/** Encodes a LocalRequest (payment app to agent). */
export function encodeLocalRequest(req: pos.v1.ILocalRequest): Uint8Array {
  return encodeChecked(pos.v1.LocalRequest, 'LocalRequest', req);
}

/** Decodes a LocalRequest. @throws AgentError PROTOCOL_MALFORMED on bad bytes or no body set. */
export function decodeLocalRequest(bytes: Uint8Array): pos.v1.LocalRequest {
  return requireBody(
    decodeChecked(pos.v1.LocalRequest, 'LocalRequest', bytes),
    'LocalRequest',
    bytes.length,
  );
}

/** Encodes a LocalReply (agent to payment app). */
export function encodeLocalReply(reply: pos.v1.ILocalReply): Uint8Array {
  return encodeChecked(pos.v1.LocalReply, 'LocalReply', reply);
}

/** Decodes a LocalReply. @throws AgentError PROTOCOL_MALFORMED on bad bytes or no body set. */
export function decodeLocalReply(bytes: Uint8Array): pos.v1.LocalReply {
  return requireBody(
    decodeChecked(pos.v1.LocalReply, 'LocalReply', bytes),
    'LocalReply',
    bytes.length,
  );
}

/** Encodes a Command: these are the exact bytes the acquirer signs. */
export function encodeCommand(cmd: pos.v1.ICommand): Uint8Array {
  return encodeChecked(pos.v1.Command, 'Command', cmd);
}

/**
 * Decodes a Command. Call it only on bytes whose signature already verified; checking the body,
 * terminal, expiry and counter is the command layer's job.
 */
export function decodeCommand(bytes: Uint8Array): pos.v1.Command {
  return decodeChecked(pos.v1.Command, 'Command', bytes);
}

/** Encodes a SignedCommand. */
export function encodeSignedCommand(cmd: pos.v1.ISignedCommand): Uint8Array {
  return encodeChecked(pos.v1.SignedCommand, 'SignedCommand', cmd);
}

/** Decodes a SignedCommand. @throws AgentError PROTOCOL_MALFORMED on bad bytes. */
export function decodeSignedCommand(bytes: Uint8Array): pos.v1.SignedCommand {
  return decodeChecked(pos.v1.SignedCommand, 'SignedCommand', bytes);
}

/** Encodes a CommandResultBody: the bytes the terminal signs. */
export function encodeCommandResultBody(body: pos.v1.ICommandResultBody): Uint8Array {
  return encodeChecked(pos.v1.CommandResultBody, 'CommandResultBody', body);
}

/** Decodes a CommandResultBody. @throws AgentError PROTOCOL_MALFORMED on bad bytes. */
export function decodeCommandResultBody(bytes: Uint8Array): pos.v1.CommandResultBody {
  return decodeChecked(pos.v1.CommandResultBody, 'CommandResultBody', bytes);
}

/** Encodes an ActivationGrant: the bytes the acquirer signs. */
export function encodeActivationGrant(grant: pos.v1.IActivationGrant): Uint8Array {
  return encodeChecked(pos.v1.ActivationGrant, 'ActivationGrant', grant);
}

/** Decodes an ActivationGrant. @throws AgentError PROTOCOL_MALFORMED on bad bytes. */
export function decodeActivationGrant(bytes: Uint8Array): pos.v1.ActivationGrant {
  return decodeChecked(pos.v1.ActivationGrant, 'ActivationGrant', bytes);
}

/** Encodes an UnlockGrant: the bytes the acquirer signs. */
export function encodeUnlockGrant(grant: pos.v1.IUnlockGrant): Uint8Array {
  return encodeChecked(pos.v1.UnlockGrant, 'UnlockGrant', grant);
}

/** Decodes an UnlockGrant. @throws AgentError PROTOCOL_MALFORMED on bad bytes. */
export function decodeUnlockGrant(bytes: Uint8Array): pos.v1.UnlockGrant {
  return decodeChecked(pos.v1.UnlockGrant, 'UnlockGrant', bytes);
}

/** The ErrorReply to send for an AgentError: its code and technician message, no context. */
export function errorReplyFor(err: AgentError): pos.v1.IErrorReply {
  return { code: err.code, message: err.message };
}
