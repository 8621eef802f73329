import { isSecretKey, maskSecret } from '../../../../shared/mask.js';

const ASSIGNMENT = /\b([A-Za-z0-9_.-]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|COOKIE|AUTH)[A-Za-z0-9_.-]*)(["']?\s*[=:]\s*["']?)([^\s"',;)\]}]{3,})/gi;

/**
 * Masks secrets in log text before it leaves the console (contract §12): values of secret-looking
 * `KEY=value` / `"token": "value"` assignments, and any literal value of a secret-looking variable
 * of the child's environment, become `abcd****`.
 */
export function maskLogText(text: string, env: Readonly<Record<string, string>> = {}): string {
  let out = text;
  for (const [key, value] of Object.entries(env)) {
    if (value.length >= 6 && isSecretKey(key) && out.includes(value)) out = out.split(value).join(maskSecret(value));
  }
  return out.replace(ASSIGNMENT, (_m, key: string, sep: string, value: string) => `${key}${sep}${value.endsWith('****') ? value : maskSecret(value)}`);
}

/** Splits a byte stream into lines; a line longer than `maxLine` is cut into pieces. */
export class LineSplitter {
  private partial = '';

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly maxLine = 64 * 1024,
  ) {}

  push(chunk: string): void {
    let text = this.partial + chunk;
    let nl = text.indexOf('\n');
    while (nl !== -1) {
      this.onLine(text.slice(0, nl).replace(/\r$/, ''));
      text = text.slice(nl + 1);
      nl = text.indexOf('\n');
    }
    while (text.length > this.maxLine) {
      this.onLine(text.slice(0, this.maxLine));
      text = text.slice(this.maxLine);
    }
    this.partial = text;
  }

  /** Emits what is left (output that did not end with a newline). */
  flush(): void {
    if (this.partial !== '') this.onLine(this.partial);
    this.partial = '';
  }
}
