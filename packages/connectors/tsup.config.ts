import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts", "src/targets.ts", "src/fileTarget.ts", "src/issuers.ts"],
  format: ["esm"],
  dts: false,
  clean: true,
  sourcemap: true,
  target: "node20"
})
