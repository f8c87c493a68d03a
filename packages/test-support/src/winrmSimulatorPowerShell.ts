import { PsError, type WindowsHost } from "./winrmSimulatorWindows.js"

/**
 * A tiny PowerShell interpreter for the WinRM *simulator*. It parses real PowerShell syntax —
 * statements, pipelines, cmdlets with named parameters, single-quoted literals, variables and
 * member access, method calls, `@()`, `@{}`, `Where-Object { $_.P -eq … }`, try/catch/finally,
 * exit — but knows only the cmdlets an IIS deployment needs. Anything else fails the way
 * PowerShell does ("The term 'X' is not recognized…"), so a script the simulator cannot run
 * is a script we have not modelled, never a silent success.
 */

export interface PsResult {
  readonly stdout: string
  readonly stderr: string
  readonly exitCode: number
}

type Node =
  | { t: "str"; v: string }
  | { t: "num"; v: number }
  | { t: "word"; v: string }
  | { t: "var"; name: string; path: Array<Member> }
  | { t: "static"; type: string; path: Array<Member> }
  | { t: "array"; pipe: Pipe }
  | { t: "paren"; pipe: Pipe }
  | { t: "hash"; entries: Array<[string, Node]> }
  | { t: "block"; src: string }
  | { t: "list"; items: Array<Node> }
  | { t: "cmd"; name: string; args: Array<{ param?: string; value?: Node }> }
interface Member {
  name: string
  args?: Array<Node>
}
type Pipe = Array<Node>

const QUOTES = "'\u2018\u2019\u201A\u201B"
export const METHODS = Symbol("methods")
class Exit {
  constructor(readonly code: number) {}
}

class Parser {
  i = 0
  constructor(readonly src: string) {}
  ws() {
    while (/[ \t]/.test(this.src[this.i] ?? "")) this.i++
  }
  at(s: string) {
    this.ws()
    return this.src.startsWith(s, this.i)
  }
  eat(s: string) {
    if (!this.at(s)) throw new PsError(`Missing '${s}' at '${this.src.slice(this.i, this.i + 30)}'.`)
    this.i += s.length
  }
  done() {
    this.ws()
    return this.i >= this.src.length
  }

