/**
 * Readers for settings taken from the environment, shared by the server and core's own layers, so
 * that a value the process cannot honestly use stops startup with the variable's name.
 */
import { Config, Duration } from "effect"

/**
 * A duration that must not be negative. Effect's duration parser reads "-1 seconds" as zero, so a
 * sign typo would silently turn a lease or a timeout off: it is refused by name instead.
 */
export const duration = (name: string, fallback: Duration.DurationInput): Config.Config<Duration.Duration> =>
  Config.string(name).pipe(
    Config.validate({ message: "must not be negative", validation: (s) => !s.trim().startsWith("-") }),
    Config.zipWith(Config.duration(name), (_, d) => d),
    Config.withDefault(Duration.decode(fallback))
  )

/**
 * A number no smaller than `min`. Validated before the default applies: validating the defaulted
 * Config lost the variable's name from the error ("Invalid data at : must be at least 1").
 */
export const atLeast = (
  name: string,
  min: number,
  fallback: number,
  config: Config.Config<number> = Config.integer(name)
): Config.Config<number> =>
  config.pipe(
    Config.validate({ message: `must be at least ${min}`, validation: (n) => n >= min }),
    Config.withDefault(fallback)
  )
