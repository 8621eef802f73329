import type { Clock } from './clock.js';
import type { AuditPort, AuditRecord } from './ports.js';
import type { Store } from './store.js';

/** The AuditPort over the store's durable `audit_log` table, stamped with the injected clock. */
export class StoreAuditLog implements AuditPort {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  record(entry: AuditRecord): void {
    this.store.audit({ ...entry, at: this.clock.now() });
  }
}
