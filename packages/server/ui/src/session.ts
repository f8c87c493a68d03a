import { signal } from "./signal.js"
import { ApiError, api, onUnauthorized, type Role, request, setKey } from "./api.js"

/**
 * The signed-in session: the API key (sessionStorage only, so it goes when the tab closes; never
 * in a URL or a cookie) and the role the server gives it.
 */
const storageKey = "certctl.apiKey"

export interface Session {
  readonly role: Role
}
export const session = signal<Session | undefined>(undefined)

/**
 * The role of a key: GET /api/v1/whoami where the server has it; otherwise a read every operator
 * may make (key valid?) and then the audit chain check, which only admins may run.
 */
export const roleOf = async (key: string): Promise<Role> => {
  try {
    return (await api.whoami(key)).role
  } catch (e) {
    if (!(e instanceof ApiError) || (e.status !== 404 && e.status !== 405)) throw e
  }
  await request("GET", "/api/v1/certificates?limit=1", undefined, key)
  try {
    await request("GET", "/api/v1/audit/verify", undefined, key)
    return "admin"
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return "viewer"
    throw e
  }
}

export const signIn = async (key: string) => {
  const role = await roleOf(key)
  if (role === "agent")
    throw new ApiError(403, "forbidden", "this is an agent's key; sign in with an admin or viewer key", undefined)
  sessionStorage.setItem(storageKey, key)
  setKey(key)
  session.set({ role })
}

export const signOut = () => {
  sessionStorage.removeItem(storageKey)
  setKey(undefined)
  session.set(undefined)
}

/** Restores the tab's session after a reload; a key the server no longer takes is dropped. */
export const restore = async () => {
  const key = sessionStorage.getItem(storageKey)
  if (!key) return
  try {
    await signIn(key)
  } catch {
    signOut()
  }
}

onUnauthorized(() => signOut())

export const isAdmin = () => session.get()?.role === "admin"
