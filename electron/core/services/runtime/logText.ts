import { isSecretKey, maskSecret } from '../../../../shared/mask.js';

const ASSIGNMENT = /\b([A-Za-z0-9_.-]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|COOKIE|AUTH)[A-Za-z0-9_.-]*)(["']?\s*[=:]\s*["']?)([^\s"',;)\]}]{3,})/gi;

/**
 * Masks secrets in log text before it leaves the console (contract §12): values of secret-looking
 * `KEY=value` / `"token": "value"` assignments, and any literal value of a secret-looking variable
 * of the child's environment, become `abcd****`.
 */
export function maskLogText(text: string, env: Readonly<Record<string, string>> = {}): string {
  let out = text;
  for (const [key, value] of Object.entries(env)) {
    if (value.length >= 6 && isSecretKey(key) && out.includes(value)) out = out.split(value).join(maskSecret(value));
  }
  return out.replace(ASSIGNMENT, (_m, key: string, sep: string, value: string) => `${key}${sep}${value.endsWith('****') ? value : maskSecret(value)}`);
}
