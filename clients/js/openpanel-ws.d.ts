// Generated from the JSDoc of openpanel-ws.js by tools/types.mjs (tsc); do not edit.
export { ClientConnection } from "./connection.js";
export { Target } from "./consumers.js";
/** @typedef {import('./pure.js').Endpoint} Endpoint */
/** @typedef {import('./pure.js').RateLimit} RateLimit */
/** @typedef {import('./pure.js').BackoffOptions} BackoffOptions */
/** @typedef {import('./connection.js').ConnectionState} ConnectionState */
/**
 * The former name of ConnectionState.
 * @deprecated
 * @typedef {ConnectionState} LinkState
 */
/** @typedef {import('./connection.js').ConnectionAction} ConnectionAction */
/** @typedef {import('./terminal.js').TerminalOptions} TerminalOptions */
/** @typedef {import('./consumers.js').Consumer} Consumer */
export const VERSION: "0.1.0";
/**
 * @typedef {object} ClientOptions
 * @property {string} [url] base URL (ws://host:port or http(s)://...); default: ws(s):// + location.host
 * @property {string} [token] a JWT
 * @property {() => (string|Promise<string>)} [getToken] called before every (re)auth, and before
 *   the token's `exp`; wins over `token`
 * @property {{new (url: string): WebSocket}} [WebSocket] a WebSocket constructor (Node < 22,
 *   tests); default globalThis.WebSocket
 * @property {BackoffOptions} [backoff] ms
 * @property {Partial<Record<Endpoint, RateLimit>>} [rateLimits] the server's limits, if not the defaults
 * @property {number|null} [idleTimeout] ms without any message before the connection is
 *   considered dead; default 2.5 observed heartbeat intervals
 * @property {string} [host] the Docker host of every container named without one (default:
 *   the gateway's default host); each call may name another ({host: 'prod-2'})
 * @property {string} [hostRoute] connect to the routes of this Docker host
 *   (/hosts/{id}/ws/*) instead of the plain /ws/* endpoints that serve every host
 */
/**
 * A handle on a subscription.
 * @typedef {object} Subscription
 * @property {() => void} unsubscribe
 * @property {string} [containerId]
 * @property {string} [host] the host named (by the call or the client's default)
 */
/** @typedef {(err: OpenPanelError) => void} ErrorCallback */
/** @typedef {{endpoint: Endpoint, state: ConnectionState}} StateDetail */
/** @typedef {{tail?: number|'all', since?: string|number, host?: string}} LogsOptions */
/** @typedef {{interval?: number, host?: string}} IntervalOptions */
/**
 * @typedef {object} EventsOptions
 * @property {Record<string, string[]>} [filters]
 * @property {string|number} [since]
 * @property {(msg: HostStatusMessage) => void} [onHostStatus] also the `host_status` messages
 *   of this connection (a Docker host changed state)
 */
/**
 * One row of `GET /api/hosts`.
 * @typedef {object} HostSummary
 * @property {string} id
 * @property {string} engine transport and address, without secrets
 * @property {'connecting'|'up'|'down'|'disabled'|string} state
 * @property {string|null} error the last engine error of a host that is down
 * @property {string|null} version the engine's version
 * @property {number|null} containers
 * @property {boolean} terminals
 */
/**
 * @typedef {object} LogLine
 * @property {string} containerId
 * @property {string} timestamp
 * @property {'stdout'|'stderr'|string} stream
 * @property {string} data
 * @property {string} [host] the Docker host (sent by a gateway of several hosts)
 */
/**
 * @typedef {object} StatsMessage
 * @property {'stats'} type
 * @property {string} containerId
 * @property {string} [host]
 * @property {string} timestamp
 * @property {{cpu: {usage: number, percent: number}, memory: {usage: number, limit: number, percent: number}, network: {rx_bytes: number, tx_bytes: number}}} stats
 */
/**
 * @typedef {object} MetricsMessage
 * @property {'metrics'} type
 * @property {string} timestamp
 * @property {{cpu: {usage: number, cores: number}, memory: {total: number, used: number, free: number, percent: number}, disk: {total: number, used: number, free: number, percent: number}, network: {rx_bytes: number, tx_bytes: number}}} system
 */
/**
 * @typedef {object} DockerEventMessage
 * @property {'docker_event'} type
 * @property {string} [host]
 * @property {string} timestamp
 * @property {{Type: string, Action: string, Actor: {ID: string, Attributes: Record<string, string>}, [k: string]: unknown}} event
 */
