import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

const isWindows = process.platform === 'win32';

/**
 * The kernel's start time of `pid` (Linux: field 22 of /proc/<pid>/stat, clock ticks since boot).
 * Together with the pid it identifies one process: a recycled pid has another start time.
 * `null` where /proc is not available or the process is gone.
 */
export function processStartTime(pid: number): string | null {
  const stat = readStat(pid);
  if (!stat) return null;
  // Fields after the command name (which is in parentheses and may contain spaces).
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return rest[19] ?? null; // field 22 overall = index 19 after "pid (comm)"
}

function readStat(pid: number): string | null {
  if (process.platform !== 'linux') return null;
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
}

/** True when `pid` exists and is not a zombie (a zombie has exited; only its parent has not reaped it). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = readStat(pid);
  if (stat === null) return process.platform !== 'linux';
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** True when any process of group `pgid` is still there (POSIX; zombies included). */
export function groupExists(pgid: number): boolean {
  if (isWindows) return false;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Sends `signal` to the whole process group led by `pid` (children are spawned detached, so each
 * leads its own group); falls back to the single process where groups do not exist (Windows) or
 * the group is already gone. Returns false when nothing was there to signal.
 */
export function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  if (!isWindows) {
    try {
      process.kill(-pid, signal);
      return true;
    } catch {
      // no such group: try the process itself
    }
  }
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves an executable the way spawn will: a path (absolute or relative to `cwd`), or a bare
 * name looked up in the child's PATH. Returns the path, or null when nothing executable is found.
 */
export function resolveExecutable(command: string, cwd: string, pathVar: string | undefined): string | null {
  const executable = (p: string): boolean => {
    try {
      if (!statSync(p).isFile()) return false;
      if (!isWindows) accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (isAbsolute(command) || command.includes('/') || command.includes('\\')) {
    const full = resolve(cwd, command);
    return executable(full) ? full : null;
  }
  const exts = isWindows ? (process.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';').concat(['']) : [''];
  for (const dir of (pathVar ?? '').split(delimiter)) {
    if (dir === '') continue;
    for (const ext of exts) {
      const full = join(dir, command + ext);
      if (executable(full)) return full;
    }
  }
  return null;
}

/** True when `dir` exists and is a directory. */
export function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}
