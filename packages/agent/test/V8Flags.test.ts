import { describe, expect, it } from "vitest"
// @ts-expect-error: plain JavaScript beside the bin, without declarations
import { agentV8Flags } from "../bin/v8Flags.js"

const flagsOf = agentV8Flags as (p: {
  env: Record<string, string | undefined>
  execArgv: Array<string>
}) => Array<string>

describe("the certctl-agent bin's V8 flags", () => {
  it("by default: a young generation that does not grow, and no optimizing compilers", () => {
    expect(flagsOf({ env: {}, execArgv: [] })).toEqual(["--semi-space-growth-factor=1", "--no-opt", "--no-sparkplug"])
    // The image's and the systemd unit's NODE_OPTIONS choose the young generation's size only.
    expect(flagsOf({ env: { NODE_OPTIONS: "--max-semi-space-size=2" }, execArgv: [] })).toEqual([
      "--no-opt",
      "--no-sparkplug"
    ])
  })

  it("CERTCTL_AGENT_JIT=on, or the operator's own compiler flags, leave V8's compilers alone", () => {
    for (const value of ["on", "1", "true", " ON "])
      expect(flagsOf({ env: { CERTCTL_AGENT_JIT: value }, execArgv: [] })).toEqual(["--semi-space-growth-factor=1"])
    expect(flagsOf({ env: { CERTCTL_AGENT_JIT: "off" }, execArgv: [] })).toContain("--no-opt")
    for (const chosen of ["--jitless", "--opt", "--no-sparkplug", "--lite-mode"]) {
      expect(flagsOf({ env: { NODE_OPTIONS: chosen }, execArgv: [] })).toEqual(["--semi-space-growth-factor=1"])
      expect(flagsOf({ env: {}, execArgv: [chosen] })).toEqual(["--semi-space-growth-factor=1"])
    }
    // A flag that only starts the same way is not one of them.
    expect(flagsOf({ env: { NODE_OPTIONS: "--optimize-for-size" }, execArgv: [] })).toContain("--no-opt")
    expect(flagsOf({ env: {}, execArgv: ["--max-semi-space-size=4"] })).toEqual(["--no-opt", "--no-sparkplug"])
  })

  it("a CERTCTL_AGENT_JIT that is neither on nor off stops the agent, naming the setting", () => {
    for (const value of ["of", "enabled", "x".repeat(500)])
      expect(() => flagsOf({ env: { CERTCTL_AGENT_JIT: value }, execArgv: [] })).toThrow(
        /CERTCTL_AGENT_JIT must be on or off/
      )
    for (const value of ["", "off", "0", "no", "false"])
      expect(flagsOf({ env: { CERTCTL_AGENT_JIT: value }, execArgv: [] })).toContain("--no-opt")
  })
})
