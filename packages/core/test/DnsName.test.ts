import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { CertName, DnsName, invalidReason, isIpAddress, namesKey, normalize, validate } from "../src/domain/DnsName.js"

const decode = Schema.decodeUnknownEither(DnsName)
const decodeCert = Schema.decodeUnknownEither(CertName)

const message = (e: Either.Either<unknown, { message: string }>) => (Either.isLeft(e) ? e.left.message : "")

describe("DnsName: accepted names", () => {
  const cases: ReadonlyArray<[input: string, stored: string]> = [
    ["example.com", "example.com"],
    ["www.example.com", "www.example.com"],
    ["a.b.c.d.example", "a.b.c.d.example"],
    ["1.example", "1.example"],
    ["xn--bcher-kva.example", "xn--bcher-kva.example"],
    ["ab--cd.example", "ab--cd.example"],
    ["my-host-01.internal.example", "my-host-01.internal.example"],
    ["  Example.COM  ", "example.com"],
    ["*.example.com", "*.example.com"],
    ["*.Sub.Example.Com", "*.sub.example.com"],
    [`${"a".repeat(63)}.com`, `${"a".repeat(63)}.com`]
  ]
  for (const [input, stored] of cases) {
    it(`${JSON.stringify(input.length > 40 ? `${input.slice(0, 20)}…` : input)} → ${stored.length > 40 ? "(63-octet label)" : stored}`, () => {
      expect(decode(input)).toEqual(Either.right(stored))
      expect(validate(input)).toEqual(Either.right(stored))
      expect(invalidReason(stored)).toBeUndefined()
    })
  }

  it("accepts exactly 253 octets", () => {
    const legal = `${Array(3).fill("c".repeat(63)).join(".")}.${"d".repeat(61)}`
    expect(legal.length).toBe(253)
    expect(decode(legal)).toEqual(Either.right(legal))
  })
})

describe("DnsName: IDNs are converted to A-labels", () => {
  const cases: ReadonlyArray<[input: string, alabel: string]> = [
    ["bücher.example", "xn--bcher-kva.example"],
    ["BÜCHER.Example", "xn--bcher-kva.example"],
    ["münchen.de", "xn--mnchen-3ya.de"],
    ["faß.de", "xn--fa-hia.de"],
    ["☃.example", "xn--n3h.example"],
    ["*.bücher.example", "*.xn--bcher-kva.example"]
  ]
  for (const [input, alabel] of cases) {
    it(`${input} → ${alabel}`, () => {
      expect(normalize(input)).toBe(alabel)
      expect(decode(input)).toEqual(Either.right(alabel))
    })
  }

  it("stores one form: the U-label and the A-label of a name normalise alike", () => {
    expect(normalize("bücher.example")).toBe(normalize("xn--bcher-kva.example"))
    expect(namesKey([normalize("bücher.example"), "xn--bcher-kva.example"])).toBe("xn--bcher-kva.example")
  })
})

describe("DnsName: refused names, each with its reason", () => {
  const cases: ReadonlyArray<[input: string, reason: string]> = [
    ["", "is empty"],
    ["   ", "is empty"],
    ["localhost", "must have at least two labels"],
    ["*", "must have at least two labels"],
    ["example.com.", "must not end with a dot"],
    ["a.*.example", "has a wildcard that is not the leftmost label"],
    ["www.example.*", "has a wildcard that is not the leftmost label"],
    ["*.*.example", "has a wildcard that is not the leftmost label"],
    ["f*o.example", "has a wildcard that is not a whole label"],
    ["*foo.example", "has a wildcard that is not a whole label"],
    ["**.example", "has a wildcard that is not a whole label"],
    ["a..b", 'has an invalid label ""'],
    [".example.com", 'has an invalid label ""'],
    ["*..example", 'has an invalid label ""'],
    ["-a.example", 'has an invalid label "-a"'],
    ["a-.example", 'has an invalid label "a-"'],
    ["a_b.example", 'has an invalid label "a_b"'],
    ["exa mple.com", 'has an invalid label "exa mple"'],
    ["%.example", 'has an invalid label "%"'],
    ["host/path.example", 'has an invalid label "host/path"'],
    [`${"a".repeat(64)}.com`, `has an invalid label "${"a".repeat(64)}"`],
    ["xn--.example", 'has an invalid label "xn--"'],
    ["xn--zz.example", 'has an invalid A-label "xn--zz"'],
    ["xn--a.example", 'has an invalid A-label "xn--a"'],
    ["example.123", "has an all-numeric top-level label"],
    ["127.0.0.1", "has an all-numeric top-level label"]
  ]
  for (const [input, reason] of cases) {
    it(`${JSON.stringify(input.length > 30 ? `${input.slice(0, 12)}…` : input)}: ${reason.slice(0, 60)}`, () => {
      const r = decode(input)
      expect(Either.isLeft(r)).toBe(true)
      expect(message(r)).toContain(`"${input}" is not a valid DNS name: it ${reason}`)
      expect(validate(input)).toEqual(Either.left(`"${input}" is not a valid DNS name: it ${reason}`))
    })
  }

  it("refuses names longer than 253 octets", () => {
    const name = `${Array(4).fill("c".repeat(63)).join(".")}.com`
    expect(name.length).toBeGreaterThan(253)
    expect(message(decode(name))).toContain("is longer than 253 characters")
  })

  it("refuses non-strings with a parse error, not a crash", () => {
    for (const bad of [undefined, null, 42, {}, ["example.com"]]) expect(Either.isLeft(decode(bad))).toBe(true)
  })

  it("never lets a non-ASCII name through unconverted", () => {
    // An unconvertible IDN stays Unicode after normalize, and invalidReason refuses it.
    expect(invalidReason("bücher.example")).toBe("is not in A-label (punycode) form")
    expect(Either.isLeft(decode("xn--bcher-kva.ex\u0000ample"))).toBe(true)
  })
})

describe("CertName", () => {
  it("accepts IPv4 and IPv6 addresses as IP names, normalised", () => {
    expect(decodeCert(" 10.0.0.1 ")).toEqual(Either.right("10.0.0.1"))
    expect(decodeCert("::1")).toEqual(Either.right("::1"))
    expect(decodeCert("2001:DB8::1")).toEqual(Either.right("2001:db8::1"))
    expect(isIpAddress("10.0.0.1")).toBe(true)
    expect(isIpAddress("example.com")).toBe(false)
  })

  it("treats everything else as a DNS name, with the same rules", () => {
    expect(decodeCert("Bücher.Example")).toEqual(Either.right("xn--bcher-kva.example"))
    expect(message(decodeCert("a.*.example"))).toContain(
      '"a.*.example" is not a valid DNS name or IP address: it has a wildcard that is not the leftmost label'
    )
    expect(message(decodeCert("999.1.1.1"))).toContain("has an all-numeric top-level label")
  })
})

describe("namesKey", () => {
  it("is order- and duplicate-insensitive", () => {
    expect(namesKey(["b.example", "a.example", "b.example"])).toBe("a.example,b.example")
    expect(namesKey(["a.example", "b.example"])).toBe(namesKey(["b.example", "a.example"]))
    expect(namesKey(["a.example"])).not.toBe(namesKey(["a.example", "*.a.example"]))
  })
})
