import { PassThrough, type Readable } from 'node:stream';
import { invalidRequest } from '../../base/errors.js';

/**
 * The file stream of a multipart part (@fastify/multipart / busboy) as a stream that always
 * settles: it ends when the part ends at its boundary and fails with a 400 INVALID_REQUEST when
 * the body ends first (no closing boundary, a truncated body, a client that hangs up).
 *
 * busboy reports a truncated part by emitting "Part terminated early" on the file stream and then
 * destroying it, often before the route has awaited its way to reading it; a consumer that attaches
 * later (`pipeline` after an `await`) never hears of it and waits for ever. Call this as soon as the
 * part is in hand, before any `await`. When the returned stream is torn down (e.g. a size limit in
 * the consumer) the part is destroyed too, so busboy does not wait for a reader.
 */
export function settledFileStream(file: Readable, field = 'file'): Readable {
  const out = new PassThrough();
  // The failure may come before the consumer attaches; it reads it from the destroyed stream then
  // (`pipeline` does). Without a listener that early 'error' event would be uncaught.
  out.on('error', () => undefined);
  let failed = false;
  const fail = (reason: string) => {
    if (failed) return;
    failed = true;
    out.destroy(invalidRequest(`Malformed multipart body: ${reason}`, [{ type: 'malformed_multipart', field, description: reason }]));
  };
  const cutShort = 'the body ended before the closing boundary';
  if (file.destroyed && !file.readableEnded) {
    fail(cutShort);
    return out;
  }
  file.on('error', (err: Error) => fail(/terminated early/.test(err.message) ? cutShort : err.message));
  file.on('close', () => {
    if (!file.readableEnded) fail(cutShort);
  });
  out.on('close', () => {
    if (!file.readableEnded && !file.destroyed) file.destroy();
  });
  file.pipe(out);
  return out;
}
