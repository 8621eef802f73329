import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';

/**
 * The files under resources/observability: checked with the real tools (promtool, amtool; CI
 * installs Debian's prometheus and prometheus-alertmanager, a machine without them skips those
 * tests), and every metric a rule or a dashboard query names must exist on a running console.
 */
const OBS = resolve(__dirname, '../../resources/observability');
const RULES = join(OBS, 'prometheus/rules/console-alerts.yml');
const DASHBOARD = join(OBS, 'grafana/dashboards/console.json');

function has(bin: string): boolean {
  return spawnSync(bin, ['--version'], { stdio: 'ignore' }).status === 0;
}
const PROMTOOL = has('promtool');
const PROMETHEUS = has('prometheus');
/** Debian names the binary prometheus-alertmanager; upstream builds call it alertmanager. */
const ALERTMANAGER = ['prometheus-alertmanager', 'alertmanager'].find(has);
const AMTOOL = has('amtool');
const NO_PROMTOOL = 'promtool not installed (apt-get install prometheus)';
const NO_AMTOOL = 'amtool not installed (apt-get install prometheus-alertmanager)';

function run(bin: string, args: string[], cwd?: string): string {
  try {
    return execFileSync(bin, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${bin} ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
  }
}

/** PromQL words that are not metric names. */
const PROMQL_WORDS = new Set([
  'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'inf', 'nan',
]);
/** Series Prometheus makes itself, not the console. */
const SYNTHETIC = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);

/** Metric names in a PromQL expression (label matchers, strings, durations and groupings removed). */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+\w+/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?/g)) {
    const [, name, call] = m;
    if (call || PROMQL_WORDS.has(name!.toLowerCase()) || /^\d/.test(name!)) continue;
    names.add(name!);
  }
  return [...names].filter((n) => !SYNTHETIC.has(n));
}

function ruleExpressions(): { name: string; expr: string }[] {
  // The rules file is plain YAML written by us: take each `expr:` (one line or a `|` block).
  const lines = readFileSync(RULES, 'utf8').split('\n');
  const out: { name: string; expr: string }[] = [];
  let alert = '';
  for (let i = 0; i < lines.length; i++) {
    const a = /^\s*- alert:\s*(\S+)/.exec(lines[i]!);
    if (a) alert = a[1]!;
    const e = /^(\s*)expr:\s*(.*)$/.exec(lines[i]!);
    if (!e) continue;
    if (e[2]!.trim() !== '|') {
      out.push({ name: alert, expr: e[2]! });
      continue;
    }
    const block: string[] = [];
    while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || lines[i + 1]!.search(/\S/) > e[1]!.length)) block.push(lines[++i]!);
    out.push({ name: alert, expr: block.join('\n') });
  }
  return out;
}

interface Panel {
  title?: string;
  type: string;
  datasource?: { uid?: string };
  targets?: { expr?: string }[];
  panels?: Panel[];
}
function dashboardExpressions(): { name: string; expr: string }[] {
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; panels: Panel[] };
  const out: { name: string; expr: string }[] = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) out.push({ name: p.title ?? '', expr: t.expr ?? '' });
      if (p.panels) walk(p.panels);
    }
  };
  walk(dash.panels);
  return out;
}

/** Metric families the exposition declares (`# TYPE`), with a histogram's _bucket/_sum/_count. */
function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m;
    names.add(name!);
    if (type === 'histogram' || type === 'summary') for (const s of ['_bucket', '_sum', '_count']) names.add(name! + s);
  }
  return names;
}

