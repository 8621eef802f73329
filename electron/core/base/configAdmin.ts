import { maskSecretsDeep } from '../../../shared/mask.js';
import { issuesToDetails } from '../../../shared/contracts/validate.js';
import type { ConfigIssue, ConfigStore, Layer } from './config.js';
import { AppError, ErrorCode } from './errors.js';
import type { AuditPort } from './ports.js';

function invalid(issues: readonly ConfigIssue[]): AppError {
  return new AppError(ErrorCode.INVALID_REQUEST, 'Invalid config; nothing was changed', {
    details: issuesToDetails(issues),
  });
}

/**
 * Admin changes of the whole-console config (replace, patch, reload from disk): each is applied
 * through the ConfigStore (validated as a whole; an invalid change rejects with every bad field
 * and changes nothing) and then recorded in the audit log as `actor`, secrets masked. Every
 * surface that changes the config on an admin's behalf goes through here, so all audit alike.
 */
export class ConfigAdmin {
  constructor(
    private readonly config: ConfigStore,
    private readonly audit: AuditPort,
  ) {}

  /** Replaces the config.json layer. */
  replace(file: Layer, actor: string): void {
    const result = this.config.replaceFileLayer(file);
    if (!result.ok) throw invalid(result.issues);
    this.audit.record({ actor, action: 'config.replace', detail: maskSecretsDeep(file) });
  }

  /** Deep-merges `patch` into the config.json layer. */
  patch(patch: Layer, actor: string): void {
    const result = this.config.update(patch);
    if (!result.ok) throw invalid(result.issues);
    this.audit.record({ actor, action: 'config.patch', detail: maskSecretsDeep(patch) });
  }

  /** Re-reads config.json. */
  reload(actor: string): void {
    const result = this.config.reload();
    if (!result.ok) throw invalid(result.issues);
    this.audit.record({ actor, action: 'config.reload' });
  }
}
