// Generated from the JSDoc of consumers.js by tools/types.mjs (tsc); do not edit.
/**
 * An INVALID_MESSAGE naming a field of a subscribe not yet answered is its refusal (the
 * server's error carries no containerId then): end it rather than wait forever.
 * @param {OpenPanelError} err @param {boolean} confirmed @param {string[]} fields
 */
export function refuses(err: OpenPanelError, confirmed: boolean, fields: string[]): boolean;
/** @param {Function} cb @param {any} value */
export function deliver(cb: Function, value: any): void;
/** What every consumer of a link implements. */
export class Consumer {
    /** @param {((err: OpenPanelError) => void)|undefined} onError */
    constructor(onError: ((err: OpenPanelError) => void) | undefined);
    onError: (err: OpenPanelError) => void;
    ended: boolean;
    /** @type {import('./link.js').Link|null} */
    link: import("./link.js").Link | null;
    /** Messages to (re)send once the connection is authenticated. @returns {object[]} */
    subscribeMessages(): object[];
    /** @returns {object[]} */
    unsubscribeMessages(): object[];
    /** @param {any} _msg @returns {boolean} true when the message was this consumer's alone */
    handle(_msg: any): boolean;
    /** @param {OpenPanelError} _err @returns {boolean} */
    handleError(_err: OpenPanelError): boolean;
    /** The link lost its connection (it reconnects unless told otherwise). @param {OpenPanelError} _err */
    onDisconnect(_err: OpenPanelError): void;
    /** @param {OpenPanelError} err */
    fail(err: OpenPanelError): void;
    /** @param {OpenPanelError} err */
    report(err: OpenPanelError): void;
    unsubscribe(): void;
}
/**
 * A container on a Docker host: what a logs or stats consumer is keyed by, so the same
 * name on two hosts is two subscriptions (docs/protocol.md "Addressing"). Without a
 * host named, the host is learned from the server's first answer about the container
 * and kept, so a resume asks the same host.
 */
export class Target {
    /** @param {string} containerId @param {string|undefined|null} host */
    constructor(containerId: string, host: string | undefined | null);
    containerId: string;
    /** @type {string|undefined} */
    host: string | undefined;
    /** `containerId` (and `host` once known) of a request about this target. */
    fields(): {
        containerId: string;
        host?: string;
    };
    /** The message is about this target (a gateway of one host names none). @param {any} msg */
    owns(msg: any): boolean;
    /** An error about this container on this host (one without `host`: any host). @param {OpenPanelError} err */
    namedBy(err: OpenPanelError): boolean;
}
export class LogsConsumer extends Consumer {
    /** @param {string} containerId @param {{tail?: number|'all', since?: string|number, host?: string}} opts @param {Function} onLine @param {any} onError */
    constructor(containerId: string, opts: {
        tail?: number | "all";
        since?: string | number;
        host?: string;
    }, onLine: Function, onError: any);
    containerId: string;
    target: Target;
    tail: number | "all";
    since: string | number;
    onLine: Function;
    cursor: LogCursor;
    confirmed: boolean;
    unsubscribeMessages(): {
        containerId: string;
        host?: string;
        type: string;
    }[];
}
export class StatsConsumer extends Consumer {
    /** @param {string} containerId @param {{interval?: number, host?: string}} opts @param {Function} onStats @param {any} onError */
    constructor(containerId: string, opts: {
        interval?: number;
        host?: string;
    }, onStats: Function, onError: any);
    containerId: string;
    target: Target;
    interval: number;
    onStats: Function;
    confirmed: boolean;
    unsubscribeMessages(): {
        containerId: string;
        host?: string;
        type: string;
    }[];
}
export class MetricsConsumer extends Consumer {
    /** @param {{interval?: number, host?: string}} opts @param {Function} onMetrics @param {any} onError */
    constructor(opts: {
        interval?: number;
        host?: string;
    }, onMetrics: Function, onError: any);
    interval: number;
    /** the machine of this Docker host (a remote host is refused) */
    host: string;
    onMetrics: Function;
    confirmed: boolean;
    unsubscribeMessages(): {
        type: string;
    }[];
}
export class EventsConsumer extends Consumer {
    /** @param {{filters?: object, since?: string|number, onHostStatus?: Function}} opts @param {Function} onEvent @param {any} onError */
    constructor(opts: {
        filters?: object;
        since?: string | number;
        onHostStatus?: Function;
    }, onEvent: Function, onError: any);
    onHostStatus: Function;
    filters: any;
    since: string | number;
    onEvent: Function;
    cursor: EventCursor;
    confirmed: boolean;
}
/** `host_status` of `/ws/logs`: a Docker host changed state (docs/protocol.md "The `host` field"). */
export class HostStatusConsumer extends Consumer {
    /** @param {Function} onStatus @param {any} onError */
    constructor(onStatus: Function, onError: any);
    onStatus: Function;
}
import { OpenPanelError } from './errors.js';
import { LogCursor } from './cursors.js';
import { EventCursor } from './cursors.js';
