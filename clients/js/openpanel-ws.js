// openpanel-ws.js — the official browser/Node client of the OpenPanel WebSocket API 1.3.0.
//
// ES modules with no dependencies and no build step; this file is the one entry point
// (the gateway serves it and the modules beside it under /client/). It works in browsers
// and in Node 20+ (`node --experimental-websocket`, or pass a WebSocket constructor).
// It mirrors the Python client (openpanel_ws.client): full-jitter backoff, 4001 is
// final, re-auth through getToken(), subscriptions restored after a reconnect, logs
// resumed with `since` and deduplicated, heartbeat answers, and a client-side mirror
// of the server's rate limit that coalesces terminal keystrokes. Beyond the Python
// client, events subscriptions are resumed with `since` too (EventCursor). See
// README.md beside this file and docs/protocol.md.
//
// The modules: pure.js (Backoff, TokenBucket, Outbox, time, URL and token helpers),
// cursors.js (LogCursor, EventCursor), errors.js, consumers.js (what a link carries),
// link.js (LinkMachine: the connection's decisions, sans I/O), shell.js (Link: the
// socket and timers), terminal.js (TerminalHandle). The pure parts and the machine are
// exported for tests and for people who write their own transport.

import { EventsConsumer, LogsConsumer, MetricsConsumer, StatsConsumer } from './consumers.js'
import { OpenPanelError } from './errors.js'
import { SERVER_RATE_LIMITS, defaultUrl } from './pure.js'
import { Link } from './shell.js'
import { TerminalHandle } from './terminal.js'

export { EventCursor, LogCursor } from './cursors.js'
export { CLOSE, OpenPanelError, errorFromMessage, shouldReconnect } from './errors.js'
export { LinkMachine } from './link.js'
export {
  Backoff, MAX_INPUT_CHARS, Outbox, SERVER_RATE_LIMITS, TokenBucket, defaultUrl, gatewayUrl,
  mirrorLimit, parseTimestampNanos, refreshDelay, rfc3339FromNanos, tokenExpiry
} from './pure.js'
export { RESUME_TIMEOUT, TerminalHandle } from './terminal.js'

/** @typedef {import('./pure.js').Endpoint} Endpoint */
/** @typedef {import('./pure.js').RateLimit} RateLimit */
/** @typedef {import('./pure.js').BackoffOptions} BackoffOptions */
/** @typedef {import('./link.js').LinkState} LinkState */
/** @typedef {import('./link.js').LinkAction} LinkAction */
/** @typedef {import('./terminal.js').TerminalOptions} TerminalOptions */
/** @typedef {import('./consumers.js').Consumer} Consumer */

export const VERSION = '0.1.0'


/**
 * @typedef {object} ClientOptions
 * @property {string} [url] base URL (ws://host:port or http(s)://...); default: the page's host
 * @property {string} [token] a JWT
 * @property {() => (string|Promise<string>)} [getToken] called before every (re)auth; wins over `token`
 * @property {any} [WebSocket] a WebSocket constructor; default globalThis.WebSocket
 * @property {{base?: number, cap?: number, maxAttempts?: number|null, random?: () => number}} [backoff] ms
 * @property {Partial<Record<Endpoint, {count: number, windowMs: number}>>} [rateLimits] the server's limits, if not the defaults
 * @property {number|null} [idleTimeout] ms without any message before the connection is
 *   considered dead; default 2.5 observed heartbeat intervals
 */

/**
 * A handle on a subscription.
 * @typedef {{unsubscribe: () => void}} Subscription
 */

export class OpenPanelClient extends EventTarget {
  /** @param {ClientOptions} [options] */
  constructor (options = {}) {
    super()
    this.url = options.url || defaultUrl()
    this.tokenValue = options.token
    this.getToken = options.getToken
    this.WebSocket = options.WebSocket || /** @type {any} */ (globalThis).WebSocket
    if (typeof this.WebSocket !== 'function') {
      throw new OpenPanelError('NO_WEBSOCKET',
        'no WebSocket constructor: pass {WebSocket} (Node 20: run with --experimental-websocket)')
    }
    this.backoffOptions = options.backoff || {}
    this.rateLimits = { ...SERVER_RATE_LIMITS, ...(options.rateLimits || {}) }
    this.idleTimeout = options.idleTimeout ?? null
    /** @type {Map<string, Link>} */
    this.links = new Map()
    /** @type {Set<Link>} */
    this.others = new Set()
    this.closed = false
  }

  /** @returns {Promise<string>} */
  async token () {
    if (this.getToken) return String(await this.getToken())
    if (typeof this.tokenValue === 'string') return this.tokenValue
    throw new Error('neither token nor getToken was given')
  }

