import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RotatingLog } from '../../../electron/core/services/runtime/rotatingLog.js';

describe('RotatingLog', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'rotlog-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('rotates by size, keeps maxFiles rotated files, drops the oldest', async () => {
    const path = join(tmp(), 'logs', 'gw.log');
    const log = new RotatingLog({ path, maxBytes: 100, maxFiles: 2 });
    for (let i = 0; i < 10; i++) log.write(`line-${i} ${'x'.repeat(40)}\n`); // 48 bytes each: 2 per file
    log.close();
    expect(statSync(path).size).toBeLessThanOrEqual(100);
    expect(existsSync(`${path}.1`)).toBe(true);
    expect(existsSync(`${path}.2`)).toBe(true);
    expect(existsSync(`${path}.3`)).toBe(false);
    expect(readFileSync(path, 'utf8')).toContain('line-9');
    expect(readFileSync(`${path}.1`, 'utf8')).toContain('line-7');
    expect(readFileSync(`${path}.2`, 'utf8')).toContain('line-5');
    // the tail reads back across rotated files, oldest first
    expect((await log.tail(5)).map((l) => l.split(' ')[0])).toEqual(['line-5', 'line-6', 'line-7', 'line-8', 'line-9']);
    expect((await log.tail(100)).length).toBe(6);
  });

  it('appends to an existing file across instances and restarts it with maxFiles 0', async () => {
    const path = join(tmp(), 'p.log');
    const a = new RotatingLog({ path, maxBytes: 1024, maxFiles: 0 });
    a.write('one\n');
    a.close();
    const b = new RotatingLog({ path, maxBytes: 1024, maxFiles: 0 });
    b.write('two\n');
    expect(await b.tail(10)).toEqual(['one', 'two']);
    b.write(`${'y'.repeat(1100)}\n`); // larger than maxBytes: cut into pieces that each fit
    b.write('three\n');
    b.close();
    expect(readFileSync(path, 'utf8')).toBe(`${'y'.repeat(1100 - 1024)}\nthree\n`);
    expect(existsSync(`${path}.1`)).toBe(false);
  });

  it('never lets a file grow past maxBytes: a big write is split at line breaks', async () => {
    const path = join(tmp(), 'big.log');
    const log = new RotatingLog({ path, maxBytes: 1000, maxFiles: 5 });
    const lines = Array.from({ length: 40 }, (_v, i) => `row-${String(i).padStart(2, '0')} ${'z'.repeat(92)}\n`); // 100 bytes each
    log.write('head\n');
    log.write(lines.join(''));
    log.close();
    for (const f of [path, `${path}.1`, `${path}.2`, `${path}.3`]) {
      const text = readFileSync(f, 'utf8');
      expect(text.length).toBeLessThanOrEqual(1000);
      expect(text.endsWith('\n')).toBe(true);
    }
    const tail = await log.tail(41);
    expect(tail[0]).toBe('head');
    expect(tail.at(-1)).toMatch(/^row-39 /);
  });
});
