import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { packageRoot } from '../../base/packageInfo.js';

/**
 * Builds the native trainer (`resources/trainer/trainer.cpp`) against the llama.cpp that ships
 * inside node-llama-cpp: headers from its git bundle (`llama/gitRelease.bundle`, only `include/`,
 * `ggml/include/`, `common/` and `src/` (for the internal LoRA adapter struct) are checked out), the prebuilt shared libraries from
 * `@node-llama-cpp/<platform>[-cuda]/bins`. One g++ call, no cmake build of llama.cpp.
 * The binary's name carries a hash of everything it depends on, so a changed source or library
 * set is rebuilt and an unchanged one is reused.
 */

export type TrainerVariant = 'cpu' | 'cuda';

export interface TrainerBuildOptions {
  /** Cache directory for the headers and binaries (e.g. `DATA_DIR/trainer`). */
  cacheDir: string;
  /** `auto` picks CUDA when the CUDA prebuilt libs are installed and an NVIDIA driver is present. */
  gpu?: 'auto' | 'cuda' | 'cpu';
  /** The C++ source; defaults to the repository's `resources/trainer/trainer.cpp`. */
  sourceFile?: string;
  /** Compiler (default `g++`, or `$CXX`). */
  compiler?: string;
}

export interface TrainerBinary {
  path: string;
  /** Directory of the prebuilt libs; the trainer loads its ggml backends from here. */
  backendDir: string;
  variant: TrainerVariant;
  /** True when this call compiled it. */
  built: boolean;
}

/** The trainer cannot be built here (missing compiler, unsupported platform, ...). */
export class TrainerBuildError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TrainerBuildError';
  }
}

/** `resources/trainer/trainer.cpp` of this package (found from the package root, so it works from `dist/` too). */
export function defaultTrainerSource(): string {
  return join(packageRoot(), 'resources', 'trainer', 'trainer.cpp');
}

function run(file: string, args: string[], cwd?: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

interface LlamaLibs {
  llamaDir: string;
  tag: string;
  binsDir: string;
  libllama: string;
  libggml: string;
  variant: TrainerVariant;
}

/** The root folder of an installed package (its `exports` may hide package.json, so walk up from its entry). */
function packageDir(require: NodeRequire, name: string): string | undefined {
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    return undefined;
  }
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (!existsSync(manifest)) continue;
    try {
      if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === name) return dir;
    } catch {
      // keep walking
    }
  }
  return undefined;
}

/** True when an NVIDIA driver is loaded on this machine. */
function hasNvidiaDriver(): boolean {
  return existsSync('/proc/driver/nvidia/version') || existsSync('/dev/nvidiactl');
}

/** Finds node-llama-cpp's llama.cpp bundle and the prebuilt libs for this platform. */
export function locateLlamaLibs(gpu: 'auto' | 'cuda' | 'cpu' = 'auto'): LlamaLibs {
  if (process.platform !== 'linux') {
    throw new TrainerBuildError(`The llama training backend is built with g++ on Linux only (this is ${process.platform}); use training.backend "command" here.`);
  }
  const require = createRequire(import.meta.url);
  const nlcDir = packageDir(require, 'node-llama-cpp');
  if (!nlcDir) throw new TrainerBuildError('node-llama-cpp is not installed (npm install)');
  const llamaDir = join(nlcDir, 'llama');
  const info = JSON.parse(readFileSync(join(llamaDir, 'llama.cpp.info.json'), 'utf8')) as { tag?: string };
  const tag = info.tag ?? 'unknown';
  const platform = `linux-${process.arch}`;
  const fromNlc = createRequire(join(nlcDir, 'package.json'));
  const binsOf = (pkg: string, sub: string): string | undefined => {
    const root = packageDir(fromNlc, pkg);
    const dir = root ? join(root, 'bins', sub) : undefined;
    return dir && existsSync(dir) ? dir : undefined;
  };
  const cudaDir = binsOf(`@node-llama-cpp/${platform}-cuda`, `${platform}-cuda`);
  const cpuDir = binsOf(`@node-llama-cpp/${platform}`, platform);
  let variant: TrainerVariant;
  let binsDir: string | undefined;
  if (gpu === 'cuda') {
    if (!cudaDir) throw new TrainerBuildError(`training.gpu is "cuda" but @node-llama-cpp/${platform}-cuda is not installed`);
    variant = 'cuda';
    binsDir = cudaDir;
  } else if (gpu === 'auto' && cudaDir && hasNvidiaDriver()) {
    variant = 'cuda';
    binsDir = cudaDir;
  } else {
    variant = 'cpu';
    binsDir = cpuDir;
  }
  if (!binsDir) throw new TrainerBuildError(`No prebuilt llama.cpp libraries for ${platform} (@node-llama-cpp/${platform} is not installed)`);
  const files = readdirSync(binsDir);
  const libllama = files.find((f) => /^libllama(\.cuda)?\.v[\w.]+\.so$/.test(f));
  const libggml = files.find((f) => /^libggml(\.cuda)?\.v[\w.]+\.so$/.test(f));
  if (!libllama || !libggml || !files.includes('libggml-base.so') || !files.includes('libllama-common.so')) {
    throw new TrainerBuildError(`Unexpected prebuilt library set in ${binsDir}: ${files.join(', ')}`);
  }
  return { llamaDir, tag, binsDir, libllama, libggml, variant };
}

