import { createStore } from 'zustand/vanilla';
import type { GatewayStatus, RuntimeMode, RuntimeStartRequest } from '../../../../shared/client/apiTypes.js';
import type { ConsoleClient } from '../../../../shared/client/consoleClient.js';
import { classify, type Availability } from '../../lib/resource.js';
import { errorText } from '../../lib/format.js';

export interface RuntimeState {
  availability: Availability;
  error: string | null;
  mode: RuntimeMode | null;
  gateway: GatewayStatus | null;
  logs: string[];
  busy: boolean;
  message: string | null;
  refresh(): Promise<void>;
  start(req: RuntimeStartRequest): Promise<void>;
  stop(): Promise<void>;
}

export function createRuntimeStore(client: ConsoleClient) {
  return createStore<RuntimeState>()((set, get) => ({
    availability: 'unknown',
    error: null,
    mode: null,
    gateway: null,
    logs: [],
    busy: false,
    message: null,
    async refresh() {
      try {
        const [mode, gateway] = await Promise.all([client.runtimeMode(), client.gatewayStatus()]);
        set({ availability: 'ok', error: null, mode, gateway });
      } catch (err) {
        set(classify(err));
        return;
      }
      try {
        set({ logs: (await client.runtimeLogs()).slice(-500) });
      } catch {
        // no log tail endpoint in this build: the status still shows
      }
    },
    async start(req) {
      set({ busy: true, message: null, error: null });
      try {
        const r = await client.startRuntime(req);
        set({ message: `Started run ${r.run_id} (PID ${r.pid})` });
      } catch (err) {
        set({ error: errorText(err) });
      } finally {
        set({ busy: false });
      }
      await get().refresh();
    },
    async stop() {
      set({ busy: true, message: null, error: null });
      try {
        set({ message: (await client.stopRuntime()).message });
      } catch (err) {
        set({ error: errorText(err) });
      } finally {
        set({ busy: false });
      }
      await get().refresh();
    },
  }));
}
export type RuntimeStore = ReturnType<typeof createRuntimeStore>;
