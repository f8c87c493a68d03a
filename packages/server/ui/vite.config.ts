import { fileURLToPath } from "node:url"
import { defineConfig } from "vite"

const here = fileURLToPath(new URL(".", import.meta.url))

/**
 * Builds the dashboard into the server package's dist/ui, which certctl-server serves at `/`.
 * Preact's JSX goes through esbuild directly: no framework plugin is needed.
 */
export default defineConfig({
  root: here,
  base: "/",
  publicDir: false,
  logLevel: "warn",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: fileURLToPath(new URL("../dist/ui", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    // One small bundle; the CSP forbids inline scripts, so nothing may be inlined as a data: module.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false
  }
})
