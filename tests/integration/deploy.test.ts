import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * resources/deploy: what can be checked without Docker or a running systemd. The unit is checked
 * with `systemd-analyze verify` where that exists (skipped otherwise); the Dockerfile and compose
 * file are checked for the facts the deployment depends on.
 */
const DEPLOY = resolve(__dirname, '../../resources/deploy');
const UNIT = join(DEPLOY, 'systemd/gpu-console.service');
const HAS_SYSTEMD_ANALYZE = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;

describe('resources/deploy', () => {
  it.skipIf(!HAS_SYSTEMD_ANALYZE)(`systemd-analyze verify accepts the unit (${HAS_SYSTEMD_ANALYZE ? 'found' : 'systemd-analyze not installed'})`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'unit-'));
    try {
      // ExecStart must name an executable on this machine: point it at this node.
      const text = readFileSync(UNIT, 'utf8').replace('ExecStart=/usr/bin/node', `ExecStart=${process.execPath}`);
      const copy = join(dir, 'gpu-console.service');
      writeFileSync(copy, text);
      const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
      // verify prints every unknown key or bad value on stderr, with the unit's name.
      expect(`${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('gpu-console.service'))).toEqual([]);
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the unit carries the contract §12 hardening and the data dir', () => {
    const text = readFileSync(UNIT, 'utf8');
    for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'ReadWritePaths=/var/lib/gpu-console', 'LimitNOFILE=65536', 'User=gpu-console', 'Environment=CONSOLE_DATA_DIR=/var/lib/gpu-console']) {
      expect(text).toContain(line);
    }
    expect(text).toMatch(/^ExecStart=\/usr\/bin\/node \/opt\/gpu-console\/dist\/electron\/core\/serve\.js$/m);
  });

  it('the Dockerfile runs the built serve entry as a non-root user, with a health check and a data volume', () => {
    const text = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8');
    expect(text).toMatch(/^USER console$/m);
    expect(text).toMatch(/^HEALTHCHECK .*\n.*\/health/m);
    expect(text).toMatch(/^VOLUME \["\/data"\]$/m);
    expect(text).toMatch(/^ARG RUNTIME_BASE=/m);
    expect(text).toContain('CMD ["node", "dist/electron/core/serve.js"]');
    // What it copies exists in a checkout (dist/ comes from the build stage).
    for (const p of ['package.json', 'package-lock.json', 'resources', 'shared/proto']) expect(existsSync(resolve(DEPLOY, '../..', p)), p).toBe(true);
  });

  it('docker-compose.yml mounts files that exist and publishes ports on loopback only', () => {
    const text = readFileSync(join(DEPLOY, 'docker-compose.yml'), 'utf8');
    const mounts = [...text.matchAll(/^\s+- (\.\.?\/[^:]+):/gm)].map((m) => m[1]!).filter((p) => !p.startsWith('./secrets'));
    expect(mounts.length).toBeGreaterThanOrEqual(5);
    for (const m of mounts) expect(existsSync(resolve(DEPLOY, m)), m).toBe(true);
    const ports = [...text.matchAll(/^\s+- '([^']+:\d+)'$/gm)].map((m) => m[1]!);
    expect(ports.length).toBeGreaterThanOrEqual(4);
    for (const p of ports) expect(p.startsWith('127.0.0.1:'), p).toBe(true);
    expect(text).toContain('CONSOLE_ALLOWED_HOSTS: console');
  });

  it('make-secrets.sh writes the three secret files once, private where they hold both', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deploy-'));
    try {
      cpSync(join(DEPLOY, 'make-secrets.sh'), join(dir, 'make-secrets.sh'));
      execFileSync('sh', [join(dir, 'make-secrets.sh')], { stdio: 'ignore' });
      const token = readFileSync(join(dir, 'secrets/console-admin-token'), 'utf8');
      const key = readFileSync(join(dir, 'secrets/console-api-key'), 'utf8');
      expect(token).toMatch(/^[0-9a-f]{48}$/);
      expect(key).toMatch(/^[0-9a-f]{48}$/);
      expect(readFileSync(join(dir, 'secrets/console.env'), 'utf8')).toBe(`CONSOLE_ADMIN_TOKEN=${token}\nCY_LLM_API_KEY=${key}\n`);
      expect(statSync(join(dir, 'secrets/console.env')).mode & 0o077).toBe(0);
      execFileSync('sh', [join(dir, 'make-secrets.sh')], { stdio: 'ignore' });
      expect(readFileSync(join(dir, 'secrets/console-admin-token'), 'utf8')).toBe(token);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
