// openpanel-ws.js — the official browser/Node client of the OpenPanel WebSocket API 1.3.0.
//
// An ES module with no dependencies and no build step. It works in browsers and in
// Node 20+ (`node --experimental-websocket`, or pass a WebSocket constructor).
// It mirrors the Python client (openpanel_ws.client): full-jitter backoff, 4001 is
// final, re-auth through getToken(), subscriptions restored after a reconnect, logs
// resumed with `since` and deduplicated, events resumed with `since`, heartbeat
// answers, and a client-side mirror of the server's rate limit that coalesces
// terminal keystrokes. See README.md beside this file and docs/protocol.md.
//
// The pure parts (Backoff, TokenBucket, Outbox, LogCursor, EventCursor, time helpers)
// are exported for tests and for people who write their own transport.

export const VERSION = '0.1.0'

/** @typedef {'containers'|'logs'|'metrics'|'terminal'} Endpoint */
/** @typedef {'connecting'|'authenticated'|'reconnecting'|'closed'} LinkState */
/** @typedef {{shell?: string, cols?: number, rows?: number, command?: string[], tty?: boolean, stdin?: boolean}} TerminalOptions */

// --- errors ----------------------------------------------------------------------

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
   * @param {{containerId?: string, closeCode?: number, raw?: object}} [extra]
   */
  constructor (code, message, extra = {}) {
    super(message)
    this.name = 'OpenPanelError'
    /** @type {string} */
    this.code = code
    /** @type {string|undefined} */
    this.containerId = extra.containerId
    /** @type {number|undefined} */
    this.closeCode = extra.closeCode
    /** @type {object|undefined} */
    this.raw = extra.raw
  }
}

/**
 * An `error` message of the protocol as an OpenPanelError. The specification's
 * code-less `{"type":"error","message":"Invalid token"}` is AUTH_FAILED.
 * @param {any} msg
 * @returns {OpenPanelError}
 */
export function errorFromMessage (msg) {
  let code = typeof msg.code === 'string' && msg.code ? msg.code : ''
  const text = typeof msg.message === 'string' && msg.message ? msg.message : (code || 'error')
  if (!code) code = text === 'Invalid token' ? 'AUTH_FAILED' : 'SERVER_ERROR'
  const containerId = typeof msg.containerId === 'string' ? msg.containerId : undefined
  return new OpenPanelError(code, text, { containerId, raw: msg })
}

// --- close codes and backoff -----------------------------------------------------

export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  TRY_AGAIN_LATER: 1013,
  AUTH_FAILED: 4001,
  HEARTBEAT_TIMEOUT: 4002
})

// Closes after which reconnecting cannot help: a bad token, a policy refusal
// (flooding), a message of ours the server cannot take. Everything else (1001
// shutdown, 1006 lost, 1013 slow consumer, 4002 heartbeat, 1011, ...) is transient.
/** @type {Set<number>} */
const FINAL_CLOSE_CODES = new Set([CLOSE.AUTH_FAILED, CLOSE.POLICY_VIOLATION, CLOSE.MESSAGE_TOO_BIG])

/** @param {number|undefined|null} code */
export function shouldReconnect (code) {
  return code == null || !FINAL_CLOSE_CODES.has(code)
}

/**
 * Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n)).
 * Milliseconds. `maxAttempts` null (default) retries forever.
 */
export class Backoff {
  /** @param {{base?: number, cap?: number, maxAttempts?: number|null, random?: () => number}} [opts] */
  constructor ({ base = 1000, cap = 30000, maxAttempts = null, random = Math.random } = {}) {
    this.base = base
    this.cap = cap
    this.maxAttempts = maxAttempts
    this.random = random
    this.attempts = 0
  }

  /** @returns {number|null} milliseconds before the next attempt; null when exhausted */
  nextDelay () {
    if (this.maxAttempts != null && this.attempts >= this.maxAttempts) return null
    const ceiling = Math.min(this.cap, this.base * 2 ** Math.min(this.attempts, 52))
    this.attempts += 1
    return this.random() * ceiling
  }

  /** After an authenticated connection: start over from `base`. */
  reset () { this.attempts = 0 }
}

// --- rate-limit mirror -----------------------------------------------------------

/**
 * The specification's per-gateway limits (the server's defaults).
 * @type {Record<Endpoint, {count: number, windowMs: number}>}
 */
export const SERVER_RATE_LIMITS = Object.freeze({
  containers: { count: 10, windowMs: 1000 },
  terminal: { count: 10, windowMs: 1000 },
  logs: { count: 100, windowMs: 60000 },
  metrics: { count: 100, windowMs: 60000 }
})

/** A token bucket: `count` tokens, refilled at count/windowMs; times in ms. */
export class TokenBucket {
  /** @param {{count: number, windowMs: number}} limit @param {number} now */
  constructor (limit, now) {
    this.capacity = limit.count
    this.ratePerMs = limit.count / limit.windowMs
    this.tokens = limit.count
    this.stamp = now
  }

  /** @param {number} now */
  refill (now) {
    if (now > this.stamp) {
      this.tokens = Math.min(this.capacity, this.tokens + (now - this.stamp) * this.ratePerMs)
      this.stamp = now
    }
  }

  /** @param {number} now @returns {boolean} */
  tryTake (now) {
    this.refill(now)
    if (this.tokens >= 1) {
      this.tokens -= 1
      return true
    }
    return false
  }
}

/**
 * A slightly stricter copy of the server's limit: network jitter can bunch frames that
 * left evenly spaced, so keep one token spare and refill a bit slower.
 * @param {{count: number, windowMs: number}} limit
 */
