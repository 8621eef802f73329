/**
 * Native GPU failures the console recognises in llama.cpp's output, shared by the engine's backend
 * self-test and the training runner. Seen on an H200 with driver 580 (CUDA 13.0): node-llama-cpp
 * 3.22.1's prebuilt CUDA kernels are built with CUDA 13.1 and carry no sm_90 machine code, so the
 * driver must JIT their PTX, and refuses ("CUDA error: the provided PTX was compiled with an
 * unsupported toolchain"); llama.cpp then aborts the process.
 */
const CUDA_DRIVER_TOO_OLD = /PTX|unsupported toolchain|no kernel image/i;

/** What to do when `text` (a native error line) says the driver cannot run the prebuilt CUDA kernels; `first` is the option to list first. */
export function cudaDriverRemedy(text: string, first?: string): string | undefined {
  if (!CUDA_DRIVER_TOO_OLD.test(text)) return undefined;
  const options = [first, 'update the driver', 'build llama.cpp for this GPU with `npx --no node-llama-cpp source download --gpu cuda` (needs the CUDA toolkit)'].filter((o): o is string => o !== undefined);
  const listed = `${options.slice(0, -1).join(', ')}, or ${options[options.length - 1]!}`;
  return `The NVIDIA driver cannot run the prebuilt CUDA kernels for this GPU (it is older than the CUDA toolkit they were built with). ${listed[0]!.toUpperCase()}${listed.slice(1)}, then restart the console.`;
}
