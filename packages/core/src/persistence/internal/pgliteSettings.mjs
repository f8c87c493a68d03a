import { PGlite } from "@electric-sql/pglite"

// PostgreSQL's default 128 MB of shared buffers is WASM memory that, once touched, this process
// keeps for good: an idle embedded server held about 300 MB with it, about 165 MB with 16 MB
// (bench/memory.mjs). The data files stay in the operating system's page cache either way.
export const startParams = [...PGlite.defaultStartParams, "-c", "shared_buffers=16MB"]
