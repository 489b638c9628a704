import { defineConfig } from 'vitest/config';

export default defineConfig({
  define: { __CAIRN_VERSION__: JSON.stringify('0.0.0-test') },
  test: {
    environment: 'jsdom',
    include: ['test/**/*.test.ts'],
  },
});
