import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const ddl = `
-- The renewal scan pages through due certificates in (renew_at, id) order with a keyset
-- (renew_at, id) > (last). On renew_at alone the row comparison was a filter, not an index bound:
-- with many certificates due at the same instant (a fleet imported at once) every batch re-read
-- all the rest, and the scan grew with the square of the due count. With id in the index the
-- keyset is the index scan's start and each batch reads only its own rows, already in order.
CREATE INDEX certificates_renew_due_keyset ON certificates (renew_at, id)
  WHERE status IN ('active','failed') AND renew_at IS NOT NULL;
-- It serves everything the old index served (renew_at leads), so that one only costs writes.
DROP INDEX certificates_renew_due;
`

export default Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(ddl))
