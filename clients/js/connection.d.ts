// Generated from the JSDoc of connection.js by tools/types.mjs (tsc); do not edit.
/**
 * @typedef {object} ConnectionConfig
 * @property {string} url the endpoint's ws(s):// URL
 * @property {RateLimit} rateLimit the server's limit for this endpoint (mirrored, stricter)
 * @property {BackoffOptions} [backoff]
 * @property {boolean} [reconnect] false: a lost connection fails its consumers (default true)
 * @property {boolean} [refreshes] true when tokens come from getToken(): re-authenticate before `exp`
 * @property {number|null} [idleTimeout] ms without a message before the connection counts as dead
 * @property {() => number} [wallClock] unix ms (pong timestamps, token expiry); default Date.now
 */
/**
 * One WebSocket to one endpoint across reconnects: welcome and auth, heartbeat
 * answers, final or transient closes, backoff, token refresh, resubscription and the
 * outbox that paces what is sent. Times are the caller's monotonic milliseconds.
 */
export class ClientConnection {
    /** @param {ConnectionConfig} config */
    constructor({ url, rateLimit, backoff, reconnect, refreshes, idleTimeout, wallClock }: ConnectionConfig);
    url: string;
    rateLimit: import("./pure.js").RateLimit;
    reconnect: boolean;
    refreshes: boolean;
    /** @type {number|null} */
    idleTimeout: number | null;
    wallClock: () => number;
    backoff: Backoff;
    /** @type {Carried[]} */
    consumers: Carried[];
    /** counts sockets: inputs naming an older one are ignored */
    generation: number;
    /** a socket is open or opening */
    socket: boolean;
    authenticated: boolean;
    everAuthenticated: boolean;
    closed: boolean;
    /** @type {string|undefined} */
    userId: string | undefined;
    /** @type {Outbox|null} */
    outbox: Outbox | null;
    /** the retry timer is set */
    retrying: boolean;
    /** the pump timer is set */
    pumping: boolean;
    /** @type {number|null} */
    lastPingAt: number | null;
    /** @type {number|null} */
    pingGap: number | null;
    /** @type {ConnectionState|null} */
    state: ConnectionState | null;
    /** @type {OpenPanelError|undefined} why the coming close is final */
    finalError: OpenPanelError | undefined;
    /** @type {OpenPanelError|null} the loss the consumers are being told about */
    lost: OpenPanelError | null;
    /** True while there is a connection to queue messages on. */
    get canSend(): boolean;
    /** @param {Carried} consumer @param {number} now @returns {ConnectionAction[]} */
    attach(consumer: Carried, now: number): ConnectionAction[];
    /** @param {Carried} consumer @param {boolean} sendUnsubscribe @param {number} now @returns {ConnectionAction[]} */
    detach(consumer: Carried, sendUnsubscribe: boolean, now: number): ConnectionAction[];
    /** Queue a message (or `{input}`) behind the rate-limit mirror. @param {any} item @param {number} now @returns {ConnectionAction[]} */
    send(item: any, now: number): ConnectionAction[];
    /** @param {number} now @returns {ConnectionAction[]} */
    pump(now: number): ConnectionAction[];
    /** @param {number} now @returns {ConnectionAction[]} */
    open(now: number): ConnectionAction[];
    /** A text (or binary) message of socket `generation`. @param {number} generation @param {any} data @param {number} now @returns {ConnectionAction[]} */
    received(generation: number, data: any, now: number): ConnectionAction[];
    /** Heartbeat: answered ahead of everything, never counted against the limit. @param {number} now */
    onPing(now: number): ConnectionAction[];
    /** @param {any} msg @param {number} now @returns {ConnectionAction[]} */
    onAuthenticated(msg: any, now: number): ConnectionAction[];
    /**
     * Browsers cannot send ping frames: a server that went silent (its host gone, a
     * half-open TCP) is noticed by missing heartbeats: 2.5 of its observed intervals.
     * @returns {ConnectionAction[]}
     */
    armIdle(): ConnectionAction[];
    /** The token for socket `generation` arrived. @param {number} generation @param {string} token @param {number} now @returns {ConnectionAction[]} */
    tokenReady(generation: number, token: string, now: number): ConnectionAction[];
    /** getToken() threw: the coming close is final. @param {number} generation @param {unknown} error @returns {ConnectionAction[]} */
    tokenFailed(generation: number, error: unknown): ConnectionAction[];
    /** @param {TimerName} timer @param {number} now @returns {ConnectionAction[]} */
    timerFired(timer: TimerName, now: number): ConnectionAction[];
    /**
     * Socket `generation` closed (or failed to open). A final close fails the consumers; a
     * transient one returns `disconnected`: the shell tells the consumers, then calls
     * afterDisconnect() for the reconnect decision.
     * @param {number} generation @param {number} code @param {string} reason @returns {ConnectionAction[]}
     */
    socketClosed(generation: number, code: number, reason: string): ConnectionAction[];
    /** The consumers were told of the loss: reconnect after a backoff, or give up. @returns {ConnectionAction[]} */
    afterDisconnect(): ConnectionAction[];
    /** Close, then fail every consumer with `err`. @param {OpenPanelError} err @returns {ConnectionAction[]} */
    fail(err: OpenPanelError): ConnectionAction[];
    /** For good: nothing reconnects afterwards. @returns {ConnectionAction[]} */
    close(): ConnectionAction[];
    /** @param {ConnectionState} state @returns {ConnectionAction[]} */
    setState(state: ConnectionState): ConnectionAction[];
}
export type RateLimit = import("./pure.js").RateLimit;
export type BackoffOptions = import("./pure.js").BackoffOptions;
export type ConnectionState = "connecting" | "authenticated" | "reconnecting" | "closed";
export type TimerName = "pump" | "retry" | "refresh" | "idle";
/**
 * What a link carries, as the connection sees it: the messages that (re)subscribe a
 * consumer and the ones that end its subscription. (Messages and errors reach the
 * consumers through the shell: the `route`, `route-error`, `disconnected` and `fail`
 * actions.)
 */
