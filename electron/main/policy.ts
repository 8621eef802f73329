/**
 * The Electron window's security decisions as pure functions (no Electron import), so they are
 * unit-tested under Node: which navigations stay in the window, which URLs may open in the system
 * browser, and which IPC senders are the dashboard.
 */

/** True when `url` has exactly the dashboard's origin (scheme, host and port). */
export function isDashboardUrl(url: string, dashboardOrigin: string): boolean {
  try {
    return new URL(url).origin === new URL(dashboardOrigin).origin;
  } catch {
    return false;
  }
}

/**
 * True when `url` may be handed to `shell.openExternal`: plain http(s) with a host, no
 * credentials, not the dashboard itself (that stays in the window). `file:`, `javascript:`,
 * custom protocols and the like are refused (they can launch local programs).
 */
export function isSafeExternalUrl(url: string, dashboardOrigin: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return false;
  if (!u.hostname || u.username || u.password) return false;
  if (url.length > 2048) return false;
  return !isDashboardUrl(url, dashboardOrigin);
}

/** An IPC sender as the handler sees it (`event.senderFrame.url` and the sender's id). */
export interface IpcSenderInfo {
  frameUrl: string | undefined;
  webContentsId: number;
}

/** IPC is answered only for the dashboard window's main frame at the dashboard origin. */
export function isTrustedSender(sender: IpcSenderInfo, windowWebContentsId: number | null, dashboardOrigin: string): boolean {
  if (windowWebContentsId === null || sender.webContentsId !== windowWebContentsId) return false;
  return sender.frameUrl !== undefined && isDashboardUrl(sender.frameUrl, dashboardOrigin);
}

/** Content-Security-Policy the window enforces on top of the core's own header. */
export function windowCsp(dashboardOrigin: string): string {
  const u = new URL(dashboardOrigin);
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    `connect-src 'self' ws://${u.host}`,
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'none'",
  ].join('; ');
}
