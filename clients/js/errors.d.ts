// Generated from the JSDoc of errors.js by tools/types.mjs (tsc); do not edit.
/**
 * An `error` message of the protocol as an OpenPanelError. The specification's
 * code-less `{"type":"error","message":"Invalid token"}` is AUTH_FAILED.
 * @param {any} msg
 * @returns {OpenPanelError}
 */
export function errorFromMessage(msg: any): OpenPanelError;
/** @param {number|undefined|null} code */
export function shouldReconnect(code: number | undefined | null): boolean;
/**
 * Every error this client reports. `code` is the server's error code (AUTH_FAILED,
 * CONTAINER_NOT_FOUND, PERMISSION_DENIED, RATE_LIMIT, INVALID_MESSAGE,
 * DOCKER_UNAVAILABLE, INTERNAL_ERROR, ...) or one of the client's own:
 * CONNECTION_CLOSED (a close code that forbids retrying), CONNECTION_LOST (a terminal's
 * connection dropped), SUBSCRIPTION_ENDED (e.g. the container was removed),
 * TERMINAL_ERROR, TOKEN_ERROR (getToken() threw), NO_WEBSOCKET.
 */
export class OpenPanelError extends Error {
    /**
     * @param {string} code
     * @param {string} message
     * @param {{containerId?: string, host?: string, closeCode?: number, raw?: object}} [extra]
     */
    constructor(code: string, message: string, extra?: {
        containerId?: string;
        host?: string;
        closeCode?: number;
        raw?: object;
    });
    /** @type {string} */
    code: string;
    /** @type {string|undefined} */
    containerId: string | undefined;
    /** @type {string|undefined} the Docker host of the container named (docs/protocol.md "Hosts") */
    host: string | undefined;
    /** @type {number|undefined} */
    closeCode: number | undefined;
    /** @type {object|undefined} */
    raw: object | undefined;
}
export const CLOSE: Readonly<{
    NORMAL: 1000;
    GOING_AWAY: 1001;
    ABNORMAL: 1006;
    POLICY_VIOLATION: 1008;
    MESSAGE_TOO_BIG: 1009;
    TRY_AGAIN_LATER: 1013;
    AUTH_FAILED: 4001;
    HEARTBEAT_TIMEOUT: 4002;
}>;