export type Carried = {
    subscribeMessages: () => object[];
    unsubscribeMessages: () => object[];
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type OpenSocket = {
    kind: "open";
    url: string;
    generation: number;
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type SendText = {
    kind: "send";
    text: string;
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type CloseSocket = {
    kind: "close-socket";
    code: number;
    reason: string;
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type SetTimer = {
    kind: "set-timer";
    timer: TimerName;
    delay: number;
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type ClearTimer = {
    kind: "clear-timer";
    timer: TimerName;
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type FetchToken = {
    kind: "fetch-token";
    generation: number;
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type StateChanged = {
    kind: "state";
    state: ConnectionState;
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type RouteMessage = {
    kind: "route";
    msg: any;
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type RouteError = {
    kind: "route-error";
    err: OpenPanelError;
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type Disconnected = {
    kind: "disconnected";
    err: OpenPanelError;
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type FailAll = {
    kind: "fail";
    err: OpenPanelError;
    consumers: Carried[];
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type Forget = {
    kind: "forget";
};
/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 */
export type ConnectionAction = OpenSocket | SendText | CloseSocket | SetTimer | ClearTimer | FetchToken | StateChanged | RouteMessage | RouteError | Disconnected | FailAll | Forget;
export type ConnectionConfig = {
    /**
     * the endpoint's ws(s):// URL
     */
    url: string;
    /**
     * the server's limit for this endpoint (mirrored, stricter)
     */
    rateLimit: RateLimit;
    backoff?: BackoffOptions;
    /**
     * false: a lost connection fails its consumers (default true)
     */
    reconnect?: boolean;
    /**
     * true when tokens come from getToken(): re-authenticate before `exp`
     */
    refreshes?: boolean;
    /**
     * ms without a message before the connection counts as dead
     */
    idleTimeout?: number | null;
    /**
     * unix ms (pong timestamps, token expiry); default Date.now
     */
    wallClock?: () => number;
};
import { Backoff } from './pure.js';
import { Outbox } from './pure.js';
import { OpenPanelError } from './errors.js';
