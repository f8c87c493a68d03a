#!/usr/bin/env node
// `npm run build`: builds the workspaces in dependency stages, running the packages of a stage
// side by side (each package's build is mostly single-threaded tsc/esbuild): core; then connectors
// and sdk (each needs only core); then agent and server. Sequential `--workspaces` took about 45 s
// on a fresh clone here, and a fresh clone's `npm start` builds first.
import { spawn } from "node:child_process"

const stages = [["core"], ["connectors", "sdk"], ["agent", "server"]]

const build = (name) =>
  new Promise((resolve, reject) => {
    const child = spawn("npm", ["run", "build", "-w", `packages/${name}`], { stdio: "inherit" })
    child.on("error", reject)
    child.on("exit", (code) =>
      code === 0
        ? resolve()
        : reject(
            new Error(
              code === 127
                ? // The shell's "command not found": tsup/tsc come from the dev dependencies.
                  `build of packages/${name} failed: its build tools are not installed; run \`npm ci\` (with dev dependencies) first`
                : `build of packages/${name} failed (exit ${code})`
            )
          )
    )
  })

for (const stage of stages) {
  try {
    await Promise.all(stage.map(build))
  } catch (e) {
    console.error(String(e.message ?? e))
    process.exit(1)
  }
}
