import { useEffect, useRef, useState } from "preact/hooks"
import { followJobEvents } from "./api.js"

export type LiveMode = "connecting" | "events" | "polling"

/**
 * Calls `refresh` whenever jobs change: on each server-sent event of GET /api/v1/jobs/events, at
 * most every 300 ms, or, where the server has no event stream (or it drops), every 2 s.
 */
export const useLive = (refresh: () => void, enabled = true): LiveMode => {
  const [mode, setMode] = useState<LiveMode>("connecting")
  const latest = useRef(refresh)
  latest.current = refresh
  useEffect(() => {
    if (!enabled) return
    const abort = new AbortController()
    let poll: ReturnType<typeof setInterval> | undefined
    let pending: ReturnType<typeof setTimeout> | undefined
    const startPolling = () => {
      if (abort.signal.aborted || poll) return
      setMode("polling")
      poll = setInterval(() => latest.current(), 2000)
    }
    const onEvent = () => {
      if (pending) return
      pending = setTimeout(() => {
        pending = undefined
        latest.current()
      }, 300)
    }
    followJobEvents(onEvent, abort.signal, () => {
      setMode("events")
      // Changes made while the stream was opening are picked up once.
      latest.current()
    })
      .then(() => startPolling())
      .catch(() => startPolling())
    return () => {
      abort.abort()
      if (poll) clearInterval(poll)
      if (pending) clearTimeout(pending)
    }
  }, [enabled])
  return mode
}

export const LiveBadge = ({ mode }: { mode: LiveMode }) => (
  <span class={`live live-${mode}`} role="status">
    {mode === "events" ? "● Live" : mode === "polling" ? "● Live (polling every 2 s)" : "○ Connecting…"}
  </span>
)