export function mirrorLimit (limit, margin = 0.8) {
  const count = Math.max(1, limit.count - 1)
  const rate = limit.count / limit.windowMs
  return { count, windowMs: count / (rate * margin) }
}

/** Raw characters per merged `input` (JSON escaping can grow control characters 6x;
 * the server's default frame limit is 64 KiB). */
export const MAX_INPUT_CHARS = 8192

/**
 * Frames waiting for a token of the client-side bucket, in order. While tokens are
 * plentiful every frame leaves at once (keystrokes are not delayed); when the bucket
 * runs dry, consecutive terminal inputs queued meanwhile are merged into one `input`:
 * a held key or a paste is coalesced, never dropped or rejected.
 */
export class Outbox {
  /** @param {{count: number, windowMs: number}} limit @param {number} now */
  constructor (limit, now) {
    this.limit = mirrorLimit(limit)
    this.bucket = new TokenBucket(this.limit, now)
    /** @type {Array<object|{input: string}>} */
    this.queue = []
    /** @type {object[]} frames the server never counts (heartbeat pong): no token, first */
    this.free = []
  }

  get length () { return this.queue.length + this.free.length }

  /** @param {object} message */
  pushFree (message) { this.free.push(message) }

  /** A protocol message, or `{input: 'keys'}` for terminal keystrokes. @param {any} item */
  push (item) {
    if (item && typeof item.input === 'string' && !('type' in item)) {
      if (!item.input) return
      for (let i = 0; i < item.input.length; i += MAX_INPUT_CHARS) {
        this.queue.push({ input: item.input.slice(i, i + MAX_INPUT_CHARS) })
      }
      return
    }
    this.queue.push(item)
  }

  /**
   * @param {number} now
   * @returns {[object|null, number]} [message to send now, 0] or [null, ms to wait; Infinity when empty]
   */
  pop (now) {
    if (this.free.length) return [/** @type {object} */ (this.free.shift()), 0]
    if (!this.queue.length) return [null, Infinity]
    if (!this.bucket.tryTake(now)) {
      return [null, Math.max(1, (1 - this.bucket.tokens) / this.bucket.ratePerMs)]
    }
    const head = /** @type {any} */ (this.queue.shift())
    if (!(typeof head.input === 'string' && !('type' in head))) return [head, 0]
    let data = head.input
    while (this.queue.length) {
      const next = /** @type {any} */ (this.queue[0])
      if (!(typeof next.input === 'string' && !('type' in next))) break
      if (data.length + next.input.length > MAX_INPUT_CHARS) break
      this.queue.shift()
      data += next.input
    }
    return [{ type: 'input', data }, 0]
  }

  clear () {
    this.queue.length = 0
    this.free.length = 0
  }
}

// --- time -----------------------------------------------------------------------

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$/

/**
 * Nanoseconds since the epoch of an RFC 3339 timestamp, exactly (BigInt); null if
 * the text is not one. Engine timestamps carry nanoseconds, which a Number cannot.
 * @param {string} text
 * @returns {bigint|null}
 */
export function parseTimestampNanos (text) {
  if (typeof text !== 'string') return null
  const m = RFC3339.exec(text.trim())
  if (!m) return null
  const date = new Date(0)
  date.setUTCFullYear(+m[1], +m[2] - 1, +m[3])
  date.setUTCHours(+m[4], +m[5], +m[6], 0)
  let seconds = date.getTime() / 1000
  if (Number.isNaN(seconds)) return null
  if (m[9]) seconds -= (m[9] === '-' ? -1 : 1) * (+m[10] * 3600 + +m[11] * 60)
  const frac = BigInt(((m[7] || '') + '000000000').slice(0, 9))
  return BigInt(seconds) * 1000000000n + frac
}

/** RFC 3339 UTC keeping nanosecond precision. @param {bigint} nanos */
export function rfc3339FromNanos (nanos) {
  const seconds = nanos / 1000000000n
  const rest = nanos % 1000000000n
  const iso = new Date(Number(seconds) * 1000).toISOString().slice(0, 19)
  return `${iso}.${rest.toString().padStart(9, '0')}Z`
}

// --- resume cursors ----------------------------------------------------------------

/**
 * Where a logs subscription stands, so a resumed one shows no gap and no duplicate.
 * The engine's `since` is inclusive and may be rounded, so a resume asks for a little
 * before the last line seen and drops what was already shown: every line older than
 * the last timestamp, and at that very timestamp the lines already delivered
 * (counted: two identical lines may share a timestamp).
 */
export class LogCursor {
  static RESUME_OVERLAP_NS = 1000000000n

  constructor () {
    /** @type {bigint|null} */
    this.lastNs = null
    /** @type {Map<string, number>} */
    this.atLast = new Map()
    /** @type {Map<string, number>} */
    this.replay = new Map()
    this.dropped = 0
  }

  /** True when the line is new and should be shown. @param {string} timestamp @param {string} stream @param {string} data */
  accept (timestamp, stream, data) {
    const ns = parseTimestampNanos(timestamp)
    if (ns === null) return true // no usable time: cannot be a replay we asked for
    const key = stream + '\u0000' + data
    if (this.lastNs !== null) {
      if (ns < this.lastNs) {
        this.dropped += 1
        return false
      }
      const pending = this.replay.get(key) || 0
      if (ns === this.lastNs && pending > 0) {
        this.replay.set(key, pending - 1)
        this.dropped += 1
        return false
      }
    }
    if (ns !== this.lastNs) {
      this.lastNs = ns
      this.atLast.clear()
      this.replay.clear()
    }
    this.atLast.set(key, (this.atLast.get(key) || 0) + 1)
    return true
  }

