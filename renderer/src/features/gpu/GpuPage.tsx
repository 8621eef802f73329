import { useEffect, useState } from 'react';
import { useStore } from 'zustand';
import { useApp, useEveryTick } from '../../app/context.js';
import { Badge, Empty, ErrorText, Gauge, NotAvailable } from '../../app/components.js';
import { bytes, clockTime, duration, pct } from '../../lib/format.js';
import { gpuDevices } from '../../app/liveStore.js';
import { path } from '../../lib/read.js';
import { clusterPanel, ttlLeft } from './store.js';

const mib = (v: number | null | undefined) => (typeof v === 'number' ? v * 1024 * 1024 : undefined);

function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => performance.now());
  useEffect(() => {
    const t = setInterval(() => setNow(performance.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export default function GpuPage() {
  const { gpu, live, session } = useApp();
  const st = useStore(gpu);
  const admin = useStore(session, (s) => s.admin);
  const snapshot = useStore(live, (s) => s.snapshot);
  const now = useNow();
  const [confirming, setConfirming] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; message: string } | null>(null);
  useEveryTick(() => gpu.getState().refresh());

  const devices = gpuDevices(snapshot);
  const noGpuReason = path(snapshot?.services.monitoring, ['telemetry', 'reason']);
  const cluster = clusterPanel(snapshot?.services.monitoring);
  if (st.availability === 'missing') return <><h2>GPU &amp; tasks</h2><NotAvailable service="monitoring service" what="GET /api/v1/monitoring/gpu-lock/status" /></>;
  const lock = st.lock;
  const ttl = ttlLeft(lock, st.lockReceivedAt, now);
  const hb = st.heartbeats;
  return (
    <>
      <h2>GPU &amp; tasks</h2>
      <ErrorText error={st.error} />
      <div className="grid">
        {devices.length === 0 ? (
          <div className="card">
            <div className="muted">GPUs</div>
            <p>No GPU telemetry{typeof noGpuReason === 'string' ? `: ${noGpuReason}` : ' (CPU-only machine, or monitoring not running)'}.</p>
          </div>
        ) : (
          devices.map((d) => (
            <Gauge
              key={d.index}
              label={`GPU ${d.index}${d.name ? ` · ${d.name}` : ''}`}
              value={d.utilizationGpu ?? undefined}
              text={`${pct(d.utilizationGpu)} · ${bytes(mib(d.memoryUsedMiB))} / ${bytes(mib(d.memoryTotalMiB))}${typeof d.temperatureC === 'number' ? ` · ${d.temperatureC} °C` : ''}`}
            />
          ))
        )}
      </div>
      <section className="card" aria-labelledby="lock-h" data-testid="gpu-lock">
        <h3 id="lock-h">GPU lock {st.lockKey}</h3>
        {!lock ? (
          <p className="muted">Loading…</p>
        ) : lock.is_locked ? (
          <>
            <p>
              <Badge tone="warn">LOCKED</Badge> held by <strong data-testid="lock-holder">{lock.lock_holder}</strong> for {duration(lock.lock_age)} · TTL left{' '}
              <strong data-testid="lock-ttl">{ttl === null ? '—' : `${Math.ceil(ttl)} s`}</strong>
            </p>
            {!confirming ? (
              <button type="button" className="danger" disabled={!admin} onClick={() => setConfirming(true)}>
                Force release…
              </button>
            ) : (
              <div className="row" role="alertdialog" aria-labelledby="confirm-text">
                <span id="confirm-text">
                  Force-release {lock.lock_key}? {lock.lock_holder} may still be using the GPU; a training job holding it is marked failed.
                </span>
                <button
                  type="button"
                  className="danger"
                  onClick={async () => {
                    setConfirming(false);
                    setResult(await gpu.getState().forceRelease());
                  }}
                >
                  Yes, release it
                </button>
                <button type="button" onClick={() => setConfirming(false)} autoFocus>
                  Cancel
                </button>
              </div>
            )}
            {!admin ? <p className="muted">Sign in with the admin token to force-release.</p> : null}
          </>
        ) : (
          <p>
            <Badge tone="ok">FREE</Badge> No task holds the GPU. Training jobs and model loads take it automatically; local apps use POST /api/v1/monitoring/gpu-lock/acquire.
          </p>
        )}
        {result ? <p role="status" className={result.ok ? 'ok' : 'bad'}>{result.message}</p> : null}
        {lock?.recent_history?.length ? (
          <details>
            <summary>Recent lock history</summary>
            <ul>
              {lock.recent_history.slice().reverse().map((h, i) => (
                <li key={i}>
                  {clockTime(h.timestamp * 1000)} {h.action} · {h.task_name} {h.success ? '' : '(failed)'}
                </li>
              ))}
            </ul>
          </details>
        ) : null}
      </section>
      <section className="card" aria-labelledby="hb-h">
        <h3 id="hb-h">Task heartbeats</h3>
        {!hb ? (
          <p className="muted">Loading…</p>
        ) : hb.statistics.total_tasks === 0 && Object.keys(hb.active_tasks).length === 0 ? (
          <Empty title="No tasks are sending heartbeats">Training jobs beat automatically; a local app starts one with POST /api/v1/monitoring/heartbeat/task/&lt;id&gt;/start.</Empty>
        ) : (
          <>
            <p>
              <Badge tone="ok">{hb.statistics.active_count} active</Badge> <Badge tone="muted">{hb.statistics.dead_count} dead</Badge>{' '}
              <Badge tone={hb.statistics.orphaned_count > 0 ? 'bad' : 'muted'}>{hb.statistics.orphaned_count} orphaned</Badge>
            </p>
            <table>
              <thead>
                <tr><th scope="col">Task</th><th scope="col">Name</th><th scope="col">State</th><th scope="col">Last beat</th></tr>
              </thead>
              <tbody>
                {Object.entries(hb.active_tasks).map(([id, t]) => (
                  <tr key={id}><td>{id}</td><td>{t.task_name}</td><td className="ok">{t.status}</td><td>{clockTime(t.last_update * 1000)}</td></tr>
                ))}
                {hb.orphaned_tasks.map((t) => (
                  <tr key={`o-${t.task_id}`}><td>{t.task_id}</td><td>—</td><td className="bad">orphaned</td><td>{t.last_update === null ? '—' : clockTime(t.last_update * 1000)}</td></tr>
                ))}
                {hb.dead_tasks.map((t) => (
                  <tr key={`d-${t.task_id}`}><td>{t.task_id}</td><td>—</td><td className="muted">dead</td><td>{t.last_update ? clockTime(t.last_update * 1000) : '—'}</td></tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </section>
      {cluster ? (
        <section className="card" aria-labelledby="cluster-h" data-testid="gpu-cluster">
          <h3 id="cluster-h">Cluster · this node {cluster.nodeId}</h3>
          <p>
            {cluster.redisConnected ? <Badge tone="ok">Redis connected</Badge> : <Badge tone="bad">Redis unreachable</Badge>} monitor lease:{' '}
            <strong data-testid="lease-holder">{cluster.leaseHolder ?? 'nobody'}</strong>
            {!cluster.redisConnected ? ' · cluster lock and heartbeat operations fail (503) until Redis is back; nobody times tasks out meanwhile' : ''}
            {cluster.redisConnected && cluster.error ? ` · last read failed: ${cluster.error}` : ''}
          </p>
          <table>
            <thead>
              <tr><th scope="col">Node</th><th scope="col">GPUs</th><th scope="col">Held locks</th><th scope="col">Tasks</th></tr>
            </thead>
            <tbody>
              {cluster.nodes.map((n) => (
                <tr key={n.node}>
                  <td>{n.node}{n.online ? '' : ' (offline)'}</td>
                  <td>{n.gpus > 0 ? `${n.gpus} NVIDIA` : '—'} · lockable {n.lockable.join(', ') || '—'}</td>
                  <td>{cluster.locks.filter((l) => l.node === n.node).map((l) => `${l.lockKey} (${l.holder ?? '?'})`).join(', ') || '—'}</td>
                  <td>{cluster.tasks.filter((t) => t.node === n.node && t.status === 'running').length} running</td>
                </tr>
              ))}
            </tbody>
          </table>
          {cluster.tasks.length > 0 ? (
            <table>
              <thead>
                <tr><th scope="col">Node</th><th scope="col">Task</th><th scope="col">Name</th><th scope="col">GPU lock</th><th scope="col">State</th><th scope="col">Last beat</th></tr>
              </thead>
              <tbody>
                {cluster.tasks.map((t) => (
                  <tr key={`${t.node}:${t.taskId}`}>
                    <td>{t.node}</td><td>{t.taskId}</td><td>{t.owner}</td><td>{t.lockKey ?? '—'}</td>
                    <td className={t.status === 'running' ? 'ok' : t.status === 'timed_out' ? 'bad' : 'muted'}>{t.status}</td>
                    <td>{t.status === 'running' ? `${duration(t.lastBeatAgeSeconds)} ago` : '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : null}
        </section>
      ) : null}
    </>
  );
}
