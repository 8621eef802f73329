import { createStore } from 'zustand/vanilla';
import type { GatewayStatus, ProcessInfo, RuntimeMode, RuntimeStartRequest } from '../../../../shared/client/apiTypes.js';
import type { ConsoleClient } from '../../../../shared/client/consoleClient.js';
import { classify, type Availability } from '../../lib/resource.js';
import { errorText } from '../../lib/format.js';

export interface RuntimeState {
  availability: Availability;
  error: string | null;
  mode: RuntimeMode | null;
  gateway: GatewayStatus | null;
  processes: ProcessInfo[];
  /** Process whose log tail is shown. */
  selected: string;
  logs: string[];
  busy: boolean;
  message: string | null;
  refresh(admin: boolean): Promise<void>;
  select(name: string): void;
  /** Starts the gateway (contract §8.5 body). */
  startGateway(req: RuntimeStartRequest): Promise<void>;
  /** Starts/stops any supervised process by name ('gateway' uses §8.6 for stop). */
  startProcess(name: string): Promise<void>;
  stopProcess(name: string): Promise<void>;
}

export function createRuntimeStore(client: ConsoleClient) {
  return createStore<RuntimeState>()((set, get) => {
    const act = async (fn: () => Promise<string>) => {
      set({ busy: true, message: null, error: null });
      try {
        set({ message: await fn() });
      } catch (err) {
        set({ error: errorText(err) });
      } finally {
        set({ busy: false });
      }
    };
    return {
      availability: 'unknown',
      error: null,
      mode: null,
      gateway: null,
      processes: [],
      selected: 'gateway',
      logs: [],
      busy: false,
      message: null,
      async refresh(admin) {
        try {
          const [mode, gateway] = await Promise.all([client.runtimeMode(), client.gatewayStatus()]);
          set({ availability: 'ok', mode, gateway });
        } catch (err) {
          set(classify(err));
          return;
        }
        try {
          set({ processes: await client.processes() });
        } catch {
          // older builds list only the gateway
        }
        if (!admin) return;
        try {
          set({ logs: await client.processLogs(get().selected, 200) });
        } catch {
          set({ logs: [] });
        }
      },
      select: (name) => set({ selected: name, logs: [] }),
      startGateway: (req) =>
        act(async () => {
          const r = await client.startRuntime(req);
          return `Started run ${r.run_id} (PID ${r.pid})`;
        }),
      startProcess: (name) =>
        act(async () => {
          const p = await client.startProcess(name);
          return `${name}: ${p.state}${p.pid ? ` (PID ${p.pid})` : ''}`;
        }),
      stopProcess: (name) =>
        act(async () => {
          if (name === 'gateway') return (await client.stopRuntime()).message;
          const p = await client.stopProcess(name);
          return `${name}: ${p.state}`;
        }),
    };
  });
}
export type RuntimeStore = ReturnType<typeof createRuntimeStore>;
