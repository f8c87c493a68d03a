import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: { conditions: ["source"] },
  // Vite resolves test imports through its SSR resolver, which needs the condition too.
  ssr: { resolve: { conditions: ["source"] } },
  test: {
    include: ["packages/*/test/**/*.test.ts", "deploy/test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Peer-backed suites (PostgreSQL, sshd, nginx, Pebble) share machine-wide ports.
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1,
    pool: "forks"
  }
})
