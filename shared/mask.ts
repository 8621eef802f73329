/**
 * Masks a secret value the way the contract (§12) says: first 4 characters + `****`;
 * values of 4 characters or fewer show the first 2 + `****`; empty stays empty.
 */
export function maskSecret(value: string): string {
  if (value === '') return '';
  if (value.length <= 4) return `${value.slice(0, 2)}****`;
  return `${value.slice(0, 4)}****`;
}

/** Keys whose values are secrets (contract §2.1 plus credential/cookie). */
export const SECRET_KEY_PATTERN = /(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|COOKIE|AUTH)/i;

export function isSecretKey(key: string): boolean {
  return SECRET_KEY_PATTERN.test(key);
}

/** Returns a deep copy of `value` in which every string under a secret-looking key is masked. */
export function maskSecretsDeep<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => maskSecretsDeep(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (isSecretKey(k) && typeof v === 'string') out[k] = maskSecret(v);
      else if (isSecretKey(k) && Array.isArray(v)) out[k] = v.map((x) => (typeof x === 'string' ? maskSecret(x) : x));
      else out[k] = maskSecretsDeep(v);
    }
    return out as T;
  }
  return value;
}