  /** @param {string} key @param {Endpoint} endpoint */
  link (key, endpoint) {
    if (this.closed) throw new OpenPanelError('CLIENT_CLOSED', 'the client is closed')
    let link = this.links.get(key)
    if (!link || link.closed) {
      link = new Link(this, endpoint)
      link.key = key
      this.links.set(key, link)
    }
    return link
  }

  /** @param {Link} link */
  adopt (link) {
    if (this.closed) throw new OpenPanelError('CLIENT_CLOSED', 'the client is closed')
    this.others.add(link)
  }

  /** @param {Link} link */
  forget (link) {
    if (link.key && this.links.get(link.key) === link) this.links.delete(link.key)
    this.others.delete(link)
  }

  /**
   * Log lines of one container; resumed after a reconnect with no gap and no duplicate.
   * @param {string} containerId
   * @param {{tail?: number|'all', since?: string|number}|((line: LogLine) => void)} opts
   * @param {((line: LogLine) => void)|((err: OpenPanelError) => void)} [onLine]
   * @param {(err: OpenPanelError) => void} [onError]
   * @returns {Subscription}
   */
  subscribeLogs (containerId, opts, onLine, onError) {
    if (typeof opts === 'function') [opts, onLine, onError] = [{}, opts, /** @type {any} */ (onLine)]
    const c = new LogsConsumer(containerId, opts || {}, /** @type {Function} */ (onLine), onError)
    this.link('containers', 'containers').attach(c)
    return handle(c, { containerId })
  }

  /**
   * `stats` messages of one container.
   * @param {string} containerId
   * @param {{interval?: number}|((msg: any) => void)} opts
   * @param {Function} [onStats]
   * @param {(err: OpenPanelError) => void} [onError]
   * @returns {Subscription}
   */
  subscribeStats (containerId, opts, onStats, onError) {
    if (typeof opts === 'function') [opts, onStats, onError] = [{}, opts, /** @type {any} */ (onStats)]
    const c = new StatsConsumer(containerId, opts || {}, /** @type {Function} */ (onStats), onError)
    this.link('containers', 'containers').attach(c)
    return handle(c, { containerId })
  }

  /**
   * Host `metrics` messages. One connection carries one interval: subscribers with
   * different intervals get their own connections.
   * @param {{interval?: number}|((msg: any) => void)} opts
   * @param {Function} [onMetrics]
   * @param {(err: OpenPanelError) => void} [onError]
   * @returns {Subscription}
   */
  subscribeMetrics (opts, onMetrics, onError) {
    if (typeof opts === 'function') [opts, onMetrics, onError] = [{}, opts, /** @type {any} */ (onMetrics)]
    const o = opts || {}
    const c = new MetricsConsumer(o, /** @type {Function} */ (onMetrics), onError)
    this.link(`metrics:${o.interval ?? ''}`, 'metrics').attach(c)
    return handle(c, {})
  }

  /**
   * `docker_event` and `system_log` messages; resumed with `since` after a reconnect.
   * Subscribers without filters or since share one connection; the others get their own.
   * @param {{filters?: Record<string, string[]>, since?: string|number}|((msg: any) => void)} opts
   * @param {Function} [onEvent]
   * @param {(err: OpenPanelError) => void} [onError]
   * @returns {Subscription}
   */
  subscribeEvents (opts, onEvent, onError) {
    if (typeof opts === 'function') [opts, onEvent, onError] = [{}, opts, /** @type {any} */ (onEvent)]
    const o = opts || {}
    const c = new EventsConsumer(o, /** @type {Function} */ (onEvent), onError)
    const shared = !o.filters && (o.since === undefined || o.since === null)
    if (shared) {
      this.link('logs', 'logs').attach(c)
    } else {
      const link = new Link(this, 'logs')
      this.adopt(link)
      link.attach(c)
    }
    return handle(c, {})
  }

  /**
   * An interactive terminal (one connection each). `command`, `tty: false` and
   * `stdin: false` are the gateway's terminal extensions (like `docker exec` without -t/-i).
   * @param {string} containerId
   * @param {TerminalOptions} [opts]
   * @returns {TerminalHandle}
   */
  openTerminal (containerId, opts = {}) {
    return new TerminalHandle(this, containerId, opts || {})
  }

  /** Close every connection; nothing reconnects afterwards. */
  close () {
    this.closed = true
    for (const link of [...this.links.values(), ...this.others]) link.close()
    this.links.clear()
    this.others.clear()
  }
}

/** @param {Consumer} consumer @param {object} extra @returns {Subscription} */
function handle (consumer, extra) {
  return Object.assign({ unsubscribe: () => consumer.unsubscribe() }, extra)
}

/** @typedef {{containerId: string, timestamp: string, stream: string, data: string}} LogLine */

export default OpenPanelClient
