// openpanel-ws.js — the official browser/Node client of the OpenPanel WebSocket API 1.3.0.
//
// ES modules with no dependencies and no build step; this file is the one entry point
// (the gateway serves it and the modules beside it under /client/). It works in browsers
// and in Node 20+ (`node --experimental-websocket`, or pass a WebSocket constructor).
// It mirrors the Python client (openpanel_ws.client): full-jitter backoff, 4001 is
// final, re-auth through getToken(), subscriptions restored after a reconnect, logs
// resumed with `since` and deduplicated, heartbeat answers, and a client-side mirror
// of the server's rate limit that coalesces terminal keystrokes. Beyond the Python
// client: an events subscription takes a `since` and is resumed with one after a
// reconnect, replays dropped (EventCursor); the Python client's events restart live.
// See README.md beside this file and docs/protocol.md "JavaScript client".
//
// The modules: pure.js (Backoff, TokenBucket, Outbox, time, URL and token helpers),
// cursors.js (LogCursor, EventCursor), errors.js, consumers.js (what a link carries),
// connection.js (ClientConnection: the connection's decisions, sans I/O), link.js (Link:
// the socket and timers), terminal.js (TerminalHandle). The pure parts and the connection are
// exported for tests and for people who write their own transport.

import { EventsConsumer, HostStatusConsumer, LogsConsumer, MetricsConsumer, StatsConsumer } from './consumers.js'
import { OpenPanelError } from './errors.js'
import { Link } from './link.js'
import { apiUrl, defaultUrl, SERVER_RATE_LIMITS } from './pure.js'
import { TerminalHandle } from './terminal.js'

export { ClientConnection } from './connection.js'
export { Target } from './consumers.js'
export { EventCursor, LogCursor } from './cursors.js'
export { CLOSE, errorFromMessage, OpenPanelError, shouldReconnect } from './errors.js'
export {
  apiUrl,
  Backoff,
  defaultUrl,
  gatewayUrl,
  MAX_INPUT_CHARS,
  mirrorLimit,
  Outbox,
  parseTimestampNanos,
  refreshDelay,
  rfc3339FromNanos,
  SERVER_RATE_LIMITS,
  TokenBucket,
  tokenExpiry
} from './pure.js'
export { RESUME_TIMEOUT, TerminalHandle } from './terminal.js'

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

