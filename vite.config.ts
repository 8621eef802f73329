import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The dashboard: built into dist/renderer, served by the core at `/` (relative base, so the same
// build works from any origin and inside Electron).
const here = dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: resolve(here, 'renderer'),
  base: './',
  plugins: [react()],
  build: {
    outDir: resolve(here, 'dist/renderer'),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    // recharts is large, but only the lazy pages with charts load it (initial JS stays small).
    chunkSizeWarningLimit: 600,
  },
});
