// Generated from the JSDoc of cursors.js by tools/types.mjs (tsc); do not edit.
/**
 * Where a logs subscription stands, so a resumed one shows no gap and no duplicate.
 * The engine's `since` is inclusive and may be rounded, so a resume asks for a little
 * before the last line seen and drops what was already shown: every line older than
 * the last timestamp, and at that very timestamp the lines already delivered
 * (counted: two identical lines may share a timestamp).
 */
export class LogCursor {
    static RESUME_OVERLAP_NS: bigint;
    /** @type {bigint|null} */
    lastNs: bigint | null;
    /** @type {Map<string, number>} */
    atLast: Map<string, number>;
    /** @type {Map<string, number>} */
    replay: Map<string, number>;
    dropped: number;
    /** True when the line is new and should be shown. @param {string} timestamp @param {string} stream @param {string} data */
    accept(timestamp: string, stream: string, data: string): boolean;
    /** Fields of `subscribe_logs` for a resumed subscription ({} before any line). */
    resume(): {
        since?: undefined;
        tail?: undefined;
    } | {
        since: string;
        tail: string;
    };
}
/**
 * Where an events subscription stands. A resume asks the server for the events since a
 * little before the newest one seen (the engine may deliver concurrent events slightly
 * out of time order) and drops those already delivered, by identity.
 */
export class EventCursor {
    static RESUME_MARGIN_NS: bigint;
    static MEMORY_NS: bigint;
    /** The identity of a message: the same event of two hosts is two events.
     * @param {any} msg a `docker_event` or `system_log` message */
    static key(msg: any): string;
    /** @type {bigint|null} */
    newestNs: bigint | null;
    /** @type {Map<string, bigint>} identity -> time, for the last MEMORY_NS */
    seen: Map<string, bigint>;
    dropped: number;
    /** True when the message is new. @param {any} msg */
    accept(msg: any): boolean;
    /** `since` for a resumed `subscribe` (undefined before any event). */
    resumeSince(): string;
}
