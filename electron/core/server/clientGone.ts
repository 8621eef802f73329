import type { Socket } from 'node:net';
import { AppError, ErrorCode } from '../base/errors.js';

/**
 * The one "client went away" signal of every surface: aborts (with a 499 the engine counts as
 * `cancelled`) when `watch` reports the client gone: an HTTP connection closed, a gRPC call cancelled.
 */
export function clientGoneSignal(watch: (gone: () => void) => void): AbortSignal {
  const controller = new AbortController();
  watch(() => controller.abort(new AppError(ErrorCode.INVALID_REQUEST, 'the client went away', { status: 499 })));
  return controller.signal;
}

const GONE = Symbol('clientGone');
type WatchedSocket = Socket & { [GONE]?: AbortSignal };

/**
 * An HTTP client went away: its connection closed. One signal per connection, kept on the socket:
 * the requests of a keep-alive connection come one after another and share it (an AbortController
 * costs more than the limiter proxy's own work per request). A request whose response has finished
 * is over, so a later close concerns no request of it.
 */
export function httpClientGone(socket: Socket): AbortSignal {
  const s = socket as WatchedSocket;
  let signal = s[GONE];
  if (!signal) {
    signal = clientGoneSignal((gone) => {
      if (socket.destroyed) gone();
      else socket.once('close', gone);
    });
    s[GONE] = signal;
  }
  return signal;
}
