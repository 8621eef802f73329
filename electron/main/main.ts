/**
 * Electron shell (thin, DESIGN rule 7): single instance, paths, createConsole(), a window on the
 * core's own URL, the tray, quit that awaits console.close() (a drain; quit again to abort). Everything else is the headless core,
 * which the dashboard reaches over HTTP like any local app.
 */
import { app, BrowserWindow, dialog, ipcMain, Menu, nativeImage, session, shell, Tray, type IpcMainEvent, type IpcMainInvokeEvent, type MenuItemConstructorOptions, type WebContents } from 'electron';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createConsole, type Console } from '../core/console.js';
import { Autostart } from './autostart.js';
import { isDashboardUrl, isSafeExternalUrl, isTrustedSender, windowCsp } from './policy.js';
import { trayStatusLine } from './trayStatus.js';

/** IPC channels the preload uses (and nothing else is answered). */
export const IPC = {
  connection: 'console:connection',
  openExternal: 'console:open-external',
  openDataFolder: 'console:open-data-folder',
  getAutostart: 'console:get-autostart',
  setAutostart: 'console:set-autostart',
} as const;

const here = dirname(fileURLToPath(import.meta.url)); // <app>/dist/electron/main
const appRoot = join(here, '..', '..', '..');

/** better-sqlite3 built for Electron's ABI (see docs/deploy.md, Storage); the Node build stays for tests. */
function sqliteBinding(): string | undefined {
  const candidates = app.isPackaged
    ? [join(process.resourcesPath, 'native', 'better_sqlite3.node')]
    : [join(appRoot, 'build', 'electron-native', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node')];
  return candidates.find((p) => existsSync(p));
}

/** Console flags come after a literal `--` (Electron and Chromium own the rest of argv). */
function consoleArgs(): string[] {
  const i = process.argv.indexOf('--');
  return i >= 0 ? process.argv.slice(i + 1) : [];
}

class Shell {
  private core: Console | null = null;
  private origin = '';
  private window: BrowserWindow | null = null;
  private tray: Tray | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private quitting = false;
  private stopped = false;
  private readonly autostart = new Autostart({
    platform: process.platform,
    execPath: process.execPath,
    loginItems: { get: () => app.getLoginItemSettings().openAtLogin, set: (openAtLogin) => app.setLoginItemSettings({ openAtLogin, args: ['--hidden'] }) },
  });

  async run(): Promise<void> {
    app.on('second-instance', () => this.showWindow());
    app.on('web-contents-created', (_e, contents) => this.lockDown(contents));
    // Closing the last window keeps the app in the tray (no default quit).
    app.on('window-all-closed', () => undefined);
    app.on('before-quit', (event) => {
      const again = this.quitting;
      this.quitting = true;
      if (this.stopped || !this.core) return;
      event.preventDefault();
      // The first quit drains (ops.shutdownGraceSeconds); a second one while draining aborts the rest.
      if (again) void this.core.destroy().catch(() => undefined);
      else void this.shutdown();
    });
    await app.whenReady();
    const dataDir = process.env.CONSOLE_DATA_DIR ?? join(app.getPath('userData'), 'data');
    try {
      this.core = createConsole({ argv: consoleArgs(), dataDir, sqliteNativeBinding: sqliteBinding() });
      this.origin = (await this.core.start()).httpUrl;
    } catch (err) {
      dialog.showErrorBox('GPU Console could not start', `${(err as Error).message}\n\nData folder: ${dataDir}`);
      this.stopped = true;
      app.exit(2);
      return;
    }
    this.secureSession();
    this.registerIpc();
    this.createTray();
    if (!process.argv.includes('--hidden')) this.showWindow();
  }

  private async shutdown(): Promise<void> {
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.tray?.destroy();
    try {
      await this.core?.close();
    } catch (err) {
      process.stderr.write(`console: error while stopping: ${(err as Error).message}\n`);
    }
    this.stopped = true;
    app.quit();
  }

  /** Deny every permission, fence navigation to the dashboard origin, add the CSP. */
  private secureSession(): void {
    const s = session.defaultSession;
    s.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
    s.setPermissionCheckHandler(() => false);
    s.webRequest.onHeadersReceived((details, callback) => {
      if (!isDashboardUrl(details.url, this.origin)) {
        callback({ responseHeaders: details.responseHeaders });
        return;
      }
      callback({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [windowCsp(this.origin)] } });
    });
  }

  private lockDown(contents: WebContents): void {
    contents.on('will-navigate', (event, url) => {
      if (!isDashboardUrl(url, this.origin)) {
        event.preventDefault();
        if (isSafeExternalUrl(url, this.origin)) void shell.openExternal(url);
      }
    });
    contents.on('will-redirect', (event, url) => {
      if (!isDashboardUrl(url, this.origin)) event.preventDefault();
    });
    contents.on('will-attach-webview', (event) => event.preventDefault());
    contents.setWindowOpenHandler(({ url }) => {
      if (isSafeExternalUrl(url, this.origin)) void shell.openExternal(url);
      return { action: 'deny' };
    });
  }

  private trusted(event: IpcMainEvent | IpcMainInvokeEvent): boolean {
    return isTrustedSender({ frameUrl: event.senderFrame?.url, webContentsId: event.sender.id }, this.window?.webContents.id ?? null, this.origin);
  }

  private registerIpc(): void {
    ipcMain.on(IPC.connection, (event) => {
      event.returnValue = this.trusted(event) && this.core ? { baseUrl: this.origin, token: this.core.adminToken, platform: process.platform } : null;
    });
    ipcMain.handle(IPC.openExternal, async (event, url: unknown) => {
      if (!this.trusted(event) || typeof url !== 'string' || !isSafeExternalUrl(url, this.origin)) return false;
      await shell.openExternal(url);
      return true;
    });
    ipcMain.handle(IPC.openDataFolder, async (event) => {
      if (!this.trusted(event) || !this.core) return false;
      return (await shell.openPath(this.core.settings.dataDir)) === '';
    });
    ipcMain.handle(IPC.getAutostart, (event) => (this.trusted(event) ? this.autostart.enabled() : false));
    ipcMain.handle(IPC.setAutostart, (event, enabled: unknown) => {
      if (!this.trusted(event) || typeof enabled !== 'boolean') return false;
      this.autostart.set(enabled);
      this.refreshTray();
      return true;
    });
  }

  private showWindow(): void {
    if (!this.origin) return;
    if (this.window) {
      this.window.show();
      this.window.focus();
      return;
    }
    const win = new BrowserWindow({
      width: 1280,
      height: 860,
      title: 'GPU Console',
      icon: join(appRoot, 'resources', 'icons', 'icon.png'),
      show: false,
      webPreferences: {
        preload: join(here, '..', 'preload', 'preload.cjs'),
        contextIsolation: true,
        sandbox: true,
        nodeIntegration: false,
        nodeIntegrationInSubFrames: false,
        webSecurity: true,
        allowRunningInsecureContent: false,
        webviewTag: false,
        spellcheck: false,
      },
    });
    this.window = win;
    win.once('ready-to-show', () => win.show());
    win.on('close', (event) => {
      if (!this.quitting) {
        event.preventDefault();
        win.hide();
      }
    });
    win.on('closed', () => (this.window = null));
    void win.loadURL(`${this.origin}/`);
  }

  private createTray(): void {
    const icon = nativeImage.createFromPath(join(appRoot, 'resources', 'icons', 'tray.png'));
    this.tray = new Tray(icon);
    this.tray.setToolTip('GPU Console');
    this.tray.on('click', () => this.showWindow());
    this.refreshTray();
    this.statusTimer = setInterval(() => this.refreshTray(), 5000);
    this.statusTimer.unref();
  }

  private refreshTray(): void {
    if (!this.tray || !this.core) return;
    const status = trayStatusLine(this.core.snapshots.collect().services);
    this.tray.setToolTip(`GPU Console: ${status}`);
    const services: MenuItemConstructorOptions[] = this.core.serviceControls().map((svc) => ({
      label: svc.name,
      type: 'checkbox',
      checked: svc.running(),
      click: () => {
        void (svc.running() ? svc.stop() : svc.start()).finally(() => this.refreshTray());
      },
    }));
    this.tray.setContextMenu(
      Menu.buildFromTemplate([
        { label: status, enabled: false },
        { type: 'separator' },
        { label: 'Open dashboard', click: () => this.showWindow() },
        { label: 'Services', submenu: services.length ? services : [{ label: 'none', enabled: false }] },
        { label: 'Start at login', type: 'checkbox', checked: this.autostart.enabled(), click: (item) => this.autostart.set(item.checked) },
        { type: 'separator' },
        { label: 'Quit', click: () => app.quit() },
      ]),
    );
  }
}

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  void new Shell().run();
}