  /** Fields of `subscribe_logs` for a resumed subscription ({} before any line). */
  resume () {
    if (this.lastNs === null) return {}
    this.replay = new Map(this.atLast)
    let since = this.lastNs - LogCursor.RESUME_OVERLAP_NS
    if (since < 0n) since = 0n
    // tail "all": everything since then, not only the last 100 lines of it.
    return { since: rfc3339FromNanos(since), tail: 'all' }
  }
}

/**
 * Where an events subscription stands. A resume asks the server for the events since a
 * little before the newest one seen (the engine may deliver concurrent events slightly
 * out of time order) and drops those already delivered, by identity.
 */
export class EventCursor {
  static RESUME_MARGIN_NS = 2000000000n
  static MEMORY_NS = 10000000000n

  constructor () {
    /** @type {bigint|null} */
    this.newestNs = null
    /** @type {Map<string, bigint>} identity -> time, for the last MEMORY_NS */
    this.seen = new Map()
    this.dropped = 0
  }

  /** @param {any} msg a `docker_event` or `system_log` message */
  static key (msg) {
    if (msg.type === 'docker_event') {
      const e = msg.event || {}
      return ['e', e.timeNano ?? e.time ?? msg.timestamp, e.Type, e.Action, e.Actor && e.Actor.ID, e.id].join('\u0000')
    }
    return ['s', msg.timestamp, msg.source, msg.level, msg.message].join('\u0000')
  }

  /** True when the message is new. @param {any} msg */
  accept (msg) {
    const ns = parseTimestampNanos(msg.timestamp)
    if (ns === null) return true
    const key = EventCursor.key(msg)
    if (this.seen.has(key)) {
      this.dropped += 1
      return false
    }
    this.seen.set(key, ns)
    if (this.newestNs === null || ns > this.newestNs) {
      this.newestNs = ns
      const horizon = ns - EventCursor.MEMORY_NS
      for (const [k, t] of this.seen) if (t < horizon) this.seen.delete(k)
    }
    return true
  }

  /** `since` for a resumed `subscribe` (undefined before any event). */
  resumeSince () {
    if (this.newestNs === null) return undefined
    const since = this.newestNs - EventCursor.RESUME_MARGIN_NS
    return rfc3339FromNanos(since < 0n ? 0n : since)
  }
}

// --- urls and tokens --------------------------------------------------------------

const ENDPOINTS = ['containers', 'logs', 'metrics', 'terminal']

/**
 * ws://host:port[/ws/x] or http(s)://... -> ws(s)://host:port/ws/<endpoint>.
 * @param {string} base @param {Endpoint} endpoint
 */
export function gatewayUrl (base, endpoint) {
  let url = String(base).trim().replace(/\/+$/, '')
  if (url.startsWith('http://')) url = 'ws://' + url.slice(7)
  else if (url.startsWith('https://')) url = 'wss://' + url.slice(8)
  else if (!url.includes('://')) url = 'ws://' + url
  for (const name of ENDPOINTS) {
    if (url.endsWith('/ws/' + name)) url = url.slice(0, -('/ws/' + name).length)
  }
  return `${url}/ws/${endpoint}`
}

/** The page's own gateway: ws(s)://location.host. */
export function defaultUrl () {
  const loc = /** @type {any} */ (globalThis).location
  if (!loc || !loc.host) return 'ws://127.0.0.1:3001'
  return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host
}

/**
 * The `exp` claim (unix seconds) of a JWT, without verifying it; null if none.
 * @param {string} token
 */
export function tokenExpiry (token) {
  try {
    const part = String(token).split('.')[1]
    if (!part) return null
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4)
    const json = typeof atob === 'function'
      ? atob(b64)
      : /** @type {any} */ (globalThis).Buffer.from(b64, 'base64').toString('binary')
    const claims = JSON.parse(json)
    return typeof claims.exp === 'number' ? claims.exp : null
  } catch {
    return null
  }
}

/**
 * When to re-authenticate a connection whose token expires at `exp` (unix s): 30 s
 * before it, or at 80 % of what is left for a token with under 150 s to live; never
 * in less than 1 s.
 * @param {number} exp @param {number} nowMs
 * @returns {number} ms from now
 */
export function refreshDelay (exp, nowMs) {
  const left = exp * 1000 - nowMs
  return Math.max(1000, left > 150000 ? left - 30000 : left * 0.8)
}

/** @param {string} type @param {any} detail */
function makeEvent (type, detail) {
  const CE = /** @type {any} */ (globalThis).CustomEvent
  if (typeof CE === 'function') return new CE(type, { detail })
  const ev = /** @type {any} */ (new Event(type))
  ev.detail = detail
  return ev
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now())

// --- consumers of a link ----------------------------------------------------------

/** What every consumer of a link implements. */
class Consumer {
  /** @param {((err: OpenPanelError) => void)|undefined} onError */
  constructor (onError) {
    this.onError = onError
    this.ended = false
    /** @type {Link|null} */
    this.link = null
  }

  /** Messages to (re)send once the connection is authenticated. @returns {object[]} */
  subscribeMessages () { return [] }
  /** @returns {object[]} */
  unsubscribeMessages () { return [] }
  /** @param {any} _msg @returns {boolean} true when the message was this consumer's alone */
  handle (_msg) { return false }
  /** @param {OpenPanelError} _err @returns {boolean} */
  handleError (_err) { return false }
  /** The link lost its connection (it reconnects unless told otherwise). @param {OpenPanelError} _err */
  onDisconnect (_err) {}

