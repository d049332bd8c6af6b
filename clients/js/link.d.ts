// Generated from the JSDoc of link.js by tools/types.mjs (tsc); do not edit.
/**
 * @typedef {object} LinkConfig
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
export class LinkMachine {
    /** @param {LinkConfig} config */
    constructor({ url, rateLimit, backoff, reconnect, refreshes, idleTimeout, wallClock }: LinkConfig);
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
    /** @type {LinkState|null} */
    state: LinkState | null;
    /** @type {OpenPanelError|undefined} why the coming close is final */
    finalError: OpenPanelError | undefined;
    /** @type {OpenPanelError|null} the loss the consumers are being told about */
    lost: OpenPanelError | null;
    /** True while there is a connection to queue messages on. */
    get canSend(): boolean;
    /** @param {Carried} consumer @param {number} now @returns {LinkAction[]} */
    attach(consumer: Carried, now: number): LinkAction[];
    /** @param {Carried} consumer @param {boolean} sendUnsubscribe @param {number} now @returns {LinkAction[]} */
    detach(consumer: Carried, sendUnsubscribe: boolean, now: number): LinkAction[];
    /** Queue a message (or `{input}`) behind the rate-limit mirror. @param {any} item @param {number} now @returns {LinkAction[]} */
    send(item: any, now: number): LinkAction[];
    /** @param {number} now @returns {LinkAction[]} */
    pump(now: number): LinkAction[];
    /** @param {number} now @returns {LinkAction[]} */
    open(now: number): LinkAction[];
    /** A text (or binary) message of socket `generation`. @param {number} generation @param {any} data @param {number} now @returns {LinkAction[]} */
    received(generation: number, data: any, now: number): LinkAction[];
    /** Heartbeat: answered ahead of everything, never counted against the limit. @param {number} now */
    onPing(now: number): LinkAction[];
    /** @param {any} msg @param {number} now @returns {LinkAction[]} */
    onAuthenticated(msg: any, now: number): LinkAction[];
    /**
     * Browsers cannot send ping frames: a server that went silent (its host gone, a
     * half-open TCP) is noticed by missing heartbeats: 2.5 of its observed intervals.
     * @returns {LinkAction[]}
     */
    armIdle(): LinkAction[];
    /** The token for socket `generation` arrived. @param {number} generation @param {string} token @param {number} now @returns {LinkAction[]} */
    tokenReady(generation: number, token: string, now: number): LinkAction[];
    /** getToken() threw: the coming close is final. @param {number} generation @param {unknown} error @returns {LinkAction[]} */
    tokenFailed(generation: number, error: unknown): LinkAction[];
    /** @param {TimerName} timer @param {number} now @returns {LinkAction[]} */
    timerFired(timer: TimerName, now: number): LinkAction[];
    /**
     * Socket `generation` closed (or failed to open). A final close fails the consumers; a
     * transient one returns `disconnected`: the shell tells the consumers, then calls
     * afterDisconnect() for the reconnect decision.
     * @param {number} generation @param {number} code @param {string} reason @returns {LinkAction[]}
     */
    socketClosed(generation: number, code: number, reason: string): LinkAction[];
    /** The consumers were told of the loss: reconnect after a backoff, or give up. @returns {LinkAction[]} */
    afterDisconnect(): LinkAction[];
    /** Close, then fail every consumer with `err`. @param {OpenPanelError} err @returns {LinkAction[]} */
    fail(err: OpenPanelError): LinkAction[];
    /** For good: nothing reconnects afterwards. @returns {LinkAction[]} */
    close(): LinkAction[];
    /** @param {LinkState} state @returns {LinkAction[]} */
    setState(state: LinkState): LinkAction[];
}
export type RateLimit = import("./pure.js").RateLimit;
export type BackoffOptions = import("./pure.js").BackoffOptions;
export type LinkState = "connecting" | "authenticated" | "reconnecting" | "closed";
export type TimerName = "pump" | "retry" | "refresh" | "idle";
/**
 * What a link carries, as the machine sees it: the messages that (re)subscribe a
 * consumer and the ones that end its subscription. (Messages and errors reach the
 * consumers through the shell: the `route`, `route-error`, `disconnected` and `fail`
 * actions.)
 */
export type Carried = {
    subscribeMessages: () => object[];
    unsubscribeMessages: () => object[];
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type OpenSocket = {
    kind: "open";
    url: string;
    generation: number;
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type SendText = {
    kind: "send";
    text: string;
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type CloseSocket = {
    kind: "close-socket";
    code: number;
    reason: string;
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type SetTimer = {
    kind: "set-timer";
    timer: TimerName;
    delay: number;
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type ClearTimer = {
    kind: "clear-timer";
    timer: TimerName;
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type FetchToken = {
    kind: "fetch-token";
    generation: number;
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type StateChanged = {
    kind: "state";
    state: LinkState;
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type RouteMessage = {
    kind: "route";
    msg: any;
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type RouteError = {
    kind: "route-error";
    err: OpenPanelError;
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type Disconnected = {
    kind: "disconnected";
    err: OpenPanelError;
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type FailAll = {
    kind: "fail";
    err: OpenPanelError;
    consumers: Carried[];
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type Forget = {
    kind: "forget";
};
/**
 * The actions of a LinkMachine, each a frozen object told apart by `kind`.
 */
export type LinkAction = OpenSocket | SendText | CloseSocket | SetTimer | ClearTimer | FetchToken | StateChanged | RouteMessage | RouteError | Disconnected | FailAll | Forget;
export type LinkConfig = {
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
