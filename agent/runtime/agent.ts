import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { AcquirerChannel } from '../../protocol/channel.ts';
import type { EnvelopeBody, Envelope } from '../../protocol/messages.ts';
import type { Config } from '../config.ts';
import type { Clock } from '../../base/clock.ts';
import { systemClock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import { silentLogger } from '../../base/log.ts';
import { openCore, type Core } from './core.ts';
import { isAgentError } from '../../base/errors.ts';
import { SerialRunner } from './serial-runner.ts';
import { warmOpenBatchTally } from '../policy/open-batch-tally.ts';
import { Settlement, type SettleReport, type SettlementStep } from '../policy/settlement.ts';
import type { CommandProcessor, FollowUp } from '../policy/commands.ts';
import { TerminalKeyFile } from '../policy/keys.ts';
import type { UnlockCodes } from '../policy/unlock-code.ts';
import type { RiskMonitor } from '../policy/risk-monitor.ts';
import type { SelfTest, SelfTestReport } from '../policy/selftest.ts';
import {
  activate,
  requestDeactivation,
  sendPendingDeactivationRequest,
  type FlowDeps,
} from '../policy/acquirer-flows.ts';
import { startSchedules, type Schedules } from './scheduler.ts';
import { statusView, type StatusView } from './views.ts';
import { watchLink } from './link-watch.ts';
import type { ClockTrust } from '../policy/clock-trust.ts';
import { JournalGuard } from './journal-guard.ts';
import { rememberAcquirerKey } from './recovery.ts';
import { heartbeatReport, openAcquirerLink } from './acquirer-link.ts';
import { RiskReports } from './risk-reports.ts';
import { destroyCredentialsIfDeactivated } from './credentials.ts';
import { enterMaintenance } from './maintenance.ts';
import type { Forwarder, ForwardRound, ForwardStep } from '../policy/forwarding.ts';
import { ForwardingLoop } from './forwarding-loop.ts';
import { policyParts } from './policy-parts.ts';
import { settleQueued } from './queued-settlement.ts';

/**
 * The whole agent around the offline core: the acquirer channel, settlement, signed
 * commands, risk rules, self-test and schedules. Every job that changes settlement or
 * lifecycle state runs on one SerialRunner; the channel only delivers and the cron only
 * asks, so a dropped link or a doubled tick changes nothing the journal has not decided.
 */

export interface AgentOptions {
  config: Config;
  clock?: Clock;
  log?: Logger;
  /** Replaces the TLS connect (tests put a fault-injecting proxy here). */
  connect?: () => Duplex;
  /** Start node-cron schedules (default true). */
  schedules?: boolean;
  /** Fault injection for crash tests: called after each durable settlement or deactivation step. */
  faultHook?: (step: SettlementStep | 'deactivated', id: string) => void;
  /** Fault injection for crash tests: called at each step of advice forwarding. */
  adviceHook?: (step: ForwardStep, key: string) => void;
}

export class Agent {
  readonly core: Core;
  readonly channel: AcquirerChannel;
  readonly settlement: Settlement;
  readonly commands: CommandProcessor;
  readonly unlockCodes: UnlockCodes;
  readonly selfTest: SelfTest;
  readonly runner: SerialRunner;
  readonly risk: RiskMonitor;
  /** Store-and-forward of offline approvals (agent/policy/forwarding.ts). */
  readonly forwarder: Forwarder;
  private readonly forwarding: ForwardingLoop;
  /** Whether the acquirer clock may be used for command times (docs/protocol.md). */
  readonly clockTrust: ClockTrust;
  /** Full chain walks at start and on a schedule (journal-guard.ts). */
  readonly guard: JournalGuard;
  private readonly terminalKeyFile: TerminalKeyFile;
  private readonly riskReports: RiskReports;
  private scheduler: Schedules | undefined;
  private stopped = false;
  /** The background page check of a large journal, when one runs (tests await it). */
  pageCheck: Promise<boolean> | undefined;

  constructor(private readonly opts: AgentOptions) {
    const config = opts.config;
    const clock = opts.clock ?? systemClock;
    const log = opts.log ?? silentLogger();
    // The risk monitor needs the core and the core reports to it: wire through a late-bound hook.
    let observe: (row: Parameters<RiskMonitor['observe']>[0]) => void = () => {};
    this.core = openCore(config, {
      clock,
      log,
      onRecorded: (row) => {
        observe(row);
        this.forwarding.onRecorded(row.seq);
      },
    });
    this.runner = new SerialRunner(log);
    this.terminalKeyFile = new TerminalKeyFile(
      path.join(config.dataDir, 'keys', 'terminal-ed25519.pem'),
    );
    this.channel = openAcquirerLink({
      config,
      core: this.core,
      commands: () => this.commands,
      clock,
      log,
      connect: opts.connect,
    });
    const watched = watchLink(this.channel, { store: this.core.store, clock, log, config });
    this.clockTrust = watched.clockTrust;
    this.riskReports = new RiskReports(this.core.store, this.channel, this.runner);
    this.settlement = new Settlement({
      terminal: this.core.terminal,
      store: this.core.store,
      clock,
      log,
      config,
      link: this.channel,
      afterStep: opts.faultHook,
      runStep: (step) => this.runner.run('settle-step', step),
    });
    this.forwarding = new ForwardingLoop({
      ...{ store: this.core.store, clock, log, config, link: this.channel, runner: this.runner },
      afterStep: opts.adviceHook,
      isUp: () => this.channel.isUp && !this.stopped,
      onDrained: () => this.afterAdvicesAnswered(),
    });
    this.forwarder = this.forwarding.forwarder;
    const parts = policyParts({
      ...{ core: this.core, config, clock, log, channel: this.channel },
      clockTrust: this.clockTrust,
      terminalKeyFile: this.terminalKeyFile,
      reportRisk: (hit) => this.riskReports.queue(hit),
    });
    this.commands = parts.commands;
    this.unlockCodes = parts.unlockCodes;
    this.selfTest = parts.selfTest;
    this.risk = parts.risk;
    observe = (row) => this.risk.observe(row);
    this.guard = new JournalGuard({
      core: this.core,
      runner: this.runner,
      verifyEveryMs: config.storage.verifyEveryMs,
      afterPass: () => void this.afterVerified(),
    });
    this.channel.onUnsolicited = (env, reply) => this.onUnsolicited(env, reply);
    // Not a runner job itself: contact queues its own steps, so commands slot in between.
    this.channel.on('up', (info) => {
      // The remote witness first: contact settles, and must not on a journal found behind.
      if (info.headCheck?.behind) this.guard.acquirerSaysBehind(info.headCheck);
      void this.contact().catch((e) => this.logFailure('contact', e));
    });
  }

  get log(): Logger {
    return this.core.log;
  }

  /** Self-test, link, schedules. A deactivated terminal starts with neither link nor schedules. */
  private tallyWarm: Promise<void> | undefined;

  async start(): Promise<void> {
    this.finishDestroyingCredentials();
    // The whole chain first, before the self-test writes its checkpoint into the file.
    this.pageCheck = this.guard.start();
    if (!this.core.store.frozen) {
      this.selfTest.run({ full: false });
      rememberAcquirerKey(this.opts.config, this.core.store);
    }
    if (this.core.terminal.status().state === 'deactivated') {
      this.log.warn('the terminal is deactivated: it answers status only');
      return;
    }
    this.channel.start();
    // After a start with a large open batch, status and the cutover then read only new rows.
    const { timeZone, settlement } = this.opts.config;
    const day = { timeZone, startHour: settlement.businessDayStartHour };
    this.tallyWarm = warmOpenBatchTally(this.core.store, () => this.core.clock.now(), day).catch(
      (e) => this.logFailure('open batch tally', e),
    );
    if (this.opts.schedules !== false) {
      this.scheduler = startSchedules(this.opts.config, this.log, {
        onCutover: () => this.nightlyCutover(),
        onHeartbeat: () => this.heartbeatTick(),
      });
    }
  }

  /** After a deferred start-up walk passed: the self-test and the contact that waited for it. */
  private async afterVerified(): Promise<void> {
    await this.runner.run('selftest', () => this.selfTest.run({ full: false })).catch(() => {});
    rememberAcquirerKey(this.opts.config, this.core.store);
    if (this.channel.isUp) await this.contact().catch((e) => this.logFailure('contact', e));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.scheduler?.stop();
    await this.forwarding.stop();
    await this.channel.close();
    await this.guard.stop();
    await this.pageCheck;
    await this.tallyWarm;
    await this.runner.idle().catch(() => {});
    this.core.close();
  }

  status(): StatusView {
    const c = this.core;
    const identity = c.identity();
    return statusView(c.store, c.terminal.status(), {
      terminalId: this.opts.config.terminalId,
      identity,
      currency: identity?.currency ?? this.opts.config.currency,
      now: c.clock.now(),
      firmwareVersion: this.opts.config.firmwareVersion,
      link: { up: this.channel.isUp, clockOffsetMs: this.channel.clockOffsetMs ?? null },
    });
  }

  /** Cut over now (whatever the date) and settle every queued batch. */
  async settleNow(reason = 'settle now'): Promise<SettleReport & { closed: string | null }> {
    const closed = await this.settlement.cutoverInSlices({ force: true, reason });
    const report = await this.settleQueued();
    return { ...report, closed: closed?.batchId ?? null };
  }

  /** The cron's nightly ask: one cutover per business date, then settle. */
  async nightlyCutover(): Promise<SettleReport> {
    await this.settlement.cutoverInSlices({ force: false, reason: 'nightly cutover' });
    return this.settleQueued();
  }

  /**
   * The cron's heartbeat: a quick self-test (which also moves the chain checkpoint, so a
   * restart re-walks only recent rows) and, if the link is up, contact with the acquirer.
   */
  async heartbeatTick(): Promise<void> {
    await this.runner.run('selftest', () => this.selfTest.run({ full: false }));
    // Expiry runs with the link down too: that is when advices get stuck.
    await this.runner.run('advice-expiry', () => this.forwarder.expireDue());
    if (this.channel.isUp) await this.contact();
  }

  activate(code: string, by: string): Promise<void> {
    return this.runner.run('activate', async () => {
      // The flow makes the signing key only once it knows the terminal is unactivated:
      // making it here would bring a destroyed key back on a deactivated terminal.
      await activate(this.flowDeps(), code, by);
      rememberAcquirerKey(this.opts.config, this.core.store);
    });
  }

  requestDeactivation(reason: string, by: string): Promise<void> {
    return this.runner.run('request-deactivation', async () => {
      requestDeactivation(this.flowDeps(), reason, by);
      if (this.channel.isUp)
        await sendPendingDeactivationRequest(this.flowDeps()).catch((e) =>
          this.logFailure('deactivation request', e),
        );
    });
  }

  runSelfTest(full: boolean): Promise<SelfTestReport> {
    return this.runner.run('selftest', () => this.selfTest.run({ full }));
  }

  /** The maintenance lock, set once the authorisations in flight finish (maintenance.ts). */
  enterMaintenance(by: string): Promise<{ drained: boolean }> {
    return enterMaintenance(this.core, this.opts.config.maintenance.drainTimeoutMs, by);
  }

  private flowDeps(): FlowDeps {
    return {
      core: this.core,
      link: this.channel,
      commands: this.commands,
      terminalKey: () => this.terminalKeyFile.loadOrCreate(),
    };
  }

  /** Settles queued batches in order, one runner job per step (queued-settlement.ts). */
  private settleQueued(): Promise<SettleReport> {
    return settleQueued(this.core, this.channel, this.settlement);
  }

  /** Everything owed to the acquirer on contact: reports, requests, commands, batches, final settlement. */
  private async contact(): Promise<void> {
    const deps = this.flowDeps();
    const job = (name: string, fn: () => Promise<unknown>) =>
      this.runner.run(name, fn).catch((e) => this.logFailure(name, e));
    await job('risk-reports', () => this.riskReports.send());
    await job('deactivation-request', () => sendPendingDeactivationRequest(deps));
    if (this.commands.pinnedKey()) {
      // Commands pushed in answer queue behind this job and run as soon as it ends.
      await job('command-poll', () =>
        this.channel.request({ commandPoll: { afterCounter: this.commands.lastCounter() } }),
      );
    }
    // Advices before batches: a batch waits for the answers to its offline approvals.
    await this.forwardAdvices({ ignoreBackoff: true }).catch((e) => this.logFailure('advices', e));
    await this.settleQueued();
    if (this.core.terminal.status().state === 'deactivating') await this.finalizeDeactivation();
  }

  /** Forwards queued offline advices now (when the link is up); resolves with the last round. */
  forwardAdvices(opts: { ignoreBackoff?: boolean } = {}): Promise<ForwardRound> {
    return this.forwarding.kick(opts);
  }

  /** Every advice answered: a cutover that waited for them, and a deactivation, go on. */
  private async afterAdvicesAnswered(): Promise<void> {
    const deferred = this.settlement.deferred;
    if (deferred) await this.settlement.cutoverInSlices(deferred);
    if (deferred) await this.settleQueued();
    if (this.core.terminal.status().state === 'deactivating') await this.finalizeDeactivation();
  }

  private onUnsolicited(env: Envelope, reply: (body: EnvelopeBody) => void): void {
    if (!env.command) {
      this.log.warn({ kind: env.body }, 'unexpected message from the acquirer ignored');
      return;
    }
    const signed = env.command;
    this.runner.submit('command', () => {
      const outcome = this.commands.handle(signed);
      reply({ commandResult: outcome.result });
      this.followUp(outcome.followUp);
    });
  }

  private followUp(f: FollowUp): void {
    if (f === 'settle-now')
      void this.settleNow('settle-now command').catch((e) => this.logFailure('settle now', e));
    if (f === 'finalize-deactivation')
      void this.finalizeDeactivation().catch((e) => this.logFailure('final settlement', e));
  }

  /**
   * The last cutover and settlement; only when nothing is left unsettled does the terminal
   * become deactivated, and only then are its keys destroyed. Called again on every
   * contact until it finishes, so an acquirer outage only delays it.
   */
  async finalizeDeactivation(): Promise<boolean> {
    const { terminal } = this.core;
    if (terminal.status().state !== 'deactivating')
      return terminal.status().state === 'deactivated';
    await this.settlement.cutoverInSlices({
      force: true,
      reason: 'final cutover before deactivation',
    });
    const report = await this.settleQueued();
    const done = await this.runner.run('final-settlement', () => {
      if (terminal.status().state !== 'deactivating')
        return terminal.status().state === 'deactivated';
      // An authorisation still waiting for its host may yet journal an approval and its reversal:
      // until it lands (and a later contact settles it) the terminal is not done.
      // (An unanswered offline advice keeps its batch open, so it counts here as unsettled.)
      const unsettled =
        this.settlement.unsettledTransactions() + this.core.payments.authorisationsInFlight;
      if (unsettled > 0) {
        this.log.warn({ unsettled, pending: report.pending }, 'deactivation waits for settlement');
        return false;
      }
      terminal.apply(
        { type: 'final-settlement-done', unsettled },
        'every transaction settled and acknowledged',
        'final-settlement',
      );
      this.opts.faultHook?.('deactivated', this.opts.config.terminalId);
      this.finishDestroyingCredentials();
      return true;
    });
    if (done) {
      await this.scheduler?.stop();
      // One last report, so the acquirer hears "deactivated" from the terminal itself.
      const last = heartbeatReport(this.core, this.opts.config);
      await this.channel
        .request({ heartbeat: { ...last, clientTimeMs: this.core.clock.now() } })
        .catch(() => {});
      void this.channel.close();
    }
    return done;
  }

  private finishDestroyingCredentials(): void {
    destroyCredentialsIfDeactivated(this.core, this.opts.config, this.terminalKeyFile);
  }

  private logFailure(what: string, e: unknown): void {
    this.log.warn(
      { what, code: isAgentError(e) ? e.code : undefined, err: (e as Error).message },
      `${what} failed; will retry on next contact`,
    );
  }
}
