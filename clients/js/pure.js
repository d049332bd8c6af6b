// pure.js: plain parts with no I/O: backoff, the rate-limit mirror (token bucket and
// outbox), time helpers, gateway URLs and token expiry. Exported by openpanel-ws.js for
// tests and for people who write their own transport.

/** @typedef {'containers'|'logs'|'metrics'|'terminal'} Endpoint */
/** @typedef {{count: number, windowMs: number}} RateLimit */
/** @typedef {{base?: number, cap?: number, maxAttempts?: number|null, random?: () => number}} BackoffOptions */

/**
 * Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n)).
 * Milliseconds. `maxAttempts` null (default) retries forever.
 */
export class Backoff {
  /** @param {BackoffOptions} [opts] */
  constructor({ base = 1000, cap = 30000, maxAttempts = null, random = Math.random } = {}) {
    this.base = base
    this.cap = cap
    /** @type {number|null} */
    this.maxAttempts = maxAttempts
    this.random = random
    this.attempts = 0
  }

  /** @returns {number|null} milliseconds before the next attempt; null when exhausted */
  nextDelay() {
    if (this.maxAttempts != null && this.attempts >= this.maxAttempts) return null
    const ceiling = Math.min(this.cap, this.base * 2 ** Math.min(this.attempts, 52))
    this.attempts += 1
    return this.random() * ceiling
  }

  /** After an authenticated connection: start over from `base`. */
  reset() {
    this.attempts = 0
  }
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
  /** @param {RateLimit} limit @param {number} now */
  constructor(limit, now) {
    this.capacity = limit.count
    this.ratePerMs = limit.count / limit.windowMs
    this.tokens = limit.count
    this.stamp = now
  }

  /** @param {number} now */
  refill(now) {
    if (now > this.stamp) {
      this.tokens = Math.min(this.capacity, this.tokens + (now - this.stamp) * this.ratePerMs)
      this.stamp = now
    }
  }

  /** @param {number} now @returns {boolean} */
  tryTake(now) {
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
 * @param {RateLimit} limit
 */
export function mirrorLimit(limit, margin = 0.8) {
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
  /** @param {RateLimit} limit @param {number} now */
  constructor(limit, now) {
    this.limit = mirrorLimit(limit)
    this.bucket = new TokenBucket(this.limit, now)
    /** @type {Array<object|{input: string}>} */
    this.queue = []
    /** @type {object[]} frames the server never counts (heartbeat pong): no token, first */
    this.free = []
  }

  get length() {
    return this.queue.length + this.free.length
  }

  /** @param {object} message */
  pushFree(message) {
    this.free.push(message)
  }

  /** A protocol message, or `{input: 'keys'}` for terminal keystrokes. @param {object|{input: string}} item */
  push(item) {
    const entry = /** @type {any} */ (item)
    if (entry && typeof entry.input === 'string' && !('type' in entry)) {
      if (!entry.input) return
      for (let i = 0; i < entry.input.length; i += MAX_INPUT_CHARS) {
        this.queue.push({ input: entry.input.slice(i, i + MAX_INPUT_CHARS) })
      }
      return
    }
    this.queue.push(item)
  }

  /**
   * @param {number} now
   * @returns {[object|null, number]} [message to send now, 0] or [null, ms to wait; Infinity when empty]
   */
  pop(now) {
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

  clear() {
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
export function parseTimestampNanos(text) {
  if (typeof text !== 'string') return null
  const m = RFC3339.exec(text.trim())
  if (!m) return null
  const date = new Date(0)
  date.setUTCFullYear(+m[1], +m[2] - 1, +m[3])
  date.setUTCHours(+m[4], +m[5], +m[6], 0)
  let seconds = date.getTime() / 1000
  if (Number.isNaN(seconds)) return null
  if (m[9]) seconds -= (m[9] === '-' ? -1 : 1) * (+m[10] * 3600 + +m[11] * 60)
  const frac = BigInt(`${m[7] || ''}000000000`.slice(0, 9))
  return BigInt(seconds) * 1000000000n + frac
}

/** RFC 3339 UTC keeping nanosecond precision. @param {bigint} nanos */
export function rfc3339FromNanos(nanos) {
  const seconds = nanos / 1000000000n
  const rest = nanos % 1000000000n
  const iso = new Date(Number(seconds) * 1000).toISOString().slice(0, 19)
  return `${iso}.${rest.toString().padStart(9, '0')}Z`
}

// --- urls and tokens --------------------------------------------------------------

const ENDPOINTS = ['containers', 'logs', 'metrics', 'terminal']

/**
 * ws://host:port[/ws/x] or http(s)://... -> ws(s)://host:port/ws/<endpoint>; with
 * `hostRoute`, the route of that Docker host: .../hosts/<id>/ws/<endpoint>
 * (docs/protocol.md "Addressing"). A base URL ending in /hosts/<id> works too.
 * @param {string} base @param {Endpoint} endpoint @param {string|null} [hostRoute]
 */
export function gatewayUrl(base, endpoint, hostRoute) {
  let url = String(base).trim().replace(/\/+$/, '')
  if (url.startsWith('http://')) url = `ws://${url.slice(7)}`
  else if (url.startsWith('https://')) url = `wss://${url.slice(8)}`
  else if (!url.includes('://')) url = `ws://${url}`
  for (const name of ENDPOINTS) {
    if (url.endsWith(`/ws/${name}`)) url = url.slice(0, -`/ws/${name}`.length)
  }
  if (hostRoute !== undefined && hostRoute !== null)
    return `${url}/hosts/${encodeURIComponent(hostRoute)}/ws/${endpoint}`
  return `${url}/ws/${endpoint}`
}

/**
 * The HTTP address of `path` (/api/...) on the gateway of a base URL (a host route's
 * base /hosts/{id} included: the API is the gateway's).
 * @param {string} base
 * @param {string} path
 * @returns {string}
 */
export function apiUrl(base, path) {
  const url = gatewayUrl(base, 'containers')
    .slice(0, -'/ws/containers'.length)
    .replace(/\/hosts\/[^/]+$/, '')
  return (url.startsWith('wss://') ? `https://${url.slice(6)}` : `http://${url.slice(5)}`) + path
}

/** The page's own gateway: ws(s)://location.host. */
export function defaultUrl() {
  const loc = /** @type {any} */ (globalThis).location
  if (!loc?.host) return 'ws://127.0.0.1:3001'
  return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host
}

/**
 * The `exp` claim (unix seconds) of a JWT, without verifying it; null if none.
 * @param {string} token
 * @returns {number|null}
 */
export function tokenExpiry(token) {
  try {
    const part = String(token).split('.')[1]
    if (!part) return null
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4)
    const json =
      typeof atob === 'function'
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
export function refreshDelay(exp, nowMs) {
  const left = exp * 1000 - nowMs
  return Math.max(1000, left > 150000 ? left - 30000 : left * 0.8)
}

/**
 * A CustomEvent (or an Event with `detail` where CustomEvent is missing).
 * @param {string} type @param {any} detail @returns {Event}
 */
export function makeEvent(type, detail) {
  const CE = /** @type {any} */ (globalThis).CustomEvent
  if (typeof CE === 'function') return new CE(type, { detail })
  const ev = /** @type {any} */ (new Event(type))
  ev.detail = detail
  return ev
}

/** Monotonic milliseconds: the clock of the link and the outbox. @returns {number} */
export const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now())
