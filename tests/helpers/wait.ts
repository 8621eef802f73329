/**
 * Bounded polling for conditions a test cannot await directly (a process exiting, a server
 * noticing a closed socket, a status endpoint catching up). Tests wait for the condition, not for
 * a fixed time; the error names what did not happen.
 */

/** Polls `fn` until it returns a value other than `undefined`, or throws after `timeoutMs`. */
export async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, what: string, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Polls `check` until it holds, or throws after `timeoutMs` naming `what` did not happen. */
export async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string, intervalMs = 20): Promise<void> {
  await waitFor(async () => ((await check()) ? true : undefined), timeoutMs, what, intervalMs);
}
