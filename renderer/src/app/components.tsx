import type { ReactNode } from 'react';

/** Empty state: what is missing and what to do next. */
export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <section className="empty" aria-label={title}>
      <h3>{title}</h3>
      {children}
    </section>
  );
}

/** The standard "this service is not in this build" message. */
export function NotAvailable({ service, what }: { service: string; what?: string }) {
  return (
    <Empty title={`The ${service} is not available in this build`}>
      <p>
        This console answered 404 on the {service}&apos;s API{what ? ` (${what})` : ''}: it is not part of this build or is turned off in
        config. Update the console, or enable it in Config, then reload this page.
      </p>
    </Empty>
  );
}

export function Gauge({ label, value, max = 100, text }: { label: string; value: number | undefined; max?: number; text: string }) {
  const pct = value === undefined ? 0 : Math.max(0, Math.min(100, (value / max) * 100));
  return (
    <div className="card">
      <div className="muted">{label}</div>
      <div className="stat">{text}</div>
      <div className="gauge" role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={max} aria-valuenow={value === undefined ? 0 : Math.round(value * 10) / 10}>
        <div style={{ width: `${pct}%` }} />
      </div>
    </div>
  );
}

export function ErrorText({ error }: { error: string | null | undefined }) {
  if (!error) return null;
  return (
    <p role="alert" className="bad">
      {error}
    </p>
  );
}

export function Badge({ tone, children }: { tone: 'ok' | 'warn' | 'bad' | 'muted'; children: ReactNode }) {
  return <span className={`badge ${tone}`}>{children}</span>;
}
