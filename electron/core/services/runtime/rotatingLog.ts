import { closeSync, existsSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface RotatingLogOptions {
  /** Current file, e.g. `DATA_DIR/logs/runtime/gateway.log`. */
  path: string;
  /** Size that triggers rotation before the next write. */
  maxBytes: number;
  /** Rotated files kept (`.1` newest … `.N` oldest); 0 = the current file is simply restarted. */
  maxFiles: number;
}

/**
 * An append-only log file with size-based rotation (`x.log` → `x.log.1` → … → `x.log.N`, the
 * oldest dropped). Writes are synchronous appends (a supervisor writes little, and a crash must not
 * lose the lines that explain it).
 */
export class RotatingLog {
  private fd: number | null = null;
  private size = 0;

  constructor(private readonly options: RotatingLogOptions) {}

  get path(): string {
    return this.options.path;
  }

  write(text: string): void {
    if (text === '') return;
    let rest = Buffer.from(text, 'utf8');
    const max = this.options.maxBytes;
    while (rest.length > 0) {
      this.ensureOpen();
      const room = max - this.size;
      if (rest.length <= room) {
        this.append(rest);
        return;
      }
      if (this.size > 0 && rest.length <= max) {
        this.rotate(); // it fits whole in a fresh file
        continue;
      }
      // Too big for the room left: fill it up to the last line break that fits (or cut hard in an empty file).
      let cut = room > 0 ? rest.lastIndexOf(0x0a, room - 1) + 1 : 0;
      if (cut <= 0 && this.size === 0) cut = room;
      if (cut > 0) {
        this.append(rest.subarray(0, cut));
        rest = rest.subarray(cut);
      }
      this.rotate();
    }
  }

  private append(data: Buffer): void {
    writeSync(this.fd!, data);
    this.size += data.length;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  /** The last `lines` lines, reading back through rotated files when the current one has fewer. */
  async tail(lines: number): Promise<string[]> {
    const files = [this.options.path, ...Array.from({ length: this.options.maxFiles }, (_v, i) => `${this.options.path}.${i + 1}`)];
    let collected: string[] = [];
    for (const file of files) {
      if (!existsSync(file)) break;
      const fileLines = await readLastLines(file, lines - collected.length);
      collected = [...fileLines, ...collected];
      if (collected.length >= lines) break;
    }
    return collected.slice(-lines);
  }

  private ensureOpen(): void {
    if (this.fd !== null) return;
    mkdirSync(dirname(this.options.path), { recursive: true });
    this.fd = openSync(this.options.path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  private rotate(): void {
    this.close();
    const { path, maxFiles } = this.options;
    if (maxFiles === 0) {
      rmSync(path, { force: true });
      return;
    }
    rmSync(`${path}.${maxFiles}`, { force: true });
    for (let i = maxFiles - 1; i >= 1; i--) {
      if (existsSync(`${path}.${i}`)) renameSync(`${path}.${i}`, `${path}.${i + 1}`);
    }
    renameSync(path, `${path}.1`);
  }
}

/** Reads whole lines from the end of a file, in chunks, until `count` lines are found. */
async function readLastLines(file: string, count: number): Promise<string[]> {
  if (count <= 0) return [];
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const chunk = 64 * 1024;
    let pos = size;
    let text = '';
    while (pos > 0) {
      const len = Math.min(chunk, pos);
      pos -= len;
      const buf = Buffer.alloc(len);
      await handle.read(buf, 0, len, pos);
      text = buf.toString('utf8') + text;
      if (text.split('\n').length - 1 > count) break;
    }
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    // When we stopped mid-file the first piece is a partial line.
    if (pos > 0) lines.shift();
    return lines.slice(-count);
  } finally {
    await handle.close();
  }
}
