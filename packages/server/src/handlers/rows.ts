import { Paging } from "@certctl/core"

/** Pagination lives in core (`Paging`); re-exported for the handlers that still import it from here. */
export const { badCursor, cursorAfter, encodeCursor, pageOf } = Paging