  /** @param {OpenPanelError} err */
  fail (err) {
    if (this.ended) return
    this.ended = true
    if (this.link) this.link.detach(this, false)
    this.report(err)
  }

  /** @param {OpenPanelError} err */
  report (err) {
    if (this.onError) {
      try { this.onError(err) } catch (e) { console.error(e) }
    } else if (this.link) {
      this.link.client.dispatchEvent(makeEvent('error', err))
    }
  }

  unsubscribe () {
    if (this.ended) return
    this.ended = true
    if (this.link) this.link.detach(this, true)
  }
}

/**
 * An INVALID_MESSAGE naming a field of a subscribe not yet answered is its refusal (the
 * server's error carries no containerId then): end it rather than wait forever.
 * @param {OpenPanelError} err @param {boolean} confirmed @param {string[]} fields
 */
function refuses (err, confirmed, fields) {
  return !confirmed && err.code === 'INVALID_MESSAGE' && fields.includes(/** @type {any} */ (err.raw)?.field)
}

/** @param {Function} cb @param {any} value */
function deliver (cb, value) {
  try { cb(value) } catch (e) { console.error(e) }
}

class LogsConsumer extends Consumer {
  /** @param {string} containerId @param {{tail?: number|'all', since?: string|number}} opts @param {Function} onLine @param {any} onError */
  constructor (containerId, opts, onLine, onError) {
    super(onError)
    this.containerId = containerId
    this.tail = opts.tail
    this.since = opts.since
    this.onLine = onLine
    this.cursor = new LogCursor()
    this.confirmed = false // the server answered our subscribe (ack or a line)
  }

  subscribeMessages () {
    /** @type {any} */
    const msg = { type: 'subscribe_logs', containerId: this.containerId }
    if (this.tail !== undefined && this.tail !== null) msg.tail = this.tail
    if (this.since !== undefined && this.since !== null) msg.since = this.since
    Object.assign(msg, this.cursor.resume())
    return [msg]
  }

  unsubscribeMessages () { return [{ type: 'unsubscribe_logs', containerId: this.containerId }] }

  /** @param {any} msg */
  handle (msg) {
    if (msg.containerId !== this.containerId) return false
    if (msg.type === 'log' || msg.type === 'subscribed_logs') this.confirmed = true
    if (msg.type === 'log') {
      if (this.cursor.accept(msg.timestamp, msg.stream, msg.data)) {
        deliver(this.onLine, { containerId: msg.containerId, timestamp: msg.timestamp, stream: msg.stream, data: msg.data })
      }
      return false // another consumer of the same container may want it too
    }
    if (msg.type === 'subscription_ended' && (msg.subscription || 'logs') === 'logs') {
      this.fail(new OpenPanelError('SUBSCRIPTION_ENDED', msg.message || msg.reason || 'subscription ended',
        { containerId: this.containerId, raw: msg }))
      return false
    }
    return msg.type === 'subscribed_logs' || msg.type === 'unsubscribed_logs'
  }

  /** @param {OpenPanelError} err */
  handleError (err) {
    if (refuses(err, this.confirmed, ['tail', 'since'])) {
      this.fail(err)
      return true
    }
    if (err.containerId !== this.containerId) return false
    if (err.code === 'DOCKER_UNAVAILABLE' || err.code === 'RATE_LIMIT') this.report(err)
    else this.fail(err)
    return true
  }

  /** @param {OpenPanelError} _err */
  onDisconnect (_err) { this.confirmed = false } // asked again on the next connection
}

class StatsConsumer extends Consumer {
  /** @param {string} containerId @param {{interval?: number}} opts @param {Function} onStats @param {any} onError */
  constructor (containerId, opts, onStats, onError) {
    super(onError)
    this.containerId = containerId
    this.interval = opts.interval
    this.onStats = onStats
    this.confirmed = false
  }

  subscribeMessages () {
    /** @type {any} */
    const msg = { type: 'subscribe_stats', containerId: this.containerId }
    if (this.interval !== undefined && this.interval !== null) msg.interval = this.interval
    return [msg]
  }

  unsubscribeMessages () { return [{ type: 'unsubscribe_stats', containerId: this.containerId }] }

  /** @param {any} msg */
  handle (msg) {
    if (msg.containerId !== this.containerId) return false
    if (msg.type === 'stats' || msg.type === 'subscribed_stats') this.confirmed = true
    if (msg.type === 'stats') {
      deliver(this.onStats, msg)
      return false
    }
    if (msg.type === 'subscription_ended' && (msg.subscription || 'stats') === 'stats') {
      this.fail(new OpenPanelError('SUBSCRIPTION_ENDED', msg.message || msg.reason || 'subscription ended',
        { containerId: this.containerId, raw: msg }))
      return false
    }
    return msg.type === 'subscribed_stats' || msg.type === 'unsubscribed_stats'
  }

  /** @param {OpenPanelError} err */
  handleError (err) {
    if (refuses(err, this.confirmed, ['interval'])) {
      this.fail(err)
      return true
    }
    if (err.containerId !== this.containerId) return false
    if (err.code === 'DOCKER_UNAVAILABLE' || err.code === 'RATE_LIMIT') this.report(err)
    else this.fail(err)
    return true
  }

  /** @param {OpenPanelError} _err */
  onDisconnect (_err) { this.confirmed = false }
}

class MetricsConsumer extends Consumer {
  /** @param {{interval?: number}} opts @param {Function} onMetrics @param {any} onError */
  constructor (opts, onMetrics, onError) {
    super(onError)
    this.interval = opts.interval
    this.onMetrics = onMetrics
    this.confirmed = false
  }