/**
 * @typedef {object} SystemLogMessage
 * @property {'system_log'} type
 * @property {string} [host] absent on the lines of the gateway's machine (host log files)
 * @property {string} timestamp
 * @property {'debug'|'info'|'warning'|'error'} level
 * @property {string} message
 * @property {string} source
 */
/**
 * A Docker host changed state (`/ws/logs`; right after auth, one per host not up).
 * @typedef {object} HostStatusMessage
 * @property {'host_status'} type
 * @property {string} host
 * @property {'connecting'|'up'|'down'|'disabled'|string} state
 * @property {string} [error]
 * @property {string} timestamp
 */
/** @typedef {DockerEventMessage|SystemLogMessage} EventMessage */
/**
 * The client: one lazily opened, self-healing connection per endpoint (and per distinct
 * metrics interval or filtered events subscription); one connection per terminal.
 * Events: 'state' {endpoint, state} and 'error' OpenPanelError (errors no callback took).
 */
export class OpenPanelClient extends EventTarget {
    /** @param {ClientOptions} [options] */
    constructor(options?: ClientOptions);
    /** @type {string} */
    url: string;
    tokenValue: string;
    getToken: () => (string | Promise<string>);
    /** @type {{new (url: string): WebSocket}} */
    WebSocket: {
        new (url: string): WebSocket;
    };
    /** @type {BackoffOptions} */
    backoffOptions: BackoffOptions;
    /** @type {Record<Endpoint, RateLimit>} */
    rateLimits: Record<Endpoint, RateLimit>;
    /** @type {number|null} */
    idleTimeout: number | null;
    /** @type {string|undefined} */
    host: string | undefined;
    /** @type {string|null} */
    hostRoute: string | null;
    /** @type {Map<string, Link>} */
    links: Map<string, Link>;
    /** @type {Set<Link>} */
    others: Set<Link>;
    closed: boolean;
    /**
     * @overload
     * @param {'state'} type
     * @param {(ev: CustomEvent<StateDetail>) => void} listener
     * @param {boolean|AddEventListenerOptions} [options]
     * @returns {void}
     */
    addEventListener(type: "state", listener: (ev: CustomEvent<StateDetail>) => void, options?: boolean | AddEventListenerOptions): void;
    /**
     * @overload
     * @param {'error'} type
     * @param {(ev: CustomEvent<OpenPanelError>) => void} listener
     * @param {boolean|AddEventListenerOptions} [options]
     * @returns {void}
     */
    addEventListener(type: "error", listener: (ev: CustomEvent<OpenPanelError>) => void, options?: boolean | AddEventListenerOptions): void;
    /**
     * @overload
     * @param {string} type
     * @param {EventListenerOrEventListenerObject|null} listener
     * @param {boolean|AddEventListenerOptions} [options]
     * @returns {void}
     */
    addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
    /** @returns {Promise<string>} */
    token(): Promise<string>;
    /** @param {string} key @param {Endpoint} endpoint */
    link(key: string, endpoint: Endpoint): Link;
    /** @param {Link} link */
    adopt(link: Link): void;
    /** @param {Link} link */
    forget(link: Link): void;
    /**
     * Log lines of one container; resumed after a reconnect with no gap and no duplicate.
     * @overload
     * @param {string} containerId
     * @param {LogsOptions|undefined} opts
     * @param {(line: LogLine) => void} onLine
     * @param {ErrorCallback} [onError]
     * @returns {Subscription}
     */
    subscribeLogs(containerId: string, opts: LogsOptions | undefined, onLine: (line: LogLine) => void, onError?: ErrorCallback): Subscription;
    /**
     * @overload
     * @param {string} containerId
     * @param {(line: LogLine) => void} onLine
     * @param {ErrorCallback} [onError]
     * @returns {Subscription}
     */
    subscribeLogs(containerId: string, onLine: (line: LogLine) => void, onError?: ErrorCallback): Subscription;
    /**
     * `stats` messages of one container.
     * @overload
     * @param {string} containerId
     * @param {IntervalOptions|undefined} opts
     * @param {(msg: StatsMessage) => void} onStats
     * @param {ErrorCallback} [onError]
     * @returns {Subscription}
     */
    subscribeStats(containerId: string, opts: IntervalOptions | undefined, onStats: (msg: StatsMessage) => void, onError?: ErrorCallback): Subscription;
    /**
     * @overload
     * @param {string} containerId
     * @param {(msg: StatsMessage) => void} onStats
     * @param {ErrorCallback} [onError]
     * @returns {Subscription}
     */
    subscribeStats(containerId: string, onStats: (msg: StatsMessage) => void, onError?: ErrorCallback): Subscription;
    /**
     * Machine `metrics` messages (of the gateway's machine, or of `host`'s: only a host on
     * the gateway's machine has them). One connection carries one interval: subscribers with
     * different intervals get their own connections.
     * @overload
     * @param {IntervalOptions|undefined} opts
     * @param {(msg: MetricsMessage) => void} onMetrics
     * @param {ErrorCallback} [onError]
     * @returns {Subscription}
     */
    subscribeMetrics(opts: IntervalOptions | undefined, onMetrics: (msg: MetricsMessage) => void, onError?: ErrorCallback): Subscription;
    /**
     * @overload
     * @param {(msg: MetricsMessage) => void} onMetrics
     * @param {ErrorCallback} [onError]
     * @returns {Subscription}
     */
    subscribeMetrics(onMetrics: (msg: MetricsMessage) => void, onError?: ErrorCallback): Subscription;
    /**
     * `docker_event` and `system_log` messages; resumed with `since` after a reconnect.
     * Subscribers without filters or since share one connection; the others get their own.
     * @overload
     * @param {EventsOptions|undefined} opts
     * @param {(msg: EventMessage) => void} onEvent
     * @param {ErrorCallback} [onError]
     * @returns {Subscription}
     */
    subscribeEvents(opts: EventsOptions | undefined, onEvent: (msg: EventMessage) => void, onError?: ErrorCallback): Subscription;
    /**
     * @overload
     * @param {(msg: EventMessage) => void} onEvent
     * @param {ErrorCallback} [onError]
     * @returns {Subscription}
     */
    subscribeEvents(onEvent: (msg: EventMessage) => void, onError?: ErrorCallback): Subscription;
    /**
     * `host_status` messages: a Docker host the token may see changed state (right after
     * the connection authenticates, one for each such host that is not up). They travel on
     * the shared `/ws/logs` connection of subscribeEvents.
     * @param {(msg: HostStatusMessage) => void} onStatus
     * @param {ErrorCallback} [onError]
     * @returns {Subscription}
     */
    subscribeHostStatus(onStatus: (msg: HostStatusMessage) => void, onError?: ErrorCallback): Subscription;
    /**
     * An interactive terminal (one connection each). `command`, `tty: false` and
     * `stdin: false` are the gateway's terminal extensions (like `docker exec` without -t/-i).
     * @param {string} containerId
     * @param {TerminalOptions} [opts]
     * @returns {TerminalHandle}
     */
    openTerminal(containerId: string, opts?: TerminalOptions): TerminalHandle;
    /**
     * `GET /api/hosts`: the Docker hosts the token may see, with their state.
     * @returns {Promise<HostSummary[]>}
     */
    hosts(): Promise<HostSummary[]>;
    /** Close every connection; nothing reconnects afterwards. */
    close(): void;
}
export default OpenPanelClient;
export type Endpoint = import("./pure.js").Endpoint;
export type RateLimit = import("./pure.js").RateLimit;
export type BackoffOptions = import("./pure.js").BackoffOptions;
export type ConnectionState = import("./connection.js").ConnectionState;
/**
 * The former name of ConnectionState.
 */
