import { randomBytes } from 'node:crypto';
import { safeEqual } from './adminToken.js';

/**
 * The one-time dashboard link printed at start (`http://127.0.0.1:8080/#login=<code>`): a browser
 * that opens it exchanges the code for the admin token once; the code then stops working. The
 * code sits in the URL fragment, so it never reaches a server log or a Referer header.
 */
export class LoginLink {
  private code: string | null = randomBytes(18).toString('base64url');

  /** The link for a base URL, or null once the code was used. */
  url(baseUrl: string): string | null {
    return this.code ? `${baseUrl}/#login=${this.code}` : null;
  }

  /** True (once) when `code` is the current code; the code is spent either way on success. */
  consume(code: string): boolean {
    if (!this.code || !safeEqual(code, this.code)) return false;
    this.code = null;
    return true;
  }
}
