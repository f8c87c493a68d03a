import { useEffect, useState } from "preact/hooks"

/** A value with subscribers: the few pieces of app-wide state (session, route, theme). */
export interface Signal<A> {
  readonly get: () => A
  readonly set: (a: A) => void
  readonly subscribe: (f: (a: A) => void) => () => void
}

export const signal = <A>(initial: A): Signal<A> => {
  let value = initial
  const subs = new Set<(a: A) => void>()
  return {
    get: () => value,
    set: (a) => {
      value = a
      for (const f of subs) f(a)
    },
    subscribe: (f) => {
      subs.add(f)
      return () => void subs.delete(f)
    }
  }
}

export const useSignal = <A>(s: Signal<A>): A => {
  const [value, setValue] = useState(s.get())
  useEffect(() => {
    setValue(s.get())
    return s.subscribe(setValue)
  }, [s])
  return value
}
