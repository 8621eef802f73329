import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Returns the admin token: `CONSOLE_ADMIN_TOKEN` / `SIDECAR_ADMIN_TOKEN` if set, else the one in
 * `DATA_DIR/admin-token`, generating it (mode 0600) at first start.
 */
export function ensureAdminToken(path: string, env: NodeJS.ProcessEnv): { token: string; source: 'env' | 'file' | 'generated' } {
  const fromEnv = env.CONSOLE_ADMIN_TOKEN || env.SIDECAR_ADMIN_TOKEN;
  if (fromEnv) return { token: fromEnv, source: 'env' };
  if (existsSync(path)) {
    const token = readFileSync(path, 'utf8').trim();
    if (token.length >= 16) {
      chmodSync(path, 0o600);
      return { token, source: 'file' };
    }
  }
  mkdirSync(dirname(path), { recursive: true });
  const token = randomBytes(32).toString('base64url');
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return { token, source: 'generated' };
}

/** Constant-time string comparison (hashes first so lengths never leak). */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}