  subscribeMessages () {
    /** @type {any} */
    const msg = { type: 'subscribe' }
    if (this.interval !== undefined && this.interval !== null) msg.interval = this.interval
    return [msg]
  }

  unsubscribeMessages () { return [{ type: 'unsubscribe' }] }

  /** @param {any} msg */
  handle (msg) {
    if (msg.type === 'metrics' || msg.type === 'subscribed') this.confirmed = true
    if (msg.type === 'metrics') {
      deliver(this.onMetrics, msg)
      return false
    }
    return false
  }

  /** @param {OpenPanelError} err */
  handleError (err) {
    if (refuses(err, this.confirmed, ['interval'])) {
      this.fail(err)
      return true
    }
    return false
  }

  /** @param {OpenPanelError} _err */
  onDisconnect (_err) { this.confirmed = false }
}

class EventsConsumer extends Consumer {
  /** @param {{filters?: object, since?: string|number}} opts @param {Function} onEvent @param {any} onError */
  constructor (opts, onEvent, onError) {
    super(onError)
    this.filters = opts.filters
    this.since = opts.since
    this.onEvent = onEvent
    this.cursor = new EventCursor()
    // With filters nothing is passed on before the server accepted them: until then
    // the connection still gets every event.
    this.confirmed = !this.filters
  }

  subscribeMessages () {
    // A shared connection has one server-side subscription: its first consumer speaks
    // for all (they saw the same stream; each drops replayed duplicates by itself).
    if (this.link && this.link.consumers[0] !== this) return []
    const since = this.cursor.resumeSince() ?? this.since
    if (!this.filters && since === undefined) return [] // everything, by default
    /** @type {any} */
    const msg = { type: 'subscribe' }
    if (this.filters) msg.filters = this.filters
    if (since !== undefined && since !== null) msg.since = since
    return [msg]
  }

  /** @param {any} msg */
  handle (msg) {
    if (msg.type === 'subscribed') this.confirmed = true
    if (msg.type === 'docker_event' || msg.type === 'system_log') {
      if (this.confirmed && this.cursor.accept(msg)) deliver(this.onEvent, msg)
      return false
    }
    return false
  }

  /** @param {OpenPanelError} err */
  handleError (err) {
    // A refused filter or since is the answer to our `subscribe`: end, don't stream unfiltered.
    if (!this.confirmed && err.code === 'INVALID_MESSAGE') {
      this.fail(err)
      return true
    }
    if (err.code === 'INVALID_MESSAGE' || err.code === 'DOCKER_UNAVAILABLE') {
      this.report(err)
      return true
    }
    return false
  }

  /** @param {OpenPanelError} _err */
  onDisconnect (_err) { this.confirmed = !this.filters }
}

// --- one gateway connection ---------------------------------------------------------

/**
 * One WebSocket to one endpoint that reconnects by itself: backoff, re-auth,
 * subscriptions restored, heartbeat answered, outgoing frames paced by the mirror of
 * the server's rate limit.
 */
class Link {
  /** @param {OpenPanelClient} client @param {Endpoint} endpoint @param {{reconnect?: boolean}} [opts] */
  constructor (client, endpoint, { reconnect = true } = {}) {
    this.client = client
    this.endpoint = endpoint
    this.url = gatewayUrl(client.url, endpoint)
    this.reconnect = reconnect
    /** @type {Consumer[]} */
    this.consumers = []
    /** @type {WebSocket|null} */
    this.ws = null
    this.authenticated = false
    this.everAuthenticated = false
    this.closed = false
    this.userId = undefined
    this.backoff = new Backoff(client.backoffOptions)
    /** @type {Outbox|null} */
    this.outbox = null
    /** @type {any} */
    this.pumpTimer = null
    /** @type {any} */
    this.retryTimer = null
    /** @type {any} */
    this.refreshTimer = null
    /** @type {any} */
    this.idleTimer = null
    /** @type {number|null} */
    this.lastPingAt = null
    /** @type {number|null} */
    this.pingGap = null
    /** @type {LinkState|null} */
    this.state = null
    this.generation = 0
    /** @type {string|undefined} the client's key for a shared link */
    this.key = undefined
    /** @type {OpenPanelError|undefined} why the coming close is final */
    this.finalError = undefined
  }

  /** @param {LinkState} state */
  setState (state) {
    if (this.state === state) return
    this.state = state
    this.client.dispatchEvent(makeEvent('state', { endpoint: this.endpoint, state }))
  }

  /** @param {Consumer} consumer */
  attach (consumer) {
    consumer.link = this
    this.consumers.push(consumer)
    if (this.authenticated) for (const m of consumer.subscribeMessages()) this.send(m)
    if (!this.ws && !this.retryTimer) this.open()
  }

  /** @param {Consumer} consumer @param {boolean} sendUnsubscribe */
  detach (consumer, sendUnsubscribe) {
    const i = this.consumers.indexOf(consumer)
    if (i >= 0) this.consumers.splice(i, 1)
    if (!this.consumers.length) {
      this.close()
      return
    }
    if (sendUnsubscribe && this.authenticated) {
      // Keep what another consumer (same container, same kind) still uses.
      const still = new Set(this.consumers.flatMap(c => c.unsubscribeMessages())
        .map((/** @type {any} */ m) => m.type + '\u0000' + (m.containerId ?? '')))
      for (const m of /** @type {any[]} */ (consumer.unsubscribeMessages())) {
        if (!still.has(m.type + '\u0000' + (m.containerId ?? ''))) this.send(m)
      }
    }
  }

