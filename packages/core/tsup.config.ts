import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm"],
  dts: false,
  clean: true,
  sourcemap: true,
  target: "node20",
  // The PGlite worker and initdb process run as module files of their own next to the bundle.
  onSuccess: "mkdir -p dist/internal && cp src/persistence/internal/pglite*.mjs dist/internal/"
})
