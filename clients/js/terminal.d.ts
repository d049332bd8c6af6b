// Generated from the JSDoc of terminal.js by tools/types.mjs (tsc); do not edit.
/** @typedef {{shell?: string, cols?: number, rows?: number, command?: string[], tty?: boolean, stdin?: boolean, host?: string}} TerminalOptions */
/** How long a terminal tries to reattach after its connection was lost (ms); the
 * gateway keeps a detached session for its grace period (60 s by default). */
export const RESUME_TIMEOUT: 90000;
/**
 * An interactive terminal. Events: 'opened' {sessionId, containerId}, 'output' {data},
 * 'closed' {reason, exitCode}, 'error' OpenPanelError; and, with a gateway that keeps
 * terminal sessions, 'resuming' {closeCode} and 'resumed' {sessionId, lostBytes}.
 *
 * A dropped connection (not a gateway shutdown, 1001) is reconnected and the same
 * session reattached with the `seq` of the last output received, so nothing is lost or
 * repeated; keystrokes and resizes written meanwhile are sent after the resume. When the session did not survive
 * (a gateway without sessions, the grace period over, RESUME_TIMEOUT) the terminal
 * reports 'error' CONNECTION_LOST, then 'closed'.
 */
export class TerminalHandle extends EventTarget {
    /** @param {import('./openpanel-ws.js').OpenPanelClient} client @param {string} containerId @param {TerminalOptions} opts */
    constructor(client: import("./openpanel-ws.js").OpenPanelClient, containerId: string, opts: TerminalOptions);
    /** @type {string} */
    containerId: string;
    /** @type {string|undefined} the Docker host: the one named, else the one terminal_opened names */
    host: string | undefined;
    /** @type {string|undefined} */
    sessionId: string | undefined;
    /** @type {number|undefined|null} */
    exitCode: number | undefined | null;
    /** @type {string|undefined} */
    reason: string | undefined;
    opened: boolean;
    closed: boolean;
    /** @type {any[]} input and resizes written before the terminal opened */
    pending: any[];
    /** @type {number|undefined} `seq` of the last output received (sessions) */
    lastSeq: number | undefined;
    resuming: boolean;
    resumes: number;
    /** True when the program was killed because its container stopped or went away. */
    containerLost: boolean;
    consumer: TerminalConsumer;
    link: Link;
    /**
     * @overload
     * @param {'opened'} type
     * @param {(ev: CustomEvent<{sessionId: string, containerId: string}>) => void} listener
     * @param {boolean|AddEventListenerOptions} [options]
     * @returns {void}
     */
    addEventListener(type: "opened", listener: (ev: CustomEvent<{
        sessionId: string;
        containerId: string;
    }>) => void, options?: boolean | AddEventListenerOptions): void;
    /**
     * @overload
     * @param {'output'} type
     * @param {(ev: CustomEvent<{data: string, stream?: 'stdout'|'stderr'}>) => void} listener
     * @param {boolean|AddEventListenerOptions} [options]
     * @returns {void}
     */
    addEventListener(type: "output", listener: (ev: CustomEvent<{
        data: string;
        stream?: "stdout" | "stderr";
    }>) => void, options?: boolean | AddEventListenerOptions): void;
    /**
     * @overload
     * @param {'closed'} type
     * @param {(ev: CustomEvent<{reason: string, exitCode: number|null|undefined, containerLost?: boolean}>) => void} listener
     * @param {boolean|AddEventListenerOptions} [options]
     * @returns {void}
     */
    addEventListener(type: "closed", listener: (ev: CustomEvent<{
        reason: string;
        exitCode: number | null | undefined;
        containerLost?: boolean;
    }>) => void, options?: boolean | AddEventListenerOptions): void;
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
     * @param {'resuming'} type
     * @param {(ev: CustomEvent<{closeCode?: number}>) => void} listener
     * @param {boolean|AddEventListenerOptions} [options]
     * @returns {void}
     */
    addEventListener(type: "resuming", listener: (ev: CustomEvent<{
        closeCode?: number;
    }>) => void, options?: boolean | AddEventListenerOptions): void;
    /**
     * @overload
     * @param {'resumed'} type
     * @param {(ev: CustomEvent<{sessionId: string, lostBytes: number}>) => void} listener
     * @param {boolean|AddEventListenerOptions} [options]
     * @returns {void}
     */
    addEventListener(type: "resumed", listener: (ev: CustomEvent<{
        sessionId: string;
        lostBytes: number;
    }>) => void, options?: boolean | AddEventListenerOptions): void;
    /**
     * @overload
     * @param {string} type
     * @param {EventListenerOrEventListenerObject|null} listener
     * @param {boolean|AddEventListenerOptions} [options]
     * @returns {void}
     */
    addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
    /** Keystrokes or a paste; coalesced when the rate-limit mirror runs low. @param {string} data */
    write(data: string): void;
    /** @param {number} cols @param {number} rows */
    resize(cols: number, rows: number): void;
    /** End the program's input (extension `eof`; with a TTY it types Ctrl-D). */
    eof(): void;
    /** Ask the server to end the shell (`close_terminal`); 'closed' follows. */
    close(): void;
    /** @param {string} reason @param {number|null|undefined} exitCode */
    finish(reason: string, exitCode: number | null | undefined): void;
}
export class TerminalConsumer extends Consumer {
    /** @param {TerminalHandle} term @param {TerminalOptions} opts */
    constructor(term: TerminalHandle, opts: TerminalOptions);
    term: TerminalHandle;
    opts: TerminalOptions;
    sentOpen: boolean;
    /** @type {any} */
    giveUp: any;
    where(): {
        containerId: string;
        host?: string;
    };
    /** @param {string} why */
    didNotSurvive(why: string): void;
}
export type TerminalOptions = {
    shell?: string;
    cols?: number;
    rows?: number;
    command?: string[];
    tty?: boolean;
    stdin?: boolean;
    host?: string;
};
import { Link } from './link.js';
import { OpenPanelError } from './errors.js';
import { Consumer } from './consumers.js';
