import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The bundle is committed and embedded in the Go binary (web/dashboard.go),
// so the build must be reproducible: no source maps, no timestamps, names
// hashed from content.
export default defineConfig({
  plugins: [react()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
    chunkSizeWarningLimit: 1024,
  },
});
