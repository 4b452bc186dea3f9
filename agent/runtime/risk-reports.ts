import type { Store } from '../../storage/store.ts';
import type { AcquirerChannel } from '../../protocol/channel.ts';
import type { RiskHit } from '../policy/risk-monitor.ts';
import type { SerialRunner } from './serial-runner.ts';

const META_RISK_REPORTS = 'risk_reports_pending';

/**
 * Risk hits owed to the acquirer. Each is kept in the state table until the acquirer has
 * acknowledged it, so a dropped link or a restart only delays the report.
 */
export class RiskReports {
  constructor(
    private readonly store: Store,
    private readonly channel: AcquirerChannel,
    private readonly runner: SerialRunner,
  ) {}

  /** Keeps the hit, and sends it now if the link is up. */
  queue(hit: RiskHit): void {
    const { store } = this;
    store.atomically(() =>
      store.state.setJson(META_RISK_REPORTS, [
        ...(store.state.getJson<RiskHit[]>(META_RISK_REPORTS) ?? []),
        hit,
      ]),
    );
    if (this.channel.isUp) this.runner.submit('risk-report', () => this.send());
  }

  /** Sends the kept hits in order, forgetting each one only once it is acknowledged. */
  async send(): Promise<void> {
    const { store } = this;
    for (;;) {
      const queue = store.state.getJson<RiskHit[]>(META_RISK_REPORTS) ?? [];
      const hit = queue[0];
      if (!hit) return;
      await this.channel.request({
        riskReport: { rule: hit.rule, detail: hit.detail, atMs: hit.at },
      });
      store.atomically(() =>
        store.state.setJson(
          META_RISK_REPORTS,
          (store.state.getJson<RiskHit[]>(META_RISK_REPORTS) ?? []).slice(1),
        ),
      );
    }
  }
}