  pipeline(stop = ""): Pipe {
    const out: Pipe = [this.element(stop)]
    while (this.at("|")) {
      this.i++
      out.push(this.element(stop))
    }
    return out
  }
  element(stop: string): Node {
    this.ws()
    const m = /^[A-Za-z]+-[A-Za-z]+/.exec(this.src.slice(this.i))
    if (!m) return this.expr()
    this.i += m[0].length
    const args: Array<{ param?: string; value?: Node }> = []
    for (;;) {
      this.ws()
      const c = this.src[this.i]
      if (c === undefined || c === "|" || c === ";" || stop?.includes(c)) break
      const p = /^-([A-Za-z]+)/.exec(this.src.slice(this.i))
      if (p) {
        this.i += p[0].length
        args.push({ param: p[1].toLowerCase() })
      } else {
        const value = this.expr()
        const last = args[args.length - 1]
        if (last?.param !== undefined && last.value === undefined && !isSwitch(m[0], last.param)) last.value = value
        else args.push({ value })
      }
    }
    return { t: "cmd", name: m[0].toLowerCase(), args }
  }
  expr(): Node {
    const first = this.primary()
    if (!this.at(",")) return first
    const items = [first]
    while (this.at(",")) {
      this.i++
      items.push(this.primary())
    }
    return { t: "list", items }
  }
  primary(): Node {
    this.ws()
    const s = this.src
    const c = s[this.i]
    if (c !== undefined && QUOTES.includes(c)) {
      let v = ""
      for (this.i++; ; this.i++) {
        if (this.i >= s.length) throw new PsError("The string is missing the terminator: '.")
        if (QUOTES.includes(s[this.i])) {
          const next = s[this.i + 1]
          if (next !== undefined && QUOTES.includes(next)) v += s[++this.i]
          else break
        } else v += s[this.i]
      }
      this.i++
      return { t: "str", v }
    }
    if (c === '"') throw new PsError("Double-quoted strings are not modelled by the simulator.")
    const num = /^\d+/.exec(s.slice(this.i))
    if (num) {
      this.i += num[0].length
      return { t: "num", v: Number(num[0]) }
    }
    if (c === "$") {
      const v = /^\$(env:\w+|\w+)/.exec(s.slice(this.i))
      if (!v) throw new PsError(`Unexpected '$' at '${s.slice(this.i, this.i + 20)}'.`)
      this.i += v[0].length
      return { t: "var", name: v[1].toLowerCase(), path: this.members() }
    }
    if (s.startsWith("@(", this.i)) {
      this.i += 2
      const pipe = this.pipeline(")")
      this.eat(")")
      return { t: "array", pipe }
    }
    if (s.startsWith("@{", this.i)) {
      this.i += 2
      const entries: Array<[string, Node]> = []
      while (!this.at("}")) {
        const k = /^\s*(\w+)\s*=/.exec(s.slice(this.i))
        if (!k) throw new PsError("Missing '=' operator after key in hash literal.")
        this.i += k[0].length
        entries.push([k[1], this.expr()])
        if (this.at(";")) this.i++
      }
      this.eat("}")
      return { t: "hash", entries }
    }
    if (c === "{") {
      let depth = 0
      const start = this.i
      for (; this.i < s.length; this.i++) {
        if (QUOTES.includes(s[this.i])) {
          for (this.i++; this.i < s.length && !QUOTES.includes(s[this.i]); this.i++);
        } else if (s[this.i] === "{") depth++
        else if (s[this.i] === "}" && --depth === 0) break
      }
      this.eat("}")
      return { t: "block", src: s.slice(start + 1, this.i - 1) }
    }
    if (c === "[") {
      const end = s.indexOf("]", this.i)
      const type = s
        .slice(this.i + 1, end)
        .toLowerCase()
        .replace(/^system\./, "")
      this.i = end + 1
      this.eat("::")
      this.i -= 1 // members() expects to sit on the separator
      return { t: "static", type, path: this.members(":") }
    }
    if (c === "(") {
      this.i++
      const pipe = this.pipeline(")")
      this.eat(")")
      return { t: "paren", pipe }
    }
    const w = /^[A-Za-z][\w.:\\-]*/.exec(s.slice(this.i))
    if (!w) throw new PsError(`Unexpected token '${s.slice(this.i, this.i + 20)}'.`)
    this.i += w[0].length
    return { t: "word", v: w[0] }
  }
  members(sep = "."): Array<Member> {
    const path: Array<Member> = []
    while (this.src[this.i] === "." || (sep === ":" && path.length === 0 && this.src[this.i] === ":")) {
      this.i++
      const n = /^\w+/.exec(this.src.slice(this.i))
      if (!n) throw new PsError("Missing property name after '.'.")
      this.i += n[0].length
      const member: Member = { name: n[0].toLowerCase() }
      if (this.src[this.i] === "(") {
        this.i++
        member.args = []
        while (!this.at(")")) {
          member.args.push(this.primary())
          if (this.at(",")) this.i++
        }
        this.eat(")")
      }
      path.push(member)
    }
    return path
  }
}

const SWITCHES = new Set(["asplaintext", "force", "compress", "deletekey", "exportable"])
const isSwitch = (_cmd: string, param: string) => SWITCHES.has(param)

const unwrap = (items: Array<unknown>): unknown => (items.length === 0 ? null : items.length === 1 ? items[0] : items)
const enumerate = (v: unknown): Array<unknown> => (Array.isArray(v) ? v : [v])
const lower = (s: string) => s.toLowerCase()

const prop = (v: unknown, name: string): unknown => {
  if (v === null || v === undefined) return name === "count" || name === "length" ? 0 : null
  if (Array.isArray(v)) {
    if (name === "count" || name === "length") return v.length
    return unwrap(v.map((x) => prop(x, name)).filter((x) => x !== null && x !== undefined))
  }
  if (typeof v === "string" || Buffer.isBuffer(v)) return name === "length" || name === "count" ? v.length : null
  if (typeof v === "object") {
    const key = Object.keys(v).find((k) => lower(k) === name)
    if (key !== undefined) return (v as Record<string, unknown>)[key]
    return name === "count" ? 1 : null
  }
  return name === "count" ? 1 : null
}

