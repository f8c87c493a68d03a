// The V8 flags the `certctl-agent` bin sets before it loads the agent (certctl-agent.js), chosen from
// the environment and node's own flags. Plain JavaScript beside the bin: it runs before any build.
// Why each flag: bench/README.md "Memory" (the agent runs on every managed host, so its idle
// memory counts).

/**
 * @param {{ readonly env: Record<string, string | undefined>, readonly execArgv: ReadonlyArray<string> }} process
 * @returns {Array<string>} the flags to pass to `v8.setFlagsFromString`, in order
 */
export const agentV8Flags = ({ env, execArgv }) => {
  const chosen = `${env.NODE_OPTIONS ?? ""} ${execArgv.join(" ")}`
  const flags = []
  // V8 grows its young generation up to 2 × 16 MB during start-up's allocation burst and keeps it;
  // stopping the growth keeps it at its initial 1 MB semi-spaces. The size flags
  // (`--max-semi-space-size`) are read only when the heap is created, and a bin cannot pass node
  // flags; the growth factor is read each time the young generation would grow. A young-generation
  // size the operator chose (NODE_OPTIONS or node's own flags) is left alone.
  if (!/semi[-_]space/.test(chosen)) flags.push("--semi-space-growth-factor=1")
  // No optimizing compilers (TurboFan, Sparkplug). The agent mostly waits on the network; its CPU per
  // certificate is crypto, I/O and code that runs a few times per certificate, interpreted either
  // way. An agent whose compilers have run keeps their part of node's binary and their code
  // resident: about 5 MB of an idle agent's RSS. Both flags are read each time V8 would tier a
  // function up, so they work when set at run time. Not `--jitless`, which saves about 1 MB more but
  // also removes WebAssembly, which ssh2 (nginx targets) needs. CERTCTL_AGENT_JIT=on, or any of these
  // flags in NODE_OPTIONS or node's own flags, leaves V8's defaults alone.
  const jit = (env.CERTCTL_AGENT_JIT ?? "").trim().toLowerCase()
  const jitOn = ["1", "on", "true", "yes"].includes(jit)
  // A value that is neither stops the agent, as every other bad setting does: a typo must not
  // silently leave the compilers off.
  if (!jitOn && !["", "0", "off", "false", "no"].includes(jit))
    throw new Error(`CERTCTL_AGENT_JIT must be on or off, not ${JSON.stringify(jit.slice(0, 40))}`)
  if (!jitOn && !/--(no[-_])?(opt|sparkplug|jitless|lite[-_]mode)(?=[\s=]|$)/.test(chosen))
    flags.push("--no-opt", "--no-sparkplug")
  return flags
}
