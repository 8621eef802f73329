// Profiles the console and the Fastify floor under the same load; prints µs of CPU per request by category.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
const root = '/work/main';
function start(args: string[], re: RegExp, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise<{ child: typeof child; url: string }>((res, rej) => {
    let buf = '';
    const on = (d: Buffer) => { buf += d; const m = re.exec(buf); if (m) res({ child, url: m[1]! }); };
    child.stdout.on('data', on); child.stderr.on('data', on);
    child.once('exit', (c) => rej(new Error('exit ' + c + buf)));
  });
}
const body = JSON.stringify({ model: 'nvidia/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] });
async function load(url: string, c: number, n: number) {
  const pool = new Pool(url, { connections: c }); let next = 0;
  await Promise.all(Array.from({ length: c }, async () => { while (next++ < n) { const r = await pool.request({ method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body }); await r.body.dump(); if (r.statusCode !== 200) throw new Error('status ' + r.statusCode); } }));
  await pool.destroy();
}
const N = Number(process.env.N ?? 20000);
const sim = await start(['--import', 'tsx', 'scripts/upstream-sim.ts', '--port', '0', '--rpm', '100000000', '--latency-ms', '0'], /listening on (http:\/\/[\d.:]+)\/v1/);
const out: Record<string, Record<string, number>> = {};
for (const kind of (process.env.KINDS ?? 'fastify,node,console').split(',')) {
  const profDir = mkdtempSync(join(tmpdir(), 'cpuprof-'));
  const p = kind === 'console'
    ? await start(['--cpu-prof', '--cpu-prof-dir', profDir, 'scripts/serve.mjs', '--port', '0', '--grpc-port', '0'], /console ready (http:\/\/\S+) grpc/, { CONSOLE_DATA_DIR: mkdtempSync(join(tmpdir(), 'pc-')), CONSOLE_LOG_LEVEL: 'warn', SIDECAR_LOG_LEVEL: 'WARNING', SIDECAR_UPSTREAM: `${sim.url}/v1`, SIDECAR_RATE_RPM: '1000000', SIDECAR_BUCKET_CAPACITY: '1000000', SIDECAR_API_KEY: 'k' })
    : await start(['--cpu-prof', '--cpu-prof-dir', profDir, '--import', 'tsx', 'scripts/bench/bare-proxy.ts', '--upstream', sim.url, '--kind', kind], /listening on (http:\/\/[\d.:]+)/);
  await load(p.url, 8, 3000);
  await new Promise((r) => setTimeout(r, 500));
  const t0 = Date.now();
  const m0 = Number(process.hrtime.bigint() / 1000n);
  await load(p.url, 8, N);
  const t1 = Date.now();
  const m1 = Number(process.hrtime.bigint() / 1000n);
  await new Promise((r) => setTimeout(r, 300));
  p.child.kill('SIGTERM'); await new Promise((r) => p.child.once('exit', r));
  type Node = { id: number; callFrame: { functionName: string; url: string }; hitCount: number; children?: number[] };
  const prof = JSON.parse(readFileSync(join(profDir, readdirSync(profDir)[0]!), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number };
  // only samples inside the measured window
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  let t = prof.startTime; // µs
  const cat = new Map<string, number>();
  const startUs = m0, endUs = m1;
  // profile timestamps are monotonic µs, not epoch: align by the last sample ≈ exit time
  const total = prof.timeDeltas.reduce((a, b) => a + b, 0);
  const offset = 0; // both CLOCK_MONOTONIC µs
  void total;
  const classify = (id: number): string => {
    const n = byId.get(id)!;
    const fn = n.callFrame.functionName, url = n.callFrame.url;
    if (fn === '(idle)') return 'idle';
    if (fn === '(garbage collector)') return 'gc';
    if (fn === '(program)') return 'program';
    if (url === '') {
      // native: attribute to the nearest JS caller category
      let p = parent.get(id);
      while (p !== undefined && byId.get(p)!.callFrame.url === '') p = parent.get(p);
      return p === undefined ? 'native' : `native<${classify(p)}`;
    }
    if (url.includes('/dist/electron/') || url.includes('/dist/shared/') || url.includes('/scripts/bench/')) return 'ours';
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    if (m) return m[1]!;
    if (url.startsWith('node:')) return url.replace(/^node:(internal\/)?/, 'node:').split('/').slice(0, 2).join('/');
    return url;
  };
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i]!;
    const at = t + offset;
    if (at < startUs || at > endUs) continue;
    const k = classify(prof.samples[i]!);
    cat.set(k, (cat.get(k) ?? 0) + (prof.timeDeltas[i + 1] ?? 0));
  }
  if (process.env.DETAIL) {
    const fns = new Map<string, number>();
    let tt = prof.startTime;
    for (let i = 0; i < prof.samples.length; i++) {
      tt += prof.timeDeltas[i]!;
      if (tt < startUs || tt > endUs) continue;
      const id = prof.samples[i]!;
      const c = classify(id);
      if (!process.env.DETAIL.split(',').some((d) => c === d || c === `native<${d}`)) continue;
      const n = byId.get(id)!;
      const k = `${c} ${n.callFrame.functionName} ${n.callFrame.url.replace(/.*\/(dist|node_modules)\//, '')}`;
      fns.set(k, (fns.get(k) ?? 0) + (prof.timeDeltas[i + 1] ?? 0));
    }
    for (const [k, v] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(((v / N)).toFixed(2).padStart(7), k);
  }
  const busy = [...cat].filter(([k]) => k !== 'idle').reduce((a, [, v]) => a + v, 0);
  out[kind] = Object.fromEntries([['_busy_us_per_req', Math.round(busy / N)], ['_rps', Math.round(N / ((t1 - t0) / 1000))], ...[...cat].filter(([k]) => k !== 'idle').sort((a, b) => b[1] - a[1]).slice(0, 18).map(([k, v]) => [k, Math.round((v / N) * 10) / 10])]);
  console.log(kind, JSON.stringify(out[kind]));
}
sim.child.kill('SIGTERM');
