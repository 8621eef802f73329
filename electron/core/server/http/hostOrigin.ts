/** Loopback names always accepted in the Host header. */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** Strips the port from a Host header value (`[::1]:8080` → `[::1]`, `a:80` → `a`). */
export function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end >= 0 ? h.slice(0, end + 1) : h;
  }
  const colon = h.lastIndexOf(':');
  return colon >= 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h;
}

export function isLoopbackAddress(address: string): boolean {
  const a = address.toLowerCase();
  return a === 'localhost' || a === '::1' || a === '[::1]' || a.startsWith('127.');
}

/** DNS-rebinding guard: the Host must be a loopback name or a configured allowed host. */
export function isAllowedHost(host: string | undefined, allowedHosts: readonly string[], bindHost: string): boolean {
  if (!host) return false;
  const name = hostName(host);
  if (LOOPBACK_HOSTS.has(name) || name.startsWith('127.')) return true;
  if (!isLoopbackAddress(bindHost) && bindHost !== '0.0.0.0' && bindHost !== '::' && name === hostName(bindHost)) return true;
  return allowedHosts.some((a) => hostName(a) === name);
}

/** Browser origins allowed: loopback http(s) origins on any port, plus configured ones. */
export function isAllowedOrigin(origin: string, allowedOrigins: readonly string[]): boolean {
  if (allowedOrigins.includes(origin)) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  const name = url.hostname.toLowerCase();
  return name === '127.0.0.1' || name === 'localhost' || name === '[::1]';
}
