import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConsoleSnapshot } from '../../shared/contracts/console.js';
import type { AlertsResponse } from '../../shared/contracts/alerts.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';

/** An Alertmanager v4 webhook body, as resources/observability/alertmanager/alertmanager.yml sends it. */
function webhook(status: 'firing' | 'resolved', alerts: { name: string; severity: string; fingerprint: string; status?: 'firing' | 'resolved' }[]) {
  return {
    version: '4',
    groupKey: '{}:{alertname="x"}',
    truncatedAlerts: 0,
    status,
    receiver: 'console',
    groupLabels: {},
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://alertmanager:9093',
    alerts: alerts.map((a) => ({
      status: a.status ?? status,
      labels: { alertname: a.name, severity: a.severity, instance: 'console:8080', job: 'console', provider: 'nvidia' },
      annotations: { summary: `${a.name} summary`, description: 'details' },
      startsAt: '2026-12-05T10:00:00Z',
      endsAt: '0001-01-01T00:00:00Z',
      generatorURL: 'http://prometheus:9090/graph',
      fingerprint: a.fingerprint,
    })),
  };
}

describe('POST /api/alerts (Alertmanager webhook) and GET /api/alerts', () => {
  let c: TestConsole;
  const post = (body: unknown, headers: Record<string, string> = c.admin) =>
    fetch(`${c.url}/api/alerts`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const firing = async () => ((await (await fetch(`${c.url}/api/alerts`)).json()) as AlertsResponse).firing;

  beforeAll(async () => {
    c = await startConsole();
  });
  afterAll(async () => {
    await c?.close();
  });

  it('needs the admin token: 401 without, 403 with a wrong one', async () => {
    const body = webhook('firing', [{ name: 'LimiterRetreatHeld', severity: 'warning', fingerprint: 'aaaa' }]);
    expect((await post(body, {})).status).toBe(401);
    expect((await post(body, { authorization: 'Bearer wrong' })).status).toBe(403);
    expect(await firing()).toEqual([]);
  });

  it('rejects a body that is not an Alertmanager payload with the contract envelope', async () => {
    const res = await post({ alerts: [{ status: 'burning', labels: {} }] });
    expect(res.status).toBe(400);
    expect(JSON.stringify(await res.json())).toMatch(/status/);
  });

  it('keeps firing alerts (critical first), removes resolved ones, and shows them in the snapshot', async () => {
    const res = await post(
      webhook('firing', [
        { name: 'LimiterRetreatHeld', severity: 'warning', fingerprint: 'aaaa' },
        { name: 'LimiterUpstream429Rate', severity: 'critical', fingerprint: 'bbbb' },
      ]),
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', firing: 2, resolved: 0 });
    const now = await firing();
    expect(now.map((a) => [a.alertname, a.severity])).toEqual([
      ['LimiterUpstream429Rate', 'critical'],
      ['LimiterRetreatHeld', 'warning'],
    ]);
    expect(now[0]).toMatchObject({ fingerprint: 'bbbb', summary: 'LimiterUpstream429Rate summary', labels: { provider: 'nvidia' }, startsAt: '2026-12-05T10:00:00Z' });

    // The dashboard's live stream carries them under services.alerts.
    const ac = new AbortController();
    const sse = await fetch(`${c.url}/api/console/stream/sse`, { signal: ac.signal });
    const reader = sse.body!.getReader();
    let text = '';
    while (!/"type":"snapshot".*\n\n/s.test(text)) text += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    const frame = text.split('\n').find((l) => l.startsWith('data: ') && l.includes('"type":"snapshot"'))!;
    const snap = (JSON.parse(frame.slice(6)) as { data: ConsoleSnapshot }).data;
    expect((snap.services.alerts as AlertsResponse).firing.map((a) => a.fingerprint)).toEqual(['bbbb', 'aaaa']);

    // Resolved: gone; a repeat of a firing alert replaces it (no duplicate).
    const resolved = await post(webhook('resolved', [{ name: 'LimiterUpstream429Rate', severity: 'critical', fingerprint: 'bbbb' }]));
    expect(await resolved.json()).toEqual({ status: 'ok', firing: 0, resolved: 1 });
    await post(webhook('firing', [{ name: 'LimiterRetreatHeld', severity: 'warning', fingerprint: 'aaaa' }]));
    expect((await firing()).map((a) => a.fingerprint)).toEqual(['aaaa']);
  });

  it('GET follows the API-key rule when keys are configured', async () => {
    const k = await startConsole({ config: { auth: { apiKeys: ['key-one-1234'] } } });
    try {
      expect((await fetch(`${k.url}/api/alerts`)).status).toBe(401);
      expect((await fetch(`${k.url}/api/alerts`, { headers: { 'x-api-key': 'nope' } })).status).toBe(403);
      expect((await fetch(`${k.url}/api/alerts`, { headers: { 'x-api-key': 'key-one-1234' } })).status).toBe(200);
      // An API key is not enough to post alerts.
      const res = await fetch(`${k.url}/api/alerts`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer key-one-1234' }, body: JSON.stringify(webhook('firing', [])) });
      expect(res.status).toBe(403);
    } finally {
      await k.close();
    }
  });
});
