import type { Store } from '../../base/store.js';

/** A process the supervisor spawned and has not seen exit (table `runtime_processes`, migration 0005). */
export interface ProcessRecord {
  name: string;
  pid: number;
  /** Kernel start time of the pid (Linux), to tell a recycled pid apart. */
  procStart: string | null;
  /** Unix ms. */
  startedAt: number;
  consolePid: number;
  runId: string | null;
  mode: string | null;
  command: string;
}

interface Row {
  name: string;
  pid: number;
  proc_start: string | null;
  started_at: number;
  console_pid: number;
  run_id: string | null;
  mode: string | null;
  command: string;
}

/** Durable record of live children, so the next console run can find the ones it no longer owns. */
export class ProcessRecords {
  constructor(private readonly store: Store) {}

  put(r: ProcessRecord): void {
    this.store.db
      .prepare(
        `INSERT INTO runtime_processes (name, pid, proc_start, started_at, console_pid, run_id, mode, command)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET pid = excluded.pid, proc_start = excluded.proc_start, started_at = excluded.started_at,
           console_pid = excluded.console_pid, run_id = excluded.run_id, mode = excluded.mode, command = excluded.command`,
      )
      .run(r.name, r.pid, r.procStart, r.startedAt, r.consolePid, r.runId, r.mode, r.command);
  }

  /** Deletes the record of `name`, only if it still names `pid` (an orphan's row is not a new child's). */
  remove(name: string, pid: number): void {
    this.store.db.prepare('DELETE FROM runtime_processes WHERE name = ? AND pid = ?').run(name, pid);
  }

  list(): ProcessRecord[] {
    const rows = this.store.db.prepare('SELECT * FROM runtime_processes ORDER BY name').all() as Row[];
    return rows.map((r) => ({
      name: r.name,
      pid: r.pid,
      procStart: r.proc_start,
      startedAt: r.started_at,
      consolePid: r.console_pid,
      runId: r.run_id,
      mode: r.mode,
      command: r.command,
    }));
  }
}
