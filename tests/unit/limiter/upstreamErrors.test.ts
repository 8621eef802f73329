import { describe, expect, it } from 'vitest';
import { errors as undiciErrors } from 'undici';
import { mapUpstreamError } from '../../../electron/core/services/limiter/upstreamClient.js';

const withCode = (code: string, message = code) => Object.assign(new Error(message), { code });

describe('mapUpstreamError (contract §6.9)', () => {
  it.each([
    ['ETIMEDOUT', 504, 'TimeoutException'],
    ['UND_ERR_CONNECT_TIMEOUT', 504, 'TimeoutException'],
    ['UND_ERR_HEADERS_TIMEOUT', 504, 'TimeoutException'],
    ['UND_ERR_BODY_TIMEOUT', 504, 'TimeoutException'],
    ['ECONNREFUSED', 502, 'ConnectError'],
    ['ENETUNREACH', 502, 'ConnectError'],
    ['EHOSTUNREACH', 502, 'ConnectError'],
    ['EPIPE', 502, 'ConnectError'],
    ['ECONNRESET', 502, 'ConnectError'],
    ['UND_ERR_SOCKET', 502, 'ConnectError'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 502, 'ConnectError'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 502, 'ConnectError'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', 502, 'ConnectError'],
    ['EPROTO', 502, 'ConnectError'],
  ])('%s → %i %s', (code, status, type) => {
    const e = mapUpstreamError(withCode(code), 60_000);
    expect(e.status).toBe(status);
    expect(e.type).toBe(type);
    expect(e.message).toMatch(status === 504 ? /^Gateway Timeout — 上游超时/ : /^Bad Gateway — 上游连接失败/);
    expect(e.message).toContain(code);
  });

  it('finds the code along the cause chain (fetch / undici wrap the socket error)', () => {
    const wrapped = Object.assign(new TypeError('fetch failed'), { cause: withCode('ENETUNREACH') });
    expect(mapUpstreamError(wrapped, 1000)).toMatchObject({ status: 502, type: 'ConnectError' });
  });

  it('a client abort is not an upstream failure; anything else is 500 with the exception name', () => {
    expect(mapUpstreamError(new undiciErrors.RequestAbortedError(), 1000).type).toBe('ClientDisconnected');
    const other = mapUpstreamError(new RangeError('boom'), 1000);
    expect(other.status).toBe(500);
    expect(other.message).toBe('Internal Server Error — RangeError');
  });
});
