/**
 * The only bridge between the dashboard and Electron (CommonJS: sandboxed preloads cannot load
 * ES modules). Exposes connection facts and a few named native actions as `window.consoleBridge`;
 * never ipcRenderer itself. The main process checks every call's sender.
 */
import { contextBridge, ipcRenderer } from 'electron';
import type { ConsoleBridge } from '../../shared/contracts/bridge.js';

const connection = ipcRenderer.sendSync('console:connection') as { baseUrl: string; token: string; platform: string } | null;

if (connection) {
  const bridge: ConsoleBridge = {
    baseUrl: connection.baseUrl,
    token: connection.token,
    platform: connection.platform,
    openExternal: (url: string) => ipcRenderer.invoke('console:open-external', String(url)) as Promise<boolean>,
    openDataFolder: () => ipcRenderer.invoke('console:open-data-folder') as Promise<boolean>,
    getAutostart: () => ipcRenderer.invoke('console:get-autostart') as Promise<boolean>,
    setAutostart: (enabled: boolean) => ipcRenderer.invoke('console:set-autostart', enabled === true) as Promise<boolean>,
  };
  contextBridge.exposeInMainWorld('consoleBridge', bridge);
}