export type LinkState = ConnectionState;
export type ConnectionAction = import("./connection.js").ConnectionAction;
export type TerminalOptions = import("./terminal.js").TerminalOptions;
export type Consumer = import("./consumers.js").Consumer;
export type ClientOptions = {
    /**
     * base URL (ws://host:port or http(s)://...); default: ws(s):// + location.host
     */
    url?: string;
    /**
     * a JWT
     */
    token?: string;
    /**
     * called before every (re)auth, and before
     * the token's `exp`; wins over `token`
     */
    getToken?: () => (string | Promise<string>);
    /**
     * a WebSocket constructor (Node < 22,
     * tests); default globalThis.WebSocket
     */
    WebSocket?: {
        new (url: string): WebSocket;
    };
    /**
     * ms
     */
    backoff?: BackoffOptions;
    /**
     * the server's limits, if not the defaults
     */
    rateLimits?: Partial<Record<Endpoint, RateLimit>>;
    /**
     * ms without any message before the connection is
     * considered dead; default 2.5 observed heartbeat intervals
     */
    idleTimeout?: number | null;
    /**
     * the Docker host of every container named without one (default:
     * the gateway's default host); each call may name another ({host: 'prod-2'})
     */
    host?: string;
    /**
     * connect to the routes of this Docker host
     * (/hosts/{id}/ws/*) instead of the plain /ws/* endpoints that serve every host
     */
    hostRoute?: string;
};
/**
 * A handle on a subscription.
 */
