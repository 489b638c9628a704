// Builds the package: ESM and CommonJS for bundlers and Node, and one minified file for a
// <script> tag that defines `window.cairn`. Type declarations come from `tsc` (see package.json).
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';

const { version } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
const common = {
  bundle: true,
  target: ['es2019'],
  define: { __CAIRN_VERSION__: JSON.stringify(version) },
  logLevel: 'warning',
};

rmSync('dist', { recursive: true, force: true });
await Promise.all([
  build({ ...common, entryPoints: ['src/index.ts'], format: 'esm', outfile: 'dist/index.mjs', sourcemap: true }),
  build({ ...common, entryPoints: ['src/index.ts'], format: 'cjs', outfile: 'dist/index.cjs', sourcemap: true }),
  build({
    ...common,
    entryPoints: ['src/browser.ts'],
    format: 'iife',
    outfile: 'dist/cairn.min.js',
    minify: true,
    sourcemap: true,
  }),
]);
