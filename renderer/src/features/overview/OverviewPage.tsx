import { useMemo, useState } from 'react';
import { useStore } from 'zustand';
import type { HealthDetails } from '../../../../shared/client/apiTypes.js';
import { useApp, useEveryTick } from '../../app/context.js';
import { gpuUtilization, tokensPerSecond } from '../../app/liveStore.js';
import { Badge, Empty, Gauge } from '../../app/components.js';
import { WINDOWS, type ChartLine } from '../../lib/chartTypes.js';
import { ChartWindowPicker } from '../../lib/ChartWindowPicker.js';
import { LiveChart } from '../../lib/LiveChart.js';
import { bytes, duration, num, pct } from '../../lib/format.js';
import { mergeWindows } from '../../lib/series.js';
import { alertsFor } from './alerts.js';

const CPU_LINES: ChartLine[] = [
  { key: 'system', name: 'system CPU', color: 'var(--chart-1)' },
  { key: 'process', name: 'core CPU', color: 'var(--chart-2)' },
  { key: 'memory', name: 'RAM', color: 'var(--chart-3)' },
  { key: 'gpu', name: 'GPU', color: 'var(--chart-4)' },
];
const RPS_LINES: ChartLine[] = [
  { key: 'rps', name: 'requests/s', color: 'var(--chart-1)' },
  { key: 'tps', name: 'tokens/s', color: 'var(--chart-2)' },
];
const PERCENT: [number, number] = [0, 100];

export default function OverviewPage() {
  const { live, client } = useApp();
  const snapshot = useStore(live, (s) => s.snapshot);
  useStore(live, (s) => s.tick);
  const series = live.getState().series;
  const [windowMs, setWindowMs] = useState<number>(WINDOWS[0].ms);
  const [health, setHealth] = useState<HealthDetails | null>(null);
  useEveryTick(async () => {
    try {
      setHealth(await client.healthDetails());
    } catch {
      // the banner covers a lost connection
    }
  });
  const since = (snapshot?.time ?? Date.now()) - windowMs;
  const tick = useStore(live, (s) => s.tick);
  const cpuRows = useMemo(() => mergeWindows({ process: series.processCpu, system: series.systemCpu, memory: series.memory, gpu: series.gpuUtil }, since), [tick, since, series]);
  const rpsRows = useMemo(() => mergeWindows({ rps: series.requestsPerSecond, tps: series.tokensPerSecond }, since), [tick, since, series]);

  if (!snapshot) return <Empty title="Waiting for live data">The dashboard is connecting to the console&apos;s live stream…</Empty>;
  const c = snapshot.core;
  const gpu = gpuUtilization(snapshot);
  const tps = tokensPerSecond(snapshot);
  const alerts = alertsFor(snapshot, health);
  const components = health?.components ?? {};
  return (
    <>
      <h2>Overview</h2>
      <div className="grid" data-testid="overview-gauges">
        <Gauge label="System CPU" value={c.systemCpuPercent} text={pct(c.systemCpuPercent)} />
        <Gauge label="System RAM" value={(c.systemMemUsedBytes / Math.max(1, c.systemMemTotalBytes)) * 100} text={`${bytes(c.systemMemUsedBytes)} / ${bytes(c.systemMemTotalBytes)}`} />
        <Gauge label="GPU" value={gpu} text={gpu === undefined ? 'no GPU reported' : pct(gpu)} />
        <div className="card">
          <div className="muted">Requests/s · tokens/s</div>
          <div className="stat" data-testid="rps">
            {num(c.requestsPerSecond, 2)} · {tps === undefined ? '—' : num(tps)}
          </div>
          <div className="muted">
            core CPU {pct(c.processCpuPercent)} · RSS {bytes(c.rssBytes)} · loop lag {num(c.eventLoopLagMs, 1)} ms · up {duration(c.uptimeSeconds)}
          </div>
        </div>
      </div>
      <div className="grid">
        <section className="card" aria-labelledby="svc-h">
          <h3 id="svc-h">Services</h3>
          <table>
            <thead>
              <tr>
                <th scope="col">Service</th>
                <th scope="col">State</th>
              </tr>
            </thead>
            <tbody>
              {Object.entries(components).map(([name, comp]) => (
                <tr key={name}>
                  <td>{name}</td>
                  <td>
                    <Badge tone={comp.status === 'UP' ? 'ok' : 'bad'}>{comp.status}</Badge>
                  </td>
                </tr>
              ))}
              {Object.keys(snapshot.services)
                .filter((n) => !(n in components))
                .map((name) => (
                  <tr key={name}>
                    <td>{name}</td>
                    <td>
                      <Badge tone="ok">live</Badge>
                    </td>
                  </tr>
                ))}
            </tbody>
          </table>
        </section>
        <section className="card" aria-labelledby="alerts-h">
          <h3 id="alerts-h">Alerts</h3>
          {alerts.length === 0 ? (
            <p className="muted">No alerts.</p>
          ) : (
            <ul>
              {alerts.map((a) => (
                <li key={a} className="warn">
                  {a}
                </li>
              ))}
            </ul>
          )}
        </section>
      </div>
      <ChartWindowPicker windowMs={windowMs} onChange={setWindowMs} />
      <div className="grid" style={{ gridTemplateColumns: 'repeat(auto-fill, minmax(420px, 1fr))', marginTop: 12 }}>
        <section className="card">
          <h3>CPU, RAM, GPU (%)</h3>
          <LiveChart
            label="CPU RAM GPU"
            rows={cpuRows}
            unit="%"
            domain={PERCENT}
            lines={CPU_LINES}
          />
        </section>
        <section className="card">
          <h3>Requests/s and tokens/s</h3>
          <LiveChart
            label="Throughput"
            rows={rpsRows}
            lines={RPS_LINES}
          />
        </section>
      </div>
    </>
  );
}
