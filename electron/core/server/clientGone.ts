import { AppError, ErrorCode } from '../base/errors.js';

/**
 * The one "client went away" signal of every surface: aborts (with a 499 the engine counts as
 * `cancelled`) when `watch` reports the client gone: an HTTP connection closed before its response
 * finished, a gRPC call cancelled.
 */
export function clientGoneSignal(watch: (gone: () => void) => void): AbortSignal {
  const controller = new AbortController();
  watch(() => controller.abort(new AppError(ErrorCode.INVALID_REQUEST, 'the client went away', { status: 499 })));
  return controller.signal;
}