  /** Queue a message (or `{input}`) behind the rate-limit mirror. @param {any} item */
  send (item) {
    if (!this.outbox) return false
    this.outbox.push(item)
    this.pump()
    return true
  }

  pump () {
    if (this.pumpTimer !== null || !this.outbox || !this.ws) return
    for (;;) {
      const [msg, wait] = this.outbox.pop(now())
      if (msg) {
        try {
          this.ws.send(JSON.stringify(msg))
        } catch {
          return // closing: the close handler reconnects
        }
        continue
      }
      if (wait !== Infinity) {
        this.pumpTimer = setTimeout(() => { this.pumpTimer = null; this.pump() }, wait)
      }
      return
    }
  }

  open () {
    if (this.closed) return
    this.retryTimer = null
    const WS = this.client.WebSocket
    const generation = ++this.generation
    this.setState(this.everAuthenticated || this.backoff.attempts ? 'reconnecting' : 'connecting')
    /** @type {WebSocket} */
    let ws
    try {
      ws = new WS(this.url)
    } catch (e) {
      this.onClosed(generation, CLOSE.ABNORMAL, String(e))
      return
    }
    this.ws = ws
    this.outbox = new Outbox(this.client.rateLimits[this.endpoint] || SERVER_RATE_LIMITS.containers, now())
    ws.onmessage = (ev) => { if (generation === this.generation) this.onMessage(ev.data) }
    ws.onclose = (ev) => this.onClosed(generation, ev.code, ev.reason)
    // Browsers follow an error with a close event; Node 20's WebSocket does not when
    // the connection is refused (it stays CONNECTING): treat that as a 1006.
    ws.onerror = () => {
      setTimeout(() => {
        if (generation === this.generation && ws.readyState !== 1) {
          try { ws.close() } catch {}
          this.onClosed(generation, CLOSE.ABNORMAL, 'connection failed')
        }
      }, 0)
    }
  }

  /** @param {any} data */
  onMessage (data) {
    this.armIdle()
    if (typeof data !== 'string') return
    /** @type {any} */
    let msg
    try { msg = JSON.parse(data) } catch { return }
    if (!msg || typeof msg !== 'object') return
    switch (msg.type) {
      case 'connected':
        this.authenticate()
        return
      case 'authenticated':
        this.onAuthenticated(msg)
        return
      case 'ping': {
        // Heartbeat: answered ahead of everything, never counted against the limit.
        const t = now()
        if (this.lastPingAt !== null) this.pingGap = t - this.lastPingAt
        this.lastPingAt = t
        if (this.outbox) {
          this.outbox.pushFree({ type: 'pong', timestamp: new Date().toISOString() })
          this.pump()
        }
        return
      }
      case 'pong':
        return
      case 'error': {
        const err = errorFromMessage(msg)
        if (err.code === 'AUTH_FAILED' || err.code === 'AUTH_TIMEOUT') {
          this.finalError = err // the 4001 close that follows is final
          return
        }
        if (!this.consumers.slice().some(c => c.handleError(err))) {
          this.client.dispatchEvent(makeEvent('error', err))
        }
        return
      }
      default:
        for (const c of this.consumers.slice()) if (c.handle(msg)) break
    }
  }

  async authenticate () {
    const generation = this.generation
    let token
    try {
      token = await this.client.token()
    } catch (e) {
      if (generation !== this.generation) return
      this.finalError = new OpenPanelError('TOKEN_ERROR', `cannot obtain a token: ${/** @type {any} */ (e)?.message ?? e}`)
      this.ws?.close(1000)
      return
    }
    if (generation !== this.generation || !this.outbox) return
    this.outbox.push({ type: 'auth', token })
    this.pump()
    this.scheduleRefresh(token)
  }

