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
export class LogsConsumer extends Consumer {
    /** @param {string} containerId @param {{tail?: number|'all', since?: string|number}} opts @param {Function} onLine @param {any} onError */
    constructor(containerId: string, opts: {
        tail?: number | "all";
        since?: string | number;
    }, onLine: Function, onError: any);
    containerId: string;
    tail: number | "all";
    since: string | number;
    onLine: Function;
    cursor: LogCursor;
    confirmed: boolean;
    unsubscribeMessages(): {
        type: string;
        containerId: string;
    }[];
}
export class StatsConsumer extends Consumer {
    /** @param {string} containerId @param {{interval?: number}} opts @param {Function} onStats @param {any} onError */
    constructor(containerId: string, opts: {
        interval?: number;
    }, onStats: Function, onError: any);
    containerId: string;
    interval: number;
    onStats: Function;
    confirmed: boolean;
    unsubscribeMessages(): {
        type: string;
        containerId: string;
    }[];
}
export class MetricsConsumer extends Consumer {
    /** @param {{interval?: number}} opts @param {Function} onMetrics @param {any} onError */
    constructor(opts: {
        interval?: number;
    }, onMetrics: Function, onError: any);
    interval: number;
    onMetrics: Function;
    confirmed: boolean;
    unsubscribeMessages(): {
        type: string;
    }[];
}
export class EventsConsumer extends Consumer {
    /** @param {{filters?: object, since?: string|number}} opts @param {Function} onEvent @param {any} onError */
    constructor(opts: {
        filters?: object;
        since?: string | number;
    }, onEvent: Function, onError: any);
    filters: any;
    since: string | number;
    onEvent: Function;
    cursor: EventCursor;
    confirmed: boolean;
}
import { OpenPanelError } from './errors.js';
import { LogCursor } from './cursors.js';
import { EventCursor } from './cursors.js';