/** Checks out the headers of the bundled llama.cpp into `<cacheDir>/llama.cpp-<tag>` (once). */
async function ensureHeaders(cacheDir: string, libs: LlamaLibs): Promise<string> {
  const target = join(cacheDir, `llama.cpp-${libs.tag}`);
  if (existsSync(join(target, 'include', 'llama.h')) && existsSync(join(target, 'common', 'common.h')) && existsSync(join(target, 'src', 'llama-adapter.h'))) return target;
  const tmp = join(cacheDir, `.src-${randomBytes(4).toString('hex')}`);
  try {
    await run('git', ['clone', '--quiet', '--no-checkout', join(libs.llamaDir, 'gitRelease.bundle'), tmp]);
    await run('git', ['checkout', '--quiet', 'HEAD', '--', 'include', 'ggml/include', 'common', 'src'], tmp);
    await rm(join(tmp, '.git'), { recursive: true, force: true });
    // An older cache without src/ is replaced.
    if (existsSync(target) && !existsSync(join(target, 'src', 'llama-adapter.h'))) await rm(target, { recursive: true, force: true });
    await rename(tmp, target).catch(async (err: NodeJS.ErrnoException) => {
      // Another process finished first: use its copy.
      if (existsSync(join(target, 'src', 'llama-adapter.h'))) return;
      throw err;
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (err as { path?: string }).path === 'git') {
      throw new TrainerBuildError('git is needed once to unpack the llama.cpp headers from node-llama-cpp (apt-get install git)', { cause: err });
    }
    if (err instanceof TrainerBuildError) throw err;
    throw new TrainerBuildError(`Cannot unpack the llama.cpp headers: ${(err as { stderr?: string }).stderr || (err as Error).message}`, { cause: err });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return target;
}

/**
 * Returns a trainer binary for this machine, compiling it when missing or stale. Safe to call from
 * several processes at once (each writes a temp file, then renames).
 */
export async function ensureTrainer(options: TrainerBuildOptions): Promise<TrainerBinary> {
  const libs = locateLlamaLibs(options.gpu ?? 'auto');
  const sourceFile = options.sourceFile ?? defaultTrainerSource();
  let source: Buffer;
  try {
    source = readFileSync(sourceFile);
  } catch (cause) {
    throw new TrainerBuildError(`Trainer source not found: ${sourceFile}`, { cause });
  }
  const compiler = options.compiler ?? process.env.CXX ?? 'g++';
  const hash = createHash('sha256')
    .update(source)
    .update(`\0${libs.binsDir}\0${libs.libllama}\0${libs.libggml}\0${libs.tag}\0${compiler}`)
    .digest('hex')
    .slice(0, 12);
  await mkdir(options.cacheDir, { recursive: true });
  const binary = join(options.cacheDir, `trainer-${libs.variant}-${hash}`);
  const result = { path: binary, backendDir: libs.binsDir, variant: libs.variant };
  if (existsSync(binary)) return { ...result, built: false };

  const src = await ensureHeaders(options.cacheDir, libs);
  const tmp = `${binary}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`;
  const args = [
    '-std=c++17',
    '-O2',
    '-I',
    join(src, 'include'),
    '-I',
    join(src, 'ggml', 'include'),
    '-I',
    join(src, 'common'),
    '-I',
    join(src, 'src'),
    sourceFile,
    '-o',
    tmp,
    '-L',
    libs.binsDir,
    `-l:${libs.libllama}`,
    `-l:${libs.libggml}`,
    '-l:libggml-base.so',
    '-l:libllama-common.so',
    `-Wl,-rpath,${libs.binsDir}`,
    // Exports the trainer's llama_context::graph_max_nodes so it replaces libllama's (trainer.cpp).
    '-rdynamic',
    '-ldl',
  ];
  try {
    await run(compiler, args);
    await rename(tmp, binary);
  } catch (err) {
    await rm(tmp, { force: true });
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new TrainerBuildError(
        `The llama training backend needs a C++17 compiler to build its trainer once, and "${compiler}" was not found. Install g++ (Debian/Ubuntu: apt-get install g++), or set CXX.`,
        { cause: err },
      );
    }
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new TrainerBuildError(`Compiling the trainer failed: ${stderr.slice(-2000) || (err as Error).message}`, { cause: err });
  }
  return { ...result, built: true };
}