  /** Re-authenticate on the open connection before the token's `exp`. @param {string} token */
  scheduleRefresh (token) {
    clearTimeout(this.refreshTimer)
    this.refreshTimer = null
    if (!this.client.getToken) return
    const exp = tokenExpiry(token)
    if (exp === null) return
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null
      if (this.authenticated) this.authenticate()
    }, refreshDelay(exp, Date.now()))
  }

  /** @param {any} msg */
  onAuthenticated (msg) {
    const first = !this.authenticated
    this.userId = msg.userId
    if (!first) return // a token refresh on the open connection
    this.authenticated = true
    this.everAuthenticated = true
    this.backoff.reset()
    this.setState('authenticated')
    for (const c of this.consumers.slice()) for (const m of c.subscribeMessages()) this.send(m)
  }

  armIdle () {
    clearTimeout(this.idleTimer)
    this.idleTimer = null
    // Browsers cannot send ping frames: a server that went silent (its host gone, a
    // half-open TCP) is noticed by missing heartbeats: 2.5 of its observed intervals.
    const limit = this.client.idleTimeout ?? (this.pingGap ? this.pingGap * 2.5 : null)
    if (!limit || !this.ws) return
    const ws = this.ws
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null
      if (ws === this.ws) {
        try { ws.close(4000, 'no heartbeat from the server') } catch {}
        this.onClosed(this.generation, CLOSE.ABNORMAL, 'no heartbeat from the server')
      }
    }, limit)
  }

  /** @param {number} generation @param {number} code @param {string} reason */
  onClosed (generation, code, reason) {
    if (generation !== this.generation) return
    this.generation += 1 // ignore anything else from that socket
    this.ws = null
    this.outbox = null
    this.authenticated = false
    clearTimeout(this.pumpTimer)
    clearTimeout(this.refreshTimer)
    clearTimeout(this.idleTimer)
    this.pumpTimer = this.refreshTimer = this.idleTimer = null
    if (this.closed) return
    let final = this.finalError
    this.finalError = undefined
    if (!final && code === CLOSE.AUTH_FAILED) {
      final = new OpenPanelError('AUTH_FAILED', reason || 'Invalid token', { closeCode: code })
    }
    if (!final && !shouldReconnect(code)) {
      final = new OpenPanelError('CONNECTION_CLOSED',
        `connection closed by the server (code ${code}${reason ? ': ' + reason : ''})`, { closeCode: code })
    }
    if (final) {
      if (final.closeCode === undefined) final.closeCode = code
      this.failAll(final)
      return
    }
    const lost = new OpenPanelError('CONNECTION_LOST',
      `connection to ${this.url} lost (code ${code}${reason ? ': ' + reason : ''})`, { closeCode: code })
    for (const c of this.consumers.slice()) c.onDisconnect(lost)
    if (this.closed) return
    if (!this.consumers.length) {
      this.close()
      return
    }
    if (!this.reconnect) {
      this.failAll(lost)
      return
    }
    const delay = this.backoff.nextDelay()
    if (delay === null) {
      this.failAll(new OpenPanelError('CONNECTION_CLOSED', `${this.url}: gave up after ${this.backoff.attempts} attempts`, { closeCode: code }))
      return
    }
    this.setState('reconnecting')
    this.retryTimer = setTimeout(() => this.open(), delay)
  }

  /** @param {OpenPanelError} err */
  failAll (err) {
    const consumers = this.consumers.slice()
    this.close()
    if (!consumers.length) this.client.dispatchEvent(makeEvent('error', err))
    for (const c of consumers) {
      c.link = this // report() falls back to the client's 'error' event
      c.fail(err)
    }
  }

  close () {
    if (this.closed) return
    this.closed = true
    this.consumers.length = 0
    this.client.forget(this)
    clearTimeout(this.retryTimer)
    clearTimeout(this.pumpTimer)
    clearTimeout(this.refreshTimer)
    clearTimeout(this.idleTimer)
    this.retryTimer = this.pumpTimer = this.refreshTimer = this.idleTimer = null
    const ws = this.ws
    this.ws = null
    this.outbox = null
    this.generation += 1
    if (ws) {
      try { ws.close(1000) } catch {}
    }
    this.setState('closed')
  }
}

// --- terminal -------------------------------------------------------------------------

/** How long a terminal tries to reattach after its connection was lost (ms); the
 * gateway keeps a detached session for its grace period (60 s by default). */
export const RESUME_TIMEOUT = 90000

/**
 * An interactive terminal. Events: 'opened' {sessionId, containerId}, 'output' {data},
 * 'closed' {reason, exitCode}, 'error' OpenPanelError; and, with a gateway that keeps
 * terminal sessions, 'resuming' {closeCode} and 'resumed' {sessionId, lostBytes}.
 *
 * A dropped connection (not a gateway shutdown, 1001) is reconnected and the same
 * session reattached with the `seq` of the last output received, so nothing is lost or
 * repeated; keystrokes written meanwhile are dropped. When the session did not survive
 * (a gateway without sessions, the grace period over, RESUME_TIMEOUT) the terminal
 * reports 'error' CONNECTION_LOST, then 'closed'.
 */
export class TerminalHandle extends EventTarget {
  /** @param {OpenPanelClient} client @param {string} containerId @param {TerminalOptions} opts */
  constructor (client, containerId, opts) {
    super()
    this.containerId = containerId
    /** @type {string|undefined} */
    this.sessionId = undefined
    /** @type {number|undefined|null} */
    this.exitCode = undefined
    /** @type {string|undefined} */
    this.reason = undefined
    this.opened = false
    this.closed = false
    /** @type {any[]} input and resizes written before the terminal opened */
    this.pending = []
    /** @type {number|undefined} `seq` of the last output received (sessions) */
    this.lastSeq = undefined
    this.resuming = false
    this.resumes = 0
    /** True when the program was killed because its container stopped or went away. */
    this.containerLost = false
    this.consumer = new TerminalConsumer(this, opts)
    this.link = new Link(client, 'terminal')
    client.adopt(this.link)
    this.link.attach(this.consumer)
  }

  /** Keystrokes or a paste; coalesced when the rate-limit mirror runs low. @param {string} data */
  write (data) {
    if (this.closed || !data || this.resuming) return // typed while disconnected: dropped
    const item = { input: String(data) }
    if (this.opened) this.link.send(item)
    else this.pending.push(item)
  }

  /** @param {number} cols @param {number} rows */
  resize (cols, rows) {
    const clamp = (/** @type {number} */ n) => Math.max(1, Math.min(1000, Math.floor(n)))
    const msg = { type: 'resize', cols: clamp(cols), rows: clamp(rows) }
    if (this.closed) return
    this.consumer.opts.cols = msg.cols
    this.consumer.opts.rows = msg.rows
    if (this.opened && !this.resuming) this.link.send(msg)
    else if (!this.opened) this.pending.push(msg)
  }

  /** End the program's input (extension `eof`; with a TTY it types Ctrl-D). */
  eof () {
    if (this.closed || this.resuming) return
    if (this.opened) this.link.send({ type: 'eof' })
    else this.pending.push({ type: 'eof' })
  }

  /** Ask the server to end the shell (`close_terminal`); 'closed' follows. */
  close () {
    if (this.closed) return
    if (this.opened && !this.resuming && this.link.send({ type: 'close_terminal' })) {
      // the server answers terminal_closed; give up on it after 5 s
      setTimeout(() => this.finish('User closed', null), 5000)
      return
    }
    this.finish('User closed', null)
  }