export const VERSION = '0.1.0'

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
  constructor(options = {}) {
    super()
    /** @type {string} */
    this.url = options.url || defaultUrl()
    this.tokenValue = options.token
    this.getToken = options.getToken
    /** @type {{new (url: string): WebSocket}} */
    this.WebSocket = options.WebSocket || /** @type {any} */ (globalThis).WebSocket
    if (typeof this.WebSocket !== 'function') {
      throw new OpenPanelError(
        'NO_WEBSOCKET',
        'no WebSocket constructor: pass {WebSocket} (Node 20: run with --experimental-websocket)'
      )
    }
    /** @type {BackoffOptions} */
    this.backoffOptions = options.backoff || {}
    /** @type {Record<Endpoint, RateLimit>} */
    this.rateLimits = { ...SERVER_RATE_LIMITS, ...(options.rateLimits || {}) }
    /** @type {number|null} */
    this.idleTimeout = options.idleTimeout ?? null
    /** @type {string|undefined} */
    this.host = options.host
    /** @type {string|null} */
    this.hostRoute = options.hostRoute ?? null
    /** @type {Map<string, Link>} */
    this.links = new Map()
    /** @type {Set<Link>} */
    this.others = new Set()
    this.closed = false
  }

  /**
   * @overload
   * @param {'state'} type
   * @param {(ev: CustomEvent<StateDetail>) => void} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {'error'} type
   * @param {(ev: CustomEvent<OpenPanelError>) => void} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {string} type
   * @param {EventListenerOrEventListenerObject|null} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /** @param {string} type @param {any} listener @param {boolean|AddEventListenerOptions} [options] */
  addEventListener(type, listener, options) {
    super.addEventListener(type, listener, options)
  }

  /** @returns {Promise<string>} */
  async token() {
    if (this.getToken) return String(await this.getToken())
    if (typeof this.tokenValue === 'string') return this.tokenValue
    throw new Error('neither token nor getToken was given')
  }

  /** @param {string} key @param {Endpoint} endpoint */
  link(key, endpoint) {
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
  adopt(link) {
    if (this.closed) throw new OpenPanelError('CLIENT_CLOSED', 'the client is closed')
    this.others.add(link)
  }

  /** @param {Link} link */
  forget(link) {
    if (link.key && this.links.get(link.key) === link) this.links.delete(link.key)
    this.others.delete(link)
  }

  /**
   * Log lines of one container; resumed after a reconnect with no gap and no duplicate.
   * @overload
   * @param {string} containerId
   * @param {LogsOptions|undefined} opts
   * @param {(line: LogLine) => void} onLine
   * @param {ErrorCallback} [onError]
   * @returns {Subscription}
   */
  /**
   * @overload
   * @param {string} containerId
   * @param {(line: LogLine) => void} onLine
   * @param {ErrorCallback} [onError]
   * @returns {Subscription}
   */
  /** @param {string} containerId @param {any} opts @param {any} [onLine] @param {any} [onError] @returns {Subscription} */
  subscribeLogs(containerId, opts, onLine, onError) {
    if (typeof opts === 'function') [opts, onLine, onError] = [{}, opts, onLine]
    const o = { ...(opts || {}), host: opts?.host ?? this.host }
    const c = new LogsConsumer(containerId, o, onLine, onError)
    this.link('containers', 'containers').attach(c)
    return handle(c, { containerId, host: o.host })
  }

  /**
   * `stats` messages of one container.
   * @overload
   * @param {string} containerId
   * @param {IntervalOptions|undefined} opts
   * @param {(msg: StatsMessage) => void} onStats
   * @param {ErrorCallback} [onError]
   * @returns {Subscription}
   */
  /**
   * @overload
   * @param {string} containerId
   * @param {(msg: StatsMessage) => void} onStats
   * @param {ErrorCallback} [onError]
   * @returns {Subscription}
   */
  /** @param {string} containerId @param {any} opts @param {any} [onStats] @param {any} [onError] @returns {Subscription} */
  subscribeStats(containerId, opts, onStats, onError) {
    if (typeof opts === 'function') [opts, onStats, onError] = [{}, opts, onStats]
    const o = { ...(opts || {}), host: opts?.host ?? this.host }
    const c = new StatsConsumer(containerId, o, onStats, onError)
    this.link('containers', 'containers').attach(c)
    return handle(c, { containerId, host: o.host })
  }

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
  /**
   * @overload
   * @param {(msg: MetricsMessage) => void} onMetrics
   * @param {ErrorCallback} [onError]
   * @returns {Subscription}
   */
  /** @param {any} opts @param {any} [onMetrics] @param {any} [onError] @returns {Subscription} */
  subscribeMetrics(opts, onMetrics, onError) {
    if (typeof opts === 'function') [opts, onMetrics, onError] = [{}, opts, onMetrics]
    const o = { ...(opts || {}), host: opts?.host ?? this.host }
    const c = new MetricsConsumer(o, onMetrics, onError)
    this.link(`metrics:${o.interval ?? ''}:${o.host ?? ''}`, 'metrics').attach(c)
    return handle(c, {})
  }

  /**
   * `docker_event` and `system_log` messages; resumed with `since` after a reconnect.
   * Subscribers without filters or since share one connection; the others get their own.
   * @overload
   * @param {EventsOptions|undefined} opts
   * @param {(msg: EventMessage) => void} onEvent
   * @param {ErrorCallback} [onError]
   * @returns {Subscription}
   */
  /**
   * @overload
   * @param {(msg: EventMessage) => void} onEvent
   * @param {ErrorCallback} [onError]
   * @returns {Subscription}
   */
  /** @param {any} opts @param {any} [onEvent] @param {any} [onError] @returns {Subscription} */
  subscribeEvents(opts, onEvent, onError) {
    if (typeof opts === 'function') [opts, onEvent, onError] = [{}, opts, onEvent]
    const o = opts || {}
    const c = new EventsConsumer(o, onEvent, onError)
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
   * `host_status` messages: a Docker host the token may see changed state (right after
   * the connection authenticates, one for each such host that is not up). They travel on
   * the shared `/ws/logs` connection of subscribeEvents.
   * @param {(msg: HostStatusMessage) => void} onStatus
   * @param {ErrorCallback} [onError]
   * @returns {Subscription}
   */
  subscribeHostStatus(onStatus, onError) {
    const c = new HostStatusConsumer(onStatus, onError)
    this.link('logs', 'logs').attach(c)
    return handle(c, {})
  }

  /**
   * An interactive terminal (one connection each). `command`, `tty: false` and
   * `stdin: false` are the gateway's terminal extensions (like `docker exec` without -t/-i).
   * @param {string} containerId
   * @param {TerminalOptions} [opts]
   * @returns {TerminalHandle}
   */
  openTerminal(containerId, opts = {}) {
    return new TerminalHandle(this, containerId, opts || {})
  }

  /**
   * `GET /api/hosts`: the Docker hosts the token may see, with their state.
   * @returns {Promise<HostSummary[]>}
   */
  async hosts() {
    const url = apiUrl(this.url, '/api/hosts')
    const resp = await fetch(url, { headers: { Authorization: `Bearer ${await this.token()}` } })
    if (resp.status === 401) throw new OpenPanelError('AUTH_FAILED', 'Invalid token')
    if (!resp.ok) throw new OpenPanelError('SERVER_ERROR', `GET ${url}: HTTP ${resp.status}`)
    const body = await resp.json()
    return Array.isArray(body) ? body : []
  }

  /** Close every connection; nothing reconnects afterwards. */
  close() {
    this.closed = true
    for (const link of [...this.links.values(), ...this.others]) link.close()
    this.links.clear()
    this.others.clear()
  }
}

/** @param {Consumer} consumer @param {object} extra @returns {Subscription} */
function handle(consumer, extra) {
  return Object.assign({ unsubscribe: () => consumer.unsubscribe() }, extra)
}

export default OpenPanelClient
