import type { AlertmanagerWebhookBody, AlertsResponse, FiringAlert } from '../../../../shared/contracts/alerts.js';
import type { Clock } from '../../base/clock.js';

export interface AlertInboxOptions {
  clock: Clock;
  /** Most alerts kept; the oldest-heard ones go first beyond it. Default 500. */
  maxAlerts?: number;
  /**
   * A firing alert not repeated for this long is dropped (Alertmanager re-sends firing alerts every
   * repeat_interval, 4 h in resources/observability; so a dead Alertmanager cannot pin an alert on the
   * dashboard for ever). Default 5 h.
   */
  staleAfterMs?: number;
}

/** Alertmanager fingerprints are 16 hex digits; without one, the sorted label set identifies an alert. */
function fingerprintOf(labels: Record<string, string>, fingerprint: string | undefined): string {
  if (fingerprint) return fingerprint;
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

/**
 * Alerts Alertmanager sent to the console's webhook (`POST /api/alerts`): firing ones kept in
 * memory, resolved ones removed. Not persisted: after a restart Alertmanager's next repeat fills
 * it again.
 */
export class AlertInbox {
  private readonly alerts = new Map<string, FiringAlert>();
  private lastReceivedAt: number | null = null;
  private readonly maxAlerts: number;
  private readonly staleAfterMs: number;

  constructor(private readonly o: AlertInboxOptions) {
    this.maxAlerts = o.maxAlerts ?? 500;
    this.staleAfterMs = o.staleAfterMs ?? 5 * 3600_000;
  }

  /** Applies one webhook call; returns how many alerts it reported firing and resolved. */
  receive(body: AlertmanagerWebhookBody): { firing: number; resolved: number } {
    const now = this.o.clock.now();
    this.lastReceivedAt = now;
    let firing = 0;
    let resolved = 0;
    for (const a of body.alerts) {
      const key = fingerprintOf(a.labels, a.fingerprint);
      if (a.status === 'resolved') {
        resolved++;
        this.alerts.delete(key);
        continue;
      }
      firing++;
      this.alerts.delete(key); // re-insert: Map order is "least recently heard first"
      this.alerts.set(key, {
        fingerprint: key,
        alertname: a.labels.alertname ?? '(unnamed)',
        severity: a.labels.severity ?? 'none',
        summary: a.annotations?.summary ?? '',
        description: a.annotations?.description ?? '',
        labels: { ...a.labels },
        startsAt: a.startsAt ?? null,
        receivedAt: now,
        generatorURL: a.generatorURL ?? null,
      });
    }
    while (this.alerts.size > this.maxAlerts) this.alerts.delete(this.alerts.keys().next().value!);
    return { firing, resolved };
  }

  /** Firing alerts, critical first, then by name. */
  firing(): FiringAlert[] {
    const now = this.o.clock.now();
    for (const [key, a] of this.alerts) if (now - a.receivedAt > this.staleAfterMs) this.alerts.delete(key);
    const rank = (s: string) => (s === 'critical' ? 0 : s === 'warning' ? 1 : 2);
    return [...this.alerts.values()].sort((a, b) => rank(a.severity) - rank(b.severity) || a.alertname.localeCompare(b.alertname) || a.fingerprint.localeCompare(b.fingerprint));
  }

  snapshot(): AlertsResponse {
    return { firing: this.firing(), lastReceivedAt: this.lastReceivedAt };
  }
}
