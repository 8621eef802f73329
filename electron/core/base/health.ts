/** One component's health for /api/v1/health (contract §9). */
export interface ComponentHealth {
  status: 'UP' | 'DOWN';
  details?: Record<string, unknown>;
}

/** One readiness contribution for /health/ready: fields shown, and whether it blocks readiness. */
export interface ReadinessPart {
  fields: Record<string, boolean>;
  ready: boolean;
}

/**
 * Where services report their health. The HTTP health routes aggregate it; a service that is not
 * built simply never registers, so it is not listed.
 */
export class HealthRegistry {
  private readonly components = new Map<string, () => ComponentHealth | Promise<ComponentHealth>>();
  private readonly readiness = new Map<string, () => ReadinessPart | Promise<ReadinessPart>>();
  private readonly liveness = new Map<string, () => unknown>();

  addComponent(name: string, probe: () => ComponentHealth | Promise<ComponentHealth>): void {
    this.components.set(name, probe);
  }
  addReadiness(name: string, probe: () => ReadinessPart | Promise<ReadinessPart>): void {
    this.readiness.set(name, probe);
  }
  /** Extra fields in GET /health (e.g. `gateway`). */
  addLivenessField(name: string, probe: () => unknown): void {
    this.liveness.set(name, probe);
  }

  async componentStates(): Promise<Record<string, ComponentHealth>> {
    const out: Record<string, ComponentHealth> = {};
    for (const [name, probe] of this.components) {
      try {
        out[name] = await probe();
      } catch (err) {
        out[name] = { status: 'DOWN', details: { error: (err as Error).message } };
      }
    }
    return out;
  }

  async readinessState(): Promise<{ ready: boolean; fields: Record<string, boolean> }> {
    let ready = true;
    const fields: Record<string, boolean> = {};
    for (const [, probe] of this.readiness) {
      try {
        const part = await probe();
        Object.assign(fields, part.fields);
        ready &&= part.ready;
      } catch {
        ready = false;
      }
    }
    return { ready, fields };
  }

  livenessFields(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, probe] of this.liveness) out[name] = probe();
    return out;
  }
}
