import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../..');

export interface ServeProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  /** Resolves with the ready line's HTTP URL and gRPC address. */
  ready: Promise<{ url: string; grpc: string }>;
}

/**
 * Runs the headless entry (electron/core/serve.ts) in a child process through tsx, as
 * `npm run serve` does after its build step.
 */
export function spawnServe(args: string[], env: NodeJS.ProcessEnv = {}): ServeProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'electron/core/serve.ts'), ...args], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const ready = new Promise<{ url: string; grpc: string }>((resolve, reject) => {
    const onData = () => {
      const m = /^console ready (http:\/\/\S+) grpc (\S+)$/m.exec(out);
      if (m?.[1] && m[2]) {
        child.stdout?.off('data', onData);
        resolve({ url: m[1], grpc: m[2] });
      }
    };
    child.stdout?.on('data', onData);
    void exited.then((code) => reject(new Error(`serve exited (${code}) before ready:\n${out}\n${err}`)));
  });
  ready.catch(() => undefined);
  return { child, stdout: () => out, stderr: () => err, exited, ready };
}