describe('observability files', () => {
  it('metricNames() reads names out of PromQL', () => {
    expect(metricNames('sum by (instance, job) (rate(a_total{result="refused"}[5m])) / sum by (instance) (rate(a_total[5m])) > 0.1')).toEqual(['a_total']);
    expect(metricNames('x == 0 and on (instance, job) max_over_time(y[1h]) == 1')).toEqual(['x', 'y']);
    expect(metricNames('histogram_quantile(0.5, sum by (le) (rate(h_bucket[5m])))')).toEqual(['h_bucket']);
  });

  it.skipIf(!PROMTOOL)(`promtool check rules and test rules pass (${PROMTOOL ? 'promtool found' : NO_PROMTOOL})`, () => {
    expect(run('promtool', ['check', 'rules', RULES])).toMatch(/SUCCESS/);
    // The unit tests fire every alert on synthetic series and check healthy ones stay silent.
    expect(run('promtool', ['test', 'rules', 'console-alerts.test.yml'], join(OBS, 'prometheus/tests'))).toMatch(/SUCCESS/);
  });

  it.skipIf(!PROMTOOL)('promtool check config passes (credentials file stood in for by a temp one)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'obs-prom-'));
    try {
      cpSync(join(OBS, 'prometheus'), dir, { recursive: true });
      const key = join(dir, 'console-api-key');
      writeFileSync(key, 'test-key\n', { mode: 0o600 });
      const cfg = join(dir, 'prometheus.yml');
      const text = readFileSync(cfg, 'utf8');
      expect(text).toContain('/etc/prometheus/secrets/console-api-key');
      writeFileSync(cfg, text.replace('/etc/prometheus/secrets/console-api-key', key));
      expect(run('promtool', ['check', 'config', cfg])).toMatch(/SUCCESS: 19 rules found/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!AMTOOL)(`amtool check-config passes (${AMTOOL ? 'amtool found' : NO_AMTOOL})`, () => {
    const out = run('amtool', ['check-config', join(OBS, 'alertmanager/alertmanager.yml')]);
    expect(out).toMatch(/SUCCESS/);
    expect(out).toMatch(/1 inhibit rules/);
  });

  it('the Alertmanager webhook points at the console POST /api/alerts with the admin token', () => {
    const text = readFileSync(join(OBS, 'alertmanager/alertmanager.yml'), 'utf8');
    expect(text).toContain('url: http://console:8080/api/alerts');
    expect(text).toContain('send_resolved: true');
    expect(text).toContain('credentials_file: /etc/alertmanager/secrets/console-admin-token');
  });

  it('the Grafana dashboard uses the provisioned datasource in every query', () => {
    const ds = readFileSync(join(OBS, 'grafana/provisioning/datasources/prometheus.yml'), 'utf8');
    expect(ds).toMatch(/uid: prometheus/);
    const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; refresh: string; panels: Panel[] };
    expect(dash.refresh).toBe('30s');
    const queries = dash.panels.filter((p) => p.type !== 'row');
    expect(queries.length).toBeGreaterThan(20);
    for (const p of queries) {
      expect(p.datasource?.uid, p.title).toBe('prometheus');
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
    }
  });

  describe('every metric a rule or a dashboard names exists on a running console', () => {
    let c: TestConsole;
    let text: string;
    beforeAll(async () => {
      // A configured limiter provider, so the sidecar_* series have samples too.
      c = await startConsole({ config: { limiter: { upstream_url: 'http://127.0.0.1:9/v1' } } });
      text = await (await fetch(`${c.url}/metrics`)).text();
    });
    afterAll(async () => {
      await c?.close();
    });

    it('rule expressions', () => {
      const exposed = exposedNames(text);
      const exprs = ruleExpressions();
      expect(exprs.length).toBe(19);
      const named = new Set(exprs.flatMap((e) => metricNames(e.expr)));
      expect([...named]).toEqual(expect.arrayContaining(['sidecar_queue_max_size', 'console_gpu_lock_held_seconds_total', 'console_heartbeat_beats_total', 'console_training_steps_total']));
      const missing = exprs.flatMap(({ name, expr }) => metricNames(expr).filter((n) => !exposed.has(n)).map((n) => `${name}: ${n}`));
      expect(missing).toEqual([]);
    });

    it('dashboard queries', () => {
      const exposed = exposedNames(text);
      const exprs = dashboardExpressions();
      const named = new Set(exprs.flatMap((e) => metricNames(e.expr)));
      expect(named.size).toBeGreaterThan(25);
      const missing = exprs.flatMap(({ name, expr }) => metricNames(expr).filter((n) => !exposed.has(n)).map((n) => `${name}: ${n}`));
      expect(missing).toEqual([]);
    });

    it('the limiter series the rules compare have samples for the configured provider', () => {
      for (const name of ['sidecar_queue_max_size', 'sidecar_queue_depth', 'sidecar_retreat_state', 'sidecar_upstream_429_rate', 'sidecar_health_status']) {
        expect(text, name).toMatch(new RegExp(`^${name}\\{[^}]*provider="nvidia"[^}]*\\} \\d`, 'm'));
      }
      expect(text).toMatch(/^sidecar_queue_max_size\{provider="nvidia"\} 500$/m);
      expect(text).toMatch(/^console_heartbeat_beats_total\{result="refused"\} 0$/m);
    });
  });

  describe.skipIf(!PROMETHEUS || !ALERTMANAGER)(`a real Prometheus and Alertmanager against a running console (${PROMETHEUS && ALERTMANAGER ? 'binaries found' : 'prometheus or alertmanager not installed'})`, () => {
    let c: TestConsole;
    let dir: string;
    const children: ChildProcess[] = [];
    const freePort = () =>
      new Promise<number>((res, rej) => {
        const srv = createServer().listen(0, '127.0.0.1', () => {
          const { port } = srv.address() as { port: number };
          srv.close(() => res(port));
        });
        srv.on('error', rej);
      });
    const until = async <T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> => {
      const end = Date.now() + ms;
      let last: unknown;
      while (Date.now() < end) {
        try {
          const v = await fn();
          if (v !== undefined) return v;
        } catch (err) {
          last = err;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    };
    let promUrl = '';
    let amUrl = '';

    beforeAll(async () => {
      c = await startConsole({ config: { limiter: { upstream_url: 'http://127.0.0.1:9/v1' } } });
      dir = mkdtempSync(join(tmpdir(), 'obs-e2e-'));
      const consoleHost = new URL(c.url).host;
      const [promPort, amPort] = [await freePort(), await freePort()];
      promUrl = `http://127.0.0.1:${promPort}`;
      amUrl = `http://127.0.0.1:${amPort}`;
      writeFileSync(join(dir, 'admin-token'), c.adminToken, { mode: 0o600 });
      writeFileSync(join(dir, 'api-key'), c.adminToken, { mode: 0o600 });
      // The shipped files, pointed at this console and these ports, with shorter intervals.
      cpSync(join(OBS, 'prometheus/rules'), join(dir, 'rules'), { recursive: true });
      const prom = readFileSync(join(OBS, 'prometheus/prometheus.yml'), 'utf8')
        .replace('/etc/prometheus/secrets/console-api-key', join(dir, 'api-key'))
        .replace("'console:8080'", `'${consoleHost}'`)
        .replace("'alertmanager:9093'", `'127.0.0.1:${amPort}'`)
        .replace("'localhost:9090'", `'127.0.0.1:${promPort}'`)
        .replace(/scrape_interval: 15s/, 'scrape_interval: 1s')
        .replace(/evaluation_interval: 15s/, 'evaluation_interval: 1s');
      writeFileSync(join(dir, 'prometheus.yml'), prom);
      const am = readFileSync(join(OBS, 'alertmanager/alertmanager.yml'), 'utf8')
        .replace('/etc/alertmanager/secrets/console-admin-token', join(dir, 'admin-token'))
        .replace('http://console:8080', c.url)
        .replace('group_wait: 30s', 'group_wait: 1s');
      writeFileSync(join(dir, 'alertmanager.yml'), am);
      const start = (bin: string, args: string[]) => {
        const child = spawn(bin, args, { cwd: dir, stdio: 'ignore' });
        children.push(child);
      };
      start('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`]);
      start(ALERTMANAGER!, [`--config.file=${join(dir, 'alertmanager.yml')}`, `--storage.path=${join(dir, 'am')}`, `--web.listen-address=127.0.0.1:${amPort}`, '--cluster.listen-address=']);
    }, 60_000);
    afterAll(async () => {
      for (const child of children) child.kill('SIGTERM');
      await Promise.all(children.map((ch) => (ch.exitCode !== null || ch.signalCode !== null ? undefined : new Promise((r) => ch.once('exit', r)))));
      await c?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('Prometheus scrapes the console with the configured credentials and loads every rule without error', async () => {
      const health = await until('the console target', async () => {
        const d = (await (await fetch(`${promUrl}/api/v1/targets`)).json()) as { data: { activeTargets: { labels: { job: string }; health: string; lastError: string }[] } };
        const t = d.data.activeTargets.find((x) => x.labels.job === 'console');
        return t && t.health !== 'unknown' ? t : undefined;
      });
      expect(health).toMatchObject({ health: 'up', lastError: '' });
      const rules = await until('rule evaluation', async () => {
        const d = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
        const all = d.data.groups.flatMap((g) => g.rules);
        return all.length > 0 && all.every((r) => r.health !== 'unknown') ? all : undefined;
      });
      expect(rules.length).toBe(19);
      expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.lastError}`)).toEqual([]);
      const q = (await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('sidecar_queue_max_size{job="console"}')}`)).json()) as { data: { result: { value: [number, string] }[] } };
      expect(q.data.result.map((r) => r.value[1])).toEqual(['500']);
    }, 60_000);

    it('Alertmanager delivers to POST /api/alerts with the admin token; the critical inhibits its warning twin', async () => {
      const alert = (severity: string) => ({ labels: { alertname: 'LimiterUpstream429Rate', severity, instance: 'console:8080', provider: 'nvidia' }, annotations: { summary: `e2e ${severity}` } });
      await until('Alertmanager', async () => ((await fetch(`${amUrl}/-/ready`)).ok ? true : undefined));
      const res = await fetch(`${amUrl}/api/v2/alerts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([alert('critical'), alert('warning')]) });
      expect(res.status).toBe(200);
      const got = await until('the webhook call', async () => {
        const d = (await (await fetch(`${c.url}/api/alerts`)).json()) as { firing: { alertname: string; severity: string; summary: string }[] };
        return d.firing.length > 0 ? d.firing : undefined;
      });
      await new Promise((r) => setTimeout(r, 1500)); // a warning that was not inhibited would arrive by now
      const after = ((await (await fetch(`${c.url}/api/alerts`)).json()) as { firing: { severity: string }[] }).firing;
      expect(got[0]).toMatchObject({ alertname: 'LimiterUpstream429Rate', severity: 'critical', summary: 'e2e critical' });
      expect(after.map((a) => a.severity)).toEqual(['critical']);
    }, 60_000);
  });
});