const psEq = (a: unknown, b: unknown) =>
  typeof a === "string" && typeof b === "string" ? lower(a) === lower(b) : a === b || (a == null && b == null)

const truthy = (v: unknown) =>
  !(v === null || v === undefined || v === false || v === 0 || v === "" || (Array.isArray(v) && v.length === 0))

const display = (v: unknown) =>
  typeof v === "object" && v !== null ? `${(v as { __type?: string }).__type ?? "System.Object"}` : String(v)

const clixml = (message: string) =>
  `#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><S S="Error">${message
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")}_x000D__x000A_</S></Objs>`

export type Cmdlet = (
  ctx: Interpreter,
  named: Map<string, unknown>,
  positional: Array<unknown>,
  input: Array<unknown> | undefined
) => Array<unknown>

export class Interpreter {
  stdout = ""
  stderr = ""
  readonly vars = new Map<string, unknown>()
  constructor(
    readonly host: WindowsHost,
    readonly cmdlets: Record<string, Cmdlet>,
    readonly statics: (type: string, path: Array<string>, args: Array<unknown>, ctx: Interpreter) => unknown
  ) {}

  run(script: string): PsResult {
    try {
      this.block(parseBlocks(script.split(/\r?\n/)))
      return { stdout: this.stdout, stderr: this.stderr, exitCode: 0 }
    } catch (e) {
      if (e instanceof Exit) return { stdout: this.stdout, stderr: this.stderr, exitCode: e.code }
      this.stderr += clixml(e instanceof Error ? e.message : String(e))
      return { stdout: this.stdout, stderr: this.stderr, exitCode: 1 }
    }
  }

  private block(stmts: Array<Stmt>) {
    for (const s of stmts) {
      if (s.kind === "line") {
        this.line(s.text)
        continue
      }
      try {
        this.block(s.body)
      } catch (e) {
        if (e instanceof Exit || !s.catch) throw e
        const message = e instanceof Error ? e.message : String(e)
        this.vars.set("_", { Exception: { Message: message } })
        this.block(s.catch)
      } finally {
        if (s.finally) this.block(s.finally)
      }
    }
  }

  private line(text: string) {
    const trimmed = text.trim()
    if (trimmed === "") return
    const exit = /^exit\s+(.+)$/i.exec(trimmed)
    if (exit) throw new Exit(Number(this.eval(new Parser(exit[1]).primary())) || 0)
    const assign = /^\$(\w+)\s*=(?!=)/.exec(trimmed)
    const p = new Parser(assign ? trimmed.slice(assign[0].length) : trimmed)
    const pipe = p.pipeline()
    if (!p.done()) throw new PsError(`Unexpected token '${p.src.slice(p.i, p.i + 30)}' in expression or statement.`)
    const out = this.pipe(pipe)
    if (assign) this.vars.set(lower(assign[1]), unwrap(out))
    else for (const v of out) if (v !== null && v !== undefined) this.stdout += `${display(v)}\r\n`
  }

  pipe(pipe: Pipe): Array<unknown> {
    let values: Array<unknown> | undefined
    for (const el of pipe) {
      values = el.t === "cmd" ? this.command(el, values) : enumerate(this.eval(el))
    }
    return (values ?? []).flatMap((v) => (v === undefined ? [] : [v]))
  }

  private command(node: Extract<Node, { t: "cmd" }>, input: Array<unknown> | undefined): Array<unknown> {
    const named = new Map<string, unknown>()
    const positional: Array<unknown> = []
    for (const a of node.args) {
      if (a.param !== undefined) named.set(a.param, a.value === undefined ? true : this.eval(a.value))
      else positional.push(a.value && a.value.t === "block" ? a.value : this.eval(a.value!))
    }
    const impl = this.cmdlets[node.name]
    if (!impl) {
      throw new PsError(
        `The term '${node.name}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again.`
      )
    }
    try {
      return impl(this, named, positional, input)
    } catch (e) {
      if (lower(String(named.get("erroraction") ?? "")) === "silentlycontinue" && e instanceof PsError) return []
      throw e
    }
  }

