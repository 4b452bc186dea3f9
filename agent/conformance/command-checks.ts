/**
 * Signed commands as docs/protocol.md requires of the acquirer: queued commands are pushed on
 * CommandPoll (message_id set, no correlation_id), each signed over its exact bytes by the
 * pinned key, naming this terminal, with counters rising and sane times; a signed
 * CommandResult answering each is taken without complaint and stops its redelivery. Last, a
 * bad frame must be answered with an ErrorReply and the link closed.
 */
import { decodeCommand, encodeCommandResultBody, type pos } from '../../protocol/messages.ts';
import { checkCommandTimes } from '../policy/command-time.ts';
import { signEd25519, verifyEd25519 } from '../policy/keys.ts';
import { expectThat, type KitContext } from './kit.ts';

const HOUR = 3600_000;

interface Received {
  env: pos.v1.Envelope;
  cmd?: pos.v1.Command;
}

function commandsIn(ctx: KitContext): Received[] {
  return ctx.link.pushed.filter((e) => e.body === 'command').map((env) => ({ env }));
}

async function delivery(ctx: KitContext): Promise<void> {
  const { link, o } = ctx;
  const { reply } = await link.request({ commandPoll: { afterCounter: 0 } }, o.timeoutMs);
  expectThat(reply.body === 'commandPollDone', `CommandPoll answered with ${reply.body}`);
  const sent = Number(reply.commandPollDone!.sent ?? 0);
  const want = Math.max(sent, o.minCommands);
  await link.waitPushed((p) => p.filter((e) => e.body === 'command').length >= want, o.timeoutMs);
  const got = commandsIn(ctx);
  expectThat(
    got.length >= o.minCommands,
    `${got.length} commands arrived; queue ${o.minCommands} (a lock and an unlock) for ${o.terminalId} before running`,
  );
  expectThat(got.length >= sent, `CommandPollDone says ${sent} sent, ${got.length} arrived`);
  for (const { env } of got) {
    expectThat(
      env.messageId && !env.correlationId,
      'a pushed command needs a message_id and no correlation_id',
    );
  }
  ctx.rec(
    'commands pushed on poll',
    true,
    `${got.length} commands pushed; CommandPollDone sent=${sent}`,
  );
}

function verified(ctx: KitContext): Received[] {
  expectThat(ctx.commandKey, 'no command key pinned (activation failed or no --command-key)');
  return commandsIn(ctx).map(({ env }) => {
    const bytes = env.command?.command ?? new Uint8Array();
    const ok = verifyEd25519(ctx.commandKey!, bytes, env.command?.signature ?? new Uint8Array());
    expectThat(ok, `command ${env.messageId} is not signed by the pinned key`);
    return { env, cmd: decodeCommand(bytes) };
  });
}

async function signatures(ctx: KitContext): Promise<void> {
  const got = verified(ctx);
  expectThat(got.length > 0, 'no command to check');
  for (const { cmd } of got) {
    expectThat(
      cmd!.terminalId === ctx.o.terminalId,
      `command ${cmd!.counter} names terminal ${cmd!.terminalId}`,
    );
    expectThat(cmd!.body, `command ${cmd!.counter} has no body`);
    expectThat(cmd!.nonce && cmd!.nonce.length >= 8, `command ${cmd!.counter} has no nonce`);
  }
  ctx.rec(
    'command signatures',
    true,
    `${got.length} verify under the pinned key and name this terminal`,
  );
}

async function counters(ctx: KitContext): Promise<void> {
  const got = verified(ctx).map((r) => Number(r.cmd!.counter));
  for (let i = 0; i < got.length; i++) {
    expectThat(
      Number.isSafeInteger(got[i]) && got[i]! > 0,
      `counter ${got[i]} is not a positive whole number`,
    );
    if (i > 0) expectThat(got[i]! > got[i - 1]!, `counters not strictly rising: ${got.join(', ')}`);
  }
  const now = () => Date.now() + ctx.offsetMs;
  for (const { cmd } of verified(ctx)) {
    checkCommandTimes(
      { issuedAtMs: Number(cmd!.issuedAtMs), expiresAtMs: Number(cmd!.expiresAtMs) },
      now,
      { expirySkewMs: 30_000, maxLifetimeMs: 24 * HOUR },
    );
  }
  ctx.rec(
    'command counters and times',
    true,
    `counters ${got.join(', ')}; issued <= now, lifetime <= 24 h`,
  );
}

async function results(ctx: KitContext): Promise<void> {
  const { link, o } = ctx;
  const got = verified(ctx);
  let max = 0;
  for (const { env, cmd } of got) {
    const body = encodeCommandResultBody({
      terminalId: o.terminalId,
      counter: cmd!.counter,
      outcome: 'applied',
      errorCode: '',
      detail: `conformance kit: ${cmd!.body}`,
      lifecycleState: 'active',
      locks: [],
      journalHeadHash: '0'.repeat(64),
      atMs: Date.now(),
    });
    const signature = signEd25519(ctx.terminalKey, body);
    link.send({ commandResult: { body, signature } }, { correlationId: env.messageId });
    max = Math.max(max, Number(cmd!.counter));
  }
  const before = link.pushed.length;
  const { reply } = await link.request({ commandPoll: { afterCounter: max } }, o.timeoutMs);
  expectThat(reply.body === 'commandPollDone', `CommandPoll answered with ${reply.body}`);
  await new Promise((r) => setTimeout(r, 300));
  const later = link.pushed.slice(before);
  const errors = [...later, ...link.strays].filter((e) => e.body === 'error');
  expectThat(errors.length === 0, `the acquirer answered results with ${errors[0]?.error?.code}`);
  const again = later.filter((e) => e.body === 'command');
  expectThat(again.length === 0, `${again.length} answered commands were delivered again`);
  ctx.rec(
    'command results',
    true,
    `${got.length} signed results taken; nothing redelivered after counter ${max}`,
  );
}

async function badFrame(ctx: KitContext): Promise<void> {
  const { link } = ctx;
  const before = link.pushed.length;
  // A frame whose payload is not an Envelope.
  link.writeRaw(Buffer.from([0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]));
  const reason = await link.waitClosed(ctx.o.timeoutMs);
  expectThat(reason, 'the acquirer kept the link open after a bad frame');
  const error = link.pushed.slice(before).find((e) => e.body === 'error');
  expectThat(error, 'the link closed without an ErrorReply');
  ctx.rec('bad frame: error then close', true, `ErrorReply ${error.error?.code}, then closed`);
}

export const commandChecks: Array<[string, (c: KitContext) => Promise<void>]> = [
  ['commands pushed on poll', delivery],
  ['command signatures', signatures],
  ['command counters and times', counters],
  ['command results', results],
  ['bad frame: error then close', badFrame],
];
