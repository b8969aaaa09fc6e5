import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

declare const process: { env: Record<string, string | undefined> };

// The bundle is committed and embedded in the Go binary (web/dashboard.go),
// so the build must be reproducible: no source maps, no timestamps, names
// hashed from content.
export default defineConfig({
  plugins: [react()],
  base: '/',
  // `npm run dev` serves the source with hot reload and sends the API to a
  // running node (BATCHPILOT_URL, default the first `batchpilot dev` node).
  server: {
    proxy: { '/api': { target: process.env.BATCHPILOT_URL ?? 'http://127.0.0.1:8480', changeOrigin: true } },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
    chunkSizeWarningLimit: 1024,
  },
});
