import { Schema } from "effect"
const S = Schema.Struct({ a: Schema.String, b: Schema.optional(Schema.Number) }).annotations({ parseOptions: { onExcessProperty: "error" } })
console.log(String(Schema.decodeUnknownEither(S)({ a: "x", c: 1 })))
console.log(String(Schema.decodeUnknownEither(S)({ a: "x" })))
const T = Schema.Struct({ inner: S, z: Schema.String })
console.log(String(Schema.decodeUnknownEither(T)({ inner: { a: "x" }, z: "q", extra: 2 })))
console.log(String(Schema.encodeEither(S)({ a: "x", c: 1 } as any)))
