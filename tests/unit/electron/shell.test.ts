import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Autostart } from '../../../electron/main/autostart.js';
import { isDashboardUrl, isSafeExternalUrl, isTrustedSender, windowCsp } from '../../../electron/main/policy.js';
import { trayStatusLine } from '../../../electron/main/trayStatus.js';

const ORIGIN = 'http://127.0.0.1:8080';

describe('window policy', () => {
  it('keeps only the dashboard origin in the window', () => {
    expect(isDashboardUrl('http://127.0.0.1:8080/limiter', ORIGIN)).toBe(true);
    expect(isDashboardUrl('http://127.0.0.1:8081/', ORIGIN)).toBe(false);
    expect(isDashboardUrl('http://localhost:8080/', ORIGIN)).toBe(false);
    expect(isDashboardUrl('https://127.0.0.1:8080/', ORIGIN)).toBe(false);
    expect(isDashboardUrl('not a url', ORIGIN)).toBe(false);
  });
  it('opens only plain web links externally', () => {
    expect(isSafeExternalUrl('https://huggingface.co/bartowski', ORIGIN)).toBe(true);
    expect(isSafeExternalUrl('http://example.com/x?y=1', ORIGIN)).toBe(true);
    for (const bad of ['file:///etc/passwd', 'javascript:alert(1)', 'smb://host/share', 'vscode://x', 'https://user:pw@example.com/', 'http://127.0.0.1:8080/config', `https://e.com/${'a'.repeat(3000)}`, '']) {
      expect(isSafeExternalUrl(bad, ORIGIN), bad).toBe(false);
    }
  });
  it('answers IPC only from the dashboard window at the dashboard origin', () => {
    expect(isTrustedSender({ frameUrl: `${ORIGIN}/`, webContentsId: 3 }, 3, ORIGIN)).toBe(true);
    expect(isTrustedSender({ frameUrl: `${ORIGIN}/`, webContentsId: 4 }, 3, ORIGIN)).toBe(false);
    expect(isTrustedSender({ frameUrl: 'https://evil.example/', webContentsId: 3 }, 3, ORIGIN)).toBe(false);
    expect(isTrustedSender({ frameUrl: undefined, webContentsId: 3 }, 3, ORIGIN)).toBe(false);
    expect(isTrustedSender({ frameUrl: `${ORIGIN}/`, webContentsId: 3 }, null, ORIGIN)).toBe(false);
  });
  it('has a CSP without inline or remote scripts', () => {
    const csp = windowCsp(ORIGIN);
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/script-src[^;]*unsafe/);
    expect(csp).toContain('connect-src \'self\' ws://127.0.0.1:8080');
  });
});

describe('tray status line', () => {
  it('names the loaded model, the queue and GPU use', () => {
    expect(
      trayStatusLine({
        engine: { loadedModels: [{ id: 'qwen' }], queue: { total: 2 } },
        limiter: { queue: { current_size: 3 }, retreat: { state: 'retreat' } },
        monitoring: { telemetry: { latest: { gpus: [{ utilizationGpu: 40 }, { utilizationGpu: 60 }] } } },
      }),
    ).toBe('model qwen · queue 5 · GPU 50% · limiter retreating');
    expect(trayStatusLine({ engine: { loadedModels: [], queue: { total: 0 } }, monitoring: { telemetry: { latest: null } } })).toBe('no model loaded · queue 0 · no GPU telemetry');
    expect(trayStatusLine({})).toBe('running');
  });
});

describe('autostart', () => {
  it('writes and removes an XDG autostart entry on Linux', () => {
    const home = mkdtempSync(join(tmpdir(), 'xdg-'));
    try {
      const a = new Autostart({ platform: 'linux', execPath: '/opt/GPU Console/gpu-console', configHome: home, loginItems: { get: () => false, set: () => undefined } });
      expect(a.enabled()).toBe(false);
      a.set(true);
      const file = join(home, 'autostart', 'gpu-console.desktop');
      expect(readFileSync(file, 'utf8')).toContain('Exec="/opt/GPU Console/gpu-console" --hidden');
      expect(a.enabled()).toBe(true);
      a.set(false);
      expect(existsSync(file)).toBe(false);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
  it("uses Electron's login items elsewhere", () => {
    let on = false;
    const a = new Autostart({ platform: 'win32', execPath: 'x', loginItems: { get: () => on, set: (v) => (on = v) } });
    a.set(true);
    expect(a.enabled()).toBe(true);
  });
});

describe('electron-builder.yml', () => {
  const require = createRequire(import.meta.url);
  const yaml = require('js-yaml') as { load(s: string): unknown };
  const Ajv = require('ajv') as new (o: object) => { validate(s: unknown, d: unknown): boolean; errors: unknown };
  const config = yaml.load(readFileSync('electron-builder.yml', 'utf8')) as Record<string, unknown>;

  it("validates against electron-builder's own schema", () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    const ok = ajv.validate(JSON.parse(readFileSync(require.resolve('app-builder-lib/scheme.json'), 'utf8')), config);
    expect(ok, JSON.stringify(ajv.errors)).toBe(true);
  });
  it('targets AppImage + deb, NSIS and dmg, unpacks native code, never rebuilds node_modules in place', () => {
    expect((config.linux as { target: string[] }).target).toEqual(['AppImage', 'deb']);
    expect((config.win as { target: string[] }).target).toEqual(['nsis']);
    expect((config.mac as { target: string[] }).target).toEqual(['dmg']);
    const unpack = config.asarUnpack as string[];
    expect(unpack).toContain('node_modules/better-sqlite3/**');
    expect(unpack).toContain('node_modules/@node-llama-cpp/**');
    expect(config.npmRebuild).toBe(false);
    expect(JSON.stringify(config.extraResources)).toContain('native/better_sqlite3.node');
  });
});
