import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm"],
  dts: false,
  clean: true,
  sourcemap: true,
  target: "node20",
  // The PGlite worker runs as its own module file next to the bundle.
  onSuccess: "mkdir -p dist/internal && cp src/persistence/internal/pgliteWorker.mjs dist/internal/"
})
