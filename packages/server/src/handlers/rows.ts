import { Paging } from "@certctl/core"

/** Timestamp column → wire string, for the handlers not yet moved to core. */
export const isoReq = (d: Date | string): string => (d instanceof Date ? d : new Date(d)).toISOString()

/** Pagination lives in core (`Paging`); re-exported for the handlers that still page here. */
export const { badCursor, cursorAfter, encodeCursor, pageOf } = Paging
