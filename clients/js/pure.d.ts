// Generated from the JSDoc of pure.js by tools/types.mjs (tsc); do not edit.
/**
 * A slightly stricter copy of the server's limit: network jitter can bunch frames that
 * left evenly spaced, so keep one token spare and refill a bit slower.
 * @param {RateLimit} limit
 */
export function mirrorLimit(limit: RateLimit, margin?: number): {
    count: number;
    windowMs: number;
};
/**
 * Nanoseconds since the epoch of an RFC 3339 timestamp, exactly (BigInt); null if
 * the text is not one. Engine timestamps carry nanoseconds, which a Number cannot.
 * @param {string} text
 * @returns {bigint|null}
 */
export function parseTimestampNanos(text: string): bigint | null;
/** RFC 3339 UTC keeping nanosecond precision. @param {bigint} nanos */
export function rfc3339FromNanos(nanos: bigint): string;
/**
 * ws://host:port[/ws/x] or http(s)://... -> ws(s)://host:port/ws/<endpoint>; with
 * `hostRoute`, the route of that Docker host: .../hosts/<id>/ws/<endpoint>
 * (docs/protocol.md "Addressing"). A base URL ending in /hosts/<id> works too.
 * @param {string} base @param {Endpoint} endpoint @param {string|null} [hostRoute]
 */
export function gatewayUrl(base: string, endpoint: Endpoint, hostRoute?: string | null): string;
/**
 * The HTTP address of `path` (/api/...) on the gateway of a base URL (a host route's
 * base /hosts/{id} included: the API is the gateway's).
 * @param {string} base
 * @param {string} path
 * @returns {string}
 */
export function apiUrl(base: string, path: string): string;
/** The page's own gateway: ws(s)://location.host. */
export function defaultUrl(): string;
/**
 * The `exp` claim (unix seconds) of a JWT, without verifying it; null if none.
 * @param {string} token
 * @returns {number|null}
 */
export function tokenExpiry(token: string): number | null;
/**
 * When to re-authenticate a connection whose token expires at `exp` (unix s): 30 s
 * before it, or at 80 % of what is left for a token with under 150 s to live; never
 * in less than 1 s.
 * @param {number} exp @param {number} nowMs
 * @returns {number} ms from now
 */
export function refreshDelay(exp: number, nowMs: number): number;
/**
 * A CustomEvent (or an Event with `detail` where CustomEvent is missing).
 * @param {string} type @param {any} detail @returns {Event}
 */
export function makeEvent(type: string, detail: any): Event;
/** @typedef {'containers'|'logs'|'metrics'|'terminal'} Endpoint */
/** @typedef {{count: number, windowMs: number}} RateLimit */
/** @typedef {{base?: number, cap?: number, maxAttempts?: number|null, random?: () => number}} BackoffOptions */
/**
 * Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n)).
 * Milliseconds. `maxAttempts` null (default) retries forever.
 */
export class Backoff {
    /** @param {BackoffOptions} [opts] */
    constructor({ base, cap, maxAttempts, random }?: BackoffOptions);
    base: number;
    cap: number;
    /** @type {number|null} */
    maxAttempts: number | null;
    random: () => number;
    attempts: number;
    /** @returns {number|null} milliseconds before the next attempt; null when exhausted */
    nextDelay(): number | null;
    /** After an authenticated connection: start over from `base`. */
    reset(): void;
}
/**
 * The specification's per-gateway limits (the server's defaults).
 * @type {Record<Endpoint, {count: number, windowMs: number}>}
 */
export const SERVER_RATE_LIMITS: Record<Endpoint, {
    count: number;
    windowMs: number;
}>;
/** A token bucket: `count` tokens, refilled at count/windowMs; times in ms. */
export class TokenBucket {
    /** @param {RateLimit} limit @param {number} now */
    constructor(limit: RateLimit, now: number);
    capacity: number;
    ratePerMs: number;
    tokens: number;
    stamp: number;
    /** @param {number} now */
    refill(now: number): void;
    /** @param {number} now @returns {boolean} */
    tryTake(now: number): boolean;
}
/** Raw characters per merged `input` (JSON escaping can grow control characters 6x;
 * the server's default frame limit is 64 KiB). */
export const MAX_INPUT_CHARS: 8192;
/**
 * Frames waiting for a token of the client-side bucket, in order. While tokens are
 * plentiful every frame leaves at once (keystrokes are not delayed); when the bucket
 * runs dry, consecutive terminal inputs queued meanwhile are merged into one `input`:
 * a held key or a paste is coalesced, never dropped or rejected.
 */
export class Outbox {
    /** @param {RateLimit} limit @param {number} now */
    constructor(limit: RateLimit, now: number);
    limit: {
        count: number;
        windowMs: number;
    };
    bucket: TokenBucket;
    /** @type {Array<object|{input: string}>} */
    queue: Array<object | {
        input: string;
    }>;
    /** @type {object[]} frames the server never counts (heartbeat pong): no token, first */
    free: object[];
    get length(): number;
    /** @param {object} message */
    pushFree(message: object): void;
    /** A protocol message, or `{input: 'keys'}` for terminal keystrokes. @param {object|{input: string}} item */
    push(item: object | {
        input: string;
    }): void;
    /**
     * @param {number} now
     * @returns {[object|null, number]} [message to send now, 0] or [null, ms to wait; Infinity when empty]
     */
    pop(now: number): [object | null, number];
    clear(): void;
}
export function now(): number;
export type Endpoint = "containers" | "logs" | "metrics" | "terminal";
export type RateLimit = {
    count: number;
    windowMs: number;
};
export type BackoffOptions = {
    base?: number;
    cap?: number;
    maxAttempts?: number | null;
    random?: () => number;
};
