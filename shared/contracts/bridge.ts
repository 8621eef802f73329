/**
 * What Electron's preload exposes to the dashboard as `window.consoleBridge` (contextBridge).
 * Connection facts plus a few named native actions; never raw IPC. In a plain browser it is absent.
 */
export interface ConsoleBridge {
  /** The core's HTTP base URL, e.g. `http://127.0.0.1:8080`. */
  readonly baseUrl: string;
  /** The admin token (so the desktop user never pastes it). */
  readonly token: string;
  readonly platform: string;
  /** Opens an http(s) URL in the system browser (the main process validates it). */
  openExternal(url: string): Promise<boolean>;
  /** Opens the console's data folder in the file manager. */
  openDataFolder(): Promise<boolean>;
  /** Reads/sets "start at login". */
  getAutostart(): Promise<boolean>;
  setAutostart(enabled: boolean): Promise<boolean>;
}