  /** @param {string} reason @param {number|null|undefined} exitCode */
  finish (reason, exitCode) {
    if (this.closed) return
    this.closed = true
    this.reason = reason
    this.exitCode = exitCode
    this.consumer.ended = true
    this.resuming = false
    clearTimeout(this.consumer.giveUp)
    this.link.close()
    this.dispatchEvent(makeEvent('closed', this.containerLost
      ? { reason, exitCode, containerLost: true }
      : { reason, exitCode }))
  }
}

class TerminalConsumer extends Consumer {
  /** @param {TerminalHandle} term @param {TerminalOptions} opts */
  constructor (term, opts) {
    super(undefined)
    this.term = term
    this.opts = opts
    this.sentOpen = false
    /** @type {any} */
    this.giveUp = null
  }

  subscribeMessages () {
    const term = this.term
    if (this.sentOpen) {
      if (!term.resuming || !term.sessionId) return []
      /** @type {any} */
      const again = { type: 'open_terminal', containerId: term.containerId, sessionId: term.sessionId }
      if (term.lastSeq !== undefined) again.lastSeq = term.lastSeq
      return [again]
    }
    this.sentOpen = true
    /** @type {any} */
    const msg = { type: 'open_terminal', containerId: this.term.containerId }
    if (this.opts.shell) msg.shell = this.opts.shell
    if (this.opts.cols && this.opts.rows) {
      msg.cols = this.opts.cols
      msg.rows = this.opts.rows
    }
    // Terminal extensions (docs/protocol.md): sent only when not the default.
    if (this.opts.command && this.opts.command.length) msg.command = [...this.opts.command]
    if (this.opts.tty === false) msg.tty = false
    if (this.opts.stdin === false) msg.stdin = false
    return [msg]
  }

  /** @param {any} msg */
  handle (msg) {
    const term = this.term
    switch (msg.type) {
      case 'terminal_opened':
        if (term.opened) {
          if (!term.resuming) return true
          if (msg.resumed === true && msg.sessionId === term.sessionId) {
            term.resuming = false
            term.resumes += 1
            clearTimeout(this.giveUp)
            const start = msg.seq
            const lostBytes = Number.isInteger(start) && term.lastSeq !== undefined && start > term.lastSeq
              ? start - term.lastSeq : 0
            term.dispatchEvent(makeEvent('resumed', { sessionId: term.sessionId, lostBytes }))
          } else {
            // A gateway without sessions opened a new shell: not the one we had.
            this.link?.send({ type: 'close_terminal' })
            this.didNotSurvive('the gateway opened a new session instead')
          }
          return true
        }
        term.opened = true
        term.sessionId = msg.sessionId
        term.dispatchEvent(makeEvent('opened', { sessionId: msg.sessionId, containerId: term.containerId }))
        for (const item of term.pending.splice(0)) this.link?.send(item)
        return true
      case 'terminal_output':
        if (Number.isInteger(msg.seq)) term.lastSeq = msg.seq
        term.dispatchEvent(makeEvent('output', typeof msg.stream === 'string'
          ? { data: String(msg.data ?? ''), stream: msg.stream }
          : { data: String(msg.data ?? '') }))
        return true
      case 'terminal_closed': {
        const code = Number.isInteger(msg.exitCode) ? msg.exitCode : null
        term.containerLost = msg.containerLost === true
        term.finish(String(msg.reason ?? ''), code)
        return true
      }
      case 'terminal_error':
        if (term.resuming) {
          this.didNotSurvive(String(msg.message ?? 'terminal error'))
          return true
        }
        this.report(new OpenPanelError('TERMINAL_ERROR', String(msg.message ?? 'terminal error'),
          { containerId: term.containerId, raw: msg }))
        if (!term.opened) term.finish(String(msg.message ?? 'terminal error'), null)
        return true
      default:
        return false
    }
  }

  /** @param {string} why */
  didNotSurvive (why) {
    this.fail(new OpenPanelError('CONNECTION_LOST',
      `the terminal session did not survive the reconnect (${why})`, { containerId: this.term.containerId }))
  }

  /** @param {OpenPanelError} err */
  onDisconnect (err) {
    const term = this.term
    if (term.closed) return
    // A gateway shutdown (1001) ends its sessions: no point in waiting for them.
    if (!term.opened || !term.sessionId || err.closeCode === CLOSE.GOING_AWAY) {
      this.fail(err)
      return
    }
    if (!term.resuming) {
      term.resuming = true
      this.giveUp = setTimeout(() => this.didNotSurvive('no reattach within ' +
        `${RESUME_TIMEOUT / 1000} s`), RESUME_TIMEOUT)
      term.dispatchEvent(makeEvent('resuming', { closeCode: err.closeCode }))
    }
  }

  /** @param {OpenPanelError} err */
  handleError (err) {
    if (this.term.resuming) {
      this.didNotSurvive(err.message)
      return true
    }
    this.report(err)
    // Before the terminal opened any error is its answer; afterwards only a refusal
    // ends it (a rejected resize must not kill the session: it is just reported).
    if (!this.term.opened || err.code === 'PERMISSION_DENIED' || err.code === 'CONTAINER_NOT_FOUND') {
      this.term.finish(err.message, null)
    }
    return true
  }

  /** @param {OpenPanelError} err */
  fail (err) {
    if (this.term.closed) return
    this.report(err)
    this.term.finish(err.message, null)
  }

  /** @param {OpenPanelError} err */
  report (err) {
    this.term.dispatchEvent(makeEvent('error', err))
  }
}

// --- the client ---------------------------------------------------------------------

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