export type Subscription = {
    unsubscribe: () => void;
    containerId?: string;
    /**
     * the host named (by the call or the client's default)
     */
    host?: string;
};
export type ErrorCallback = (err: OpenPanelError) => void;
export type StateDetail = {
    endpoint: Endpoint;
    state: ConnectionState;
};
export type LogsOptions = {
    tail?: number | "all";
    since?: string | number;
    host?: string;
};
export type IntervalOptions = {
    interval?: number;
    host?: string;
};
export type EventsOptions = {
    filters?: Record<string, string[]>;
    since?: string | number;
    /**
     * also the `host_status` messages
     * of this connection (a Docker host changed state)
     */
    onHostStatus?: (msg: HostStatusMessage) => void;
};
/**
 * One row of `GET /api/hosts`.
 */
export type HostSummary = {
    id: string;
    /**
     * transport and address, without secrets
     */
    engine: string;
    state: "connecting" | "up" | "down" | "disabled" | string;
    /**
     * the last engine error of a host that is down
     */
    error: string | null;
    /**
     * the engine's version
     */
    version: string | null;
    containers: number | null;
    terminals: boolean;
};
export type LogLine = {
    containerId: string;
    timestamp: string;
    stream: "stdout" | "stderr" | string;
    data: string;
    /**
     * the Docker host (sent by a gateway of several hosts)
     */
    host?: string;
};
export type StatsMessage = {
    type: "stats";
    containerId: string;
    host?: string;
    timestamp: string;
    stats: {
        cpu: {
            usage: number;
            percent: number;
        };
        memory: {
            usage: number;
            limit: number;
            percent: number;
        };
        network: {
            rx_bytes: number;
            tx_bytes: number;
        };
    };
};
export type MetricsMessage = {
    type: "metrics";
    timestamp: string;
    system: {
        cpu: {
            usage: number;
            cores: number;
        };
        memory: {
            total: number;
            used: number;
            free: number;
            percent: number;
        };
        disk: {
            total: number;
            used: number;
            free: number;
            percent: number;
        };
        network: {
            rx_bytes: number;
            tx_bytes: number;
        };
    };
};
export type DockerEventMessage = {
    type: "docker_event";
    host?: string;
    timestamp: string;
    event: {
        Type: string;
        Action: string;
        Actor: {
            ID: string;
            Attributes: Record<string, string>;
        };
        [k: string]: unknown;
    };
};
export type SystemLogMessage = {
    type: "system_log";
    /**
     * absent on the lines of the gateway's machine (host log files)
     */
    host?: string;
    timestamp: string;
    level: "debug" | "info" | "warning" | "error";
    message: string;
    source: string;
};
/**
 * A Docker host changed state (`/ws/logs`; right after auth, one per host not up).
 */
export type HostStatusMessage = {
    type: "host_status";
    host: string;
    state: "connecting" | "up" | "down" | "disabled" | string;
    error?: string;
    timestamp: string;
};
export type EventMessage = DockerEventMessage | SystemLogMessage;
import { Link } from './link.js';
import { OpenPanelError } from './errors.js';
import { TerminalHandle } from './terminal.js';
export { EventCursor, LogCursor } from "./cursors.js";
export { CLOSE, errorFromMessage, OpenPanelError, shouldReconnect } from "./errors.js";
export { apiUrl, Backoff, defaultUrl, gatewayUrl, MAX_INPUT_CHARS, mirrorLimit, Outbox, parseTimestampNanos, refreshDelay, rfc3339FromNanos, SERVER_RATE_LIMITS, TokenBucket, tokenExpiry } from "./pure.js";
export { RESUME_TIMEOUT, TerminalHandle } from "./terminal.js";
