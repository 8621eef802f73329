import { lstat, realpath } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { AppError, ErrorCode } from '../../base/errors.js';

/** File extension of model files in the models dir (exactly this, lower-case). */
export const GGUF_EXT = '.gguf';
/** Longest accepted model id (file name without `.gguf`). */
export const MAX_ID_LENGTH = 200;

// Characters that are never part of a model id: path separators, Windows-reserved characters,
// `%` (so no percent-encoded form such as `%2e%2e` or `%2f` is ever taken literally) and
// control characters including NUL.
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[/\\:*?"<>|%\u0000-\u001f\u007f]/;

/**
 * Why `id` is not a safe model id, or undefined when it is. A safe id is a plain file name
 * (no separators, no `..`, no leading dot or space, no `%`, no control characters), so
 * `join(modelsDir, id + '.gguf')` always names a direct child of the models dir.
 */
export function idProblem(id: unknown): string | undefined {
  if (typeof id !== 'string') return 'must be a string';
  if (id.length === 0) return 'must not be empty';
  if (id.length > MAX_ID_LENGTH) return `must be at most ${MAX_ID_LENGTH} characters`;
  if (id.includes('\u0000')) return 'must not contain NUL';
  if (id.includes('%')) return 'must not contain "%" (percent-encoded names such as %2e%2e are refused)';
  if (id.includes('/') || id.includes('\\')) return 'must be a plain file name (no "/" or "\\")';
  if (id.includes('..')) return 'must not contain ".."';
  if (isAbsolute(id) || /^[A-Za-z]:/.test(id)) return 'must not be an absolute path';
  if (FORBIDDEN.test(id)) return 'must not contain control characters or any of : * ? " < > |';
  if (id.startsWith('.') || id.startsWith(' ') || id.endsWith(' ') || id.endsWith('.')) return 'must not start with "." or a space, or end with "." or a space';
  return undefined;
}

/** Throws INVALID_REQUEST (naming `field`) unless `id` is a safe model id. */
export function assertSafeId(id: unknown, field = 'id'): asserts id is string {
  const problem = idProblem(id);
  if (problem) {
    throw new AppError(ErrorCode.INVALID_REQUEST, `Invalid model id: ${problem}`, {
      details: [{ type: 'invalid_model_id', field, description: problem }],
    });
  }
}

/** True when `child` is `dir` itself or below it (both already resolved). */
export function isInside(dir: string, child: string): boolean {
  const rel = relative(dir, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel) && rel.split(sep)[0] !== '..');
}

/** Where a model file with id `id` lives (no file-system access; `id` must be safe). */
export function modelPathFor(modelsDir: string, id: string): string {
  assertSafeId(id);
  return join(modelsDir, `${id}${GGUF_EXT}`);
}

export interface ResolvedModelPath {
  /** The entry in the models dir (`<dir>/<id>.gguf`). */
  linkPath: string;
  /** Where it really is (symlinks resolved); always inside the real models dir. */
  realPath: string;
  isSymlink: boolean;
}

/**
 * Resolves a safe id to its file, following symlinks only when the target stays inside the
 * models dir. Undefined when there is no such entry; INVALID_REQUEST when a symlink leads out of
 * the dir (or the entry is not a regular file).
 */
export async function resolveModelPath(realModelsDir: string, id: string): Promise<ResolvedModelPath | undefined> {
  const linkPath = modelPathFor(realModelsDir, id);
  let isSymlink = false;
  try {
    isSymlink = (await lstat(linkPath)).isSymbolicLink();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let realPath: string;
  try {
    realPath = await realpath(linkPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP') {
      throw new AppError(ErrorCode.INVALID_REQUEST, `Model '${id}' is a broken symlink`, {
        details: [{ type: 'invalid_model_file', field: 'id', description: 'symlink target does not exist' }],
      });
    }
    throw err;
  }
  if (!isInside(realModelsDir, realPath)) {
    throw new AppError(ErrorCode.INVALID_REQUEST, `Model '${id}' is a symlink that leads outside the models dir; refused`, {
      details: [{ type: 'path_outside_models_dir', field: 'id', description: 'symlink target is outside the models dir' }],
    });
  }
  return { linkPath, realPath, isSymlink };
}
