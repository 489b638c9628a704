/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` proxies the API to the query service that `make up` starts (which forwards
// every non-query /api/ route to auth), so the dashboard and the API share an origin as they do
// when query serves dashboard/dist at /.
const api = process.env.CAIRN_API_URL ?? 'http://127.0.0.1:18003';

export default defineConfig({
  plugins: [react()],
  server: {
    port: 5173,
    proxy: { '/api': { target: api, changeOrigin: false } },
  },
  build: {
    outDir: 'dist',
    // The query service's CSP allows scripts from this origin only: nothing may be inlined.
    assetsInlineLimit: 0,
    sourcemap: false,
    chunkSizeWarningLimit: 1000,
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./test/setup.ts'],
    include: ['test/**/*.test.{ts,tsx}'],
    css: false,
    pool: 'threads',
    maxWorkers: 2,
  },
});
