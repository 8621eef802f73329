import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * "Start at login". Electron's login-item API covers macOS and Windows; on Linux the freedesktop
 * way is a `.desktop` file in `~/.config/autostart` (what this writes).
 */
export interface AutostartOptions {
  platform: NodeJS.Platform;
  execPath: string;
  /** Electron's app.getLoginItemSettings / setLoginItemSettings (macOS, Windows). */
  loginItems: { get(): boolean; set(enabled: boolean): void };
  /** XDG config home (tests pass a temp dir). */
  configHome?: string;
}

export class Autostart {
  constructor(private readonly o: AutostartOptions) {}

  private desktopFile(): string {
    return join(this.o.configHome ?? process.env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'autostart', 'gpu-console.desktop');
  }

  enabled(): boolean {
    return this.o.platform === 'linux' ? existsSync(this.desktopFile()) : this.o.loginItems.get();
  }

  set(enabled: boolean): void {
    if (this.o.platform !== 'linux') {
      this.o.loginItems.set(enabled);
      return;
    }
    const file = this.desktopFile();
    if (!enabled) {
      rmSync(file, { force: true });
      return;
    }
    mkdirSync(join(file, '..'), { recursive: true });
    // Exec quoting per the Desktop Entry spec: the path in double quotes, with ", `, $, \ escaped.
    const exec = `"${this.o.execPath.replace(/(["`$\\])/g, '\\$1')}" --hidden`;
    writeFileSync(file, ['[Desktop Entry]', 'Type=Application', 'Name=GPU Console', `Exec=${exec}`, 'X-GNOME-Autostart-enabled=true', 'Terminal=false', ''].join('\n'), { mode: 0o644 });
  }
}
