// Generated from the JSDoc of link.js by tools/types.mjs (tsc); do not edit.
/** @typedef {import('./pure.js').Endpoint} Endpoint */
/** @typedef {import('./connection.js').ConnectionAction} ConnectionAction */
/** @typedef {import('./connection.js').ConnectionState} ConnectionState */
/** @typedef {import('./connection.js').TimerName} TimerName */
/** @typedef {import('./consumers.js').Consumer} Consumer */
/**
 * What a link needs of its client (OpenPanelClient implements it).
 * @typedef {object} LinkOwner
 * @property {string} url
 * @property {string|null} [hostRoute] connect to /hosts/{id}/ws/* instead of /ws/*
 * @property {any} WebSocket a WebSocket constructor
 * @property {() => Promise<string>} token
 * @property {(() => (string|Promise<string>))|undefined} getToken
 * @property {import('./pure.js').BackoffOptions} backoffOptions
 * @property {Record<string, import('./pure.js').RateLimit>} rateLimits
 * @property {number|null} idleTimeout
 * @property {(link: Link) => void} forget
 * @property {(event: Event) => boolean} dispatchEvent
 */
/**
 * One WebSocket to one endpoint that reconnects by itself: backoff, re-auth,
 * subscriptions restored, heartbeat answered, outgoing frames paced by the mirror of
 * the server's rate limit. The decisions are the ClientConnection's; this is the I/O.
 */
export class Link {
    /** @param {LinkOwner} client @param {Endpoint} endpoint @param {{reconnect?: boolean}} [opts] */
    constructor(client: LinkOwner, endpoint: Endpoint, { reconnect }?: {
        reconnect?: boolean;
    });
    client: LinkOwner;
    endpoint: import("./pure.js").Endpoint;
    connection: ClientConnection;
    /** @type {WebSocket|null} the latest socket */
    ws: WebSocket | null;
    /** @type {Map<TimerName, ReturnType<typeof setTimeout>>} */
    timers: Map<TimerName, ReturnType<typeof setTimeout>>;
    /** @type {string|undefined} the client's key for a shared link */
    key: string | undefined;
    get url(): string;
    /** @returns {Consumer[]} */
    get consumers(): Consumer[];
    get closed(): boolean;
    get authenticated(): boolean;
    get state(): import("./connection.js").ConnectionState;
    get userId(): string;
    /** @param {Consumer} consumer */
    attach(consumer: Consumer): void;
    /** @param {Consumer} consumer @param {boolean} sendUnsubscribe */
    detach(consumer: Consumer, sendUnsubscribe: boolean): void;
    /** Queue a message (or `{input}`); false when there is no connection. @param {any} item */
    send(item: any): boolean;
    close(): void;
    /** Carries out the connection's actions, in order. @param {ConnectionAction[]} actions */
    apply(actions: ConnectionAction[]): void;
    /** @param {number} generation @param {string} url */
    openSocket(generation: number, url: string): void;
    /** @param {TimerName} timer @param {number} delay */
    setTimer(timer: TimerName, delay: number): void;
    /** @param {number} generation */
    fetchToken(generation: number): void;
    /** @param {Consumer[]} consumers @param {{err: import('./errors.js').OpenPanelError}} action */
    failConsumers(consumers: Consumer[], { err }: {
        err: import("./errors.js").OpenPanelError;
    }): void;
}
export type Endpoint = import("./pure.js").Endpoint;
export type ConnectionAction = import("./connection.js").ConnectionAction;
export type ConnectionState = import("./connection.js").ConnectionState;
export type TimerName = import("./connection.js").TimerName;
export type Consumer = import("./consumers.js").Consumer;
/**
 * What a link needs of its client (OpenPanelClient implements it).
 */
export type LinkOwner = {
    url: string;
    /**
     * connect to /hosts/{id}/ws/* instead of /ws/*
     */
    hostRoute?: string | null;
    /**
     * a WebSocket constructor
     */
    WebSocket: any;
    token: () => Promise<string>;
    getToken: (() => (string | Promise<string>)) | undefined;
    backoffOptions: import("./pure.js").BackoffOptions;
    rateLimits: Record<string, import("./pure.js").RateLimit>;
    idleTimeout: number | null;
    forget: (link: Link) => void;
    dispatchEvent: (event: Event) => boolean;
};
import { ClientConnection } from './connection.js';