  /** Where-Object's scriptblock: `$_.Prop` or `$_.Prop -eq <value>`. */
  test(block: string, item: unknown): boolean {
    const p = new Parser(block)
    const left = p.primary()
    this.vars.set("_", item)
    if (p.done()) return truthy(this.eval(left))
    p.eat("-eq")
    const right = p.primary()
    if (!p.done()) throw new PsError(`Unsupported Where-Object filter: ${block}`)
    return psEq(this.eval(left), this.eval(right))
  }

  /** ForEach-Object's scriptblock: one pipeline, evaluated with `$_` bound to the item. */
  each(block: string, item: unknown): Array<unknown> {
    const p = new Parser(block)
    const pipe = p.pipeline()
    if (!p.done()) throw new PsError(`Unsupported ForEach-Object block: ${block}`)
    this.vars.set("_", item)
    return this.pipe(pipe)
  }

  eval(n: Node): unknown {
    switch (n.t) {
      case "str":
      case "num":
        return n.v
      case "word":
        return n.v
      case "list":
        return n.items.map((i) => this.eval(i))
      case "array":
        return this.pipe(n.pipe)
      case "paren":
        return unwrap(this.pipe(n.pipe))
      case "block":
        return n
      case "hash":
        return Object.fromEntries(n.entries.map(([k, v]) => [k, this.eval(v)]))
      case "static":
        return this.statics(
          n.type,
          n.path.map((m) => m.name),
          (n.path[n.path.length - 1].args ?? []).map((a) => this.eval(a)),
          this
        )
      case "var": {
        let v: unknown
        if (n.name === "true") v = true
        else if (n.name === "false") v = false
        else if (n.name === "null") v = null
        else if (n.name === "env:temp") v = this.host.tempDir
        else v = this.vars.get(n.name) ?? null
        for (const m of n.path) {
          if (m.args === undefined) {
            v = prop(v, m.name)
            continue
          }
          if (v === null || v === undefined) throw new PsError("You cannot call a method on a null-valued expression.")
          const method = (v as { [METHODS]?: Record<string, (...a: Array<unknown>) => unknown> })[METHODS]?.[m.name]
          if (!method)
            throw new PsError(
              `Method invocation failed because [${display(v)}] does not contain a method named '${m.name}'.`
            )
          v = method(...m.args.map((a) => this.eval(a)))
        }
        return v
      }
      case "cmd":
        return unwrap(this.command(n, undefined))
    }
  }
}

type Stmt =
  | { kind: "line"; text: string }
  | { kind: "try"; body: Array<Stmt>; catch?: Array<Stmt>; finally?: Array<Stmt> }

/** try { / } catch { / } finally { / } on lines of their own; everything else is a one-line statement. */
const parseBlocks = (lines: Array<string>): Array<Stmt> => {
  let i = 0
  const read = (): Array<Stmt> => {
    const out: Array<Stmt> = []
    while (i < lines.length) {
      const l = lines[i].trim()
      if (/^}/.test(l)) return out
      i++
      if (/^try\s*{$/i.test(l)) {
        const t: Stmt = { kind: "try", body: read() }
        for (;;) {
          const close = (lines[i] ?? "").trim()
          i++
          if (/^}\s*catch\s*{$/i.test(close)) t.catch = read()
          else if (/^}\s*finally\s*{$/i.test(close)) t.finally = read()
          else if (close === "}") break
          else throw new PsError("Missing closing '}' in statement block or type definition.")
        }
        if (!t.catch && !t.finally) throw new PsError("The Try statement is missing its Catch or Finally block.")
        out.push(t)
      } else out.push({ kind: "line", text: l })
    }
    return out
  }
  const stmts = read()
  if (i < lines.length) throw new PsError("Unexpected token '}' in expression or statement.")
  return stmts
}
