// connection.js: one gateway connection's protocol decisions as plain synchronous code,
// the counterpart of the Python client's ClientConnection (openpanel_ws/client/sansio.py).
//
// A ClientConnection takes inputs (a socket opened, a message, a close, a timer that fired, a
// token fetched) with the clock, and returns actions (open a socket, send a text, set a
// timer, fetch a token, tell the consumers). It owns no socket and no timer: the shell
// (link.js, the Link) carries the actions out, in one place. docs/protocol.md "JavaScript client".

import { CLOSE, errorFromMessage, OpenPanelError, shouldReconnect } from './errors.js'
import { Backoff, Outbox, refreshDelay, tokenExpiry } from './pure.js'

/** @typedef {import('./pure.js').RateLimit} RateLimit */
/** @typedef {import('./pure.js').BackoffOptions} BackoffOptions */
/** @typedef {'connecting'|'authenticated'|'reconnecting'|'closed'} ConnectionState */
/** @typedef {'pump'|'retry'|'refresh'|'idle'} TimerName */

/**
 * What a link carries, as the connection sees it: the messages that (re)subscribe a
 * consumer and the ones that end its subscription. (Messages and errors reach the
 * consumers through the shell: the `route`, `route-error`, `disconnected` and `fail`
 * actions.)
 * @typedef {object} Carried
 * @property {() => object[]} subscribeMessages
 * @property {() => object[]} unsubscribeMessages
 */

/**
 * The actions of a ClientConnection, each a frozen object told apart by `kind`.
 * @typedef {{kind: 'open', url: string, generation: number}} OpenSocket
 * @typedef {{kind: 'send', text: string}} SendText
 * @typedef {{kind: 'close-socket', code: number, reason: string}} CloseSocket
 * @typedef {{kind: 'set-timer', timer: TimerName, delay: number}} SetTimer
 * @typedef {{kind: 'clear-timer', timer: TimerName}} ClearTimer
 * @typedef {{kind: 'fetch-token', generation: number}} FetchToken
 * @typedef {{kind: 'state', state: ConnectionState}} StateChanged
 * @typedef {{kind: 'route', msg: any}} RouteMessage
 * @typedef {{kind: 'route-error', err: OpenPanelError}} RouteError
 * @typedef {{kind: 'disconnected', err: OpenPanelError}} Disconnected
 * @typedef {{kind: 'fail', err: OpenPanelError, consumers: Carried[]}} FailAll
 * @typedef {{kind: 'forget'}} Forget
 * @typedef {OpenSocket|SendText|CloseSocket|SetTimer|ClearTimer|FetchToken|StateChanged|
 *   RouteMessage|RouteError|Disconnected|FailAll|Forget} ConnectionAction
 */

/**
 * @template {ConnectionAction} A
 * @param {A} action @returns {A}
 */
const act = action => Object.freeze(action)

/** @type {TimerName[]} */
const TIMERS = ['retry', 'pump', 'refresh', 'idle']

/**
 * @typedef {object} ConnectionConfig
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
export class ClientConnection {
  /** @param {ConnectionConfig} config */
  constructor({
    url,
    rateLimit,
    backoff = {},
    reconnect = true,
    refreshes = false,
    idleTimeout = null,
    wallClock = Date.now
  }) {
    this.url = url
    this.rateLimit = rateLimit
    this.reconnect = reconnect
    this.refreshes = refreshes
    /** @type {number|null} */
    this.idleTimeout = idleTimeout
    this.wallClock = wallClock
    this.backoff = new Backoff(backoff)
    /** @type {Carried[]} */
    this.consumers = []
    /** counts sockets: inputs naming an older one are ignored */
    this.generation = 0
    /** a socket is open or opening */
    this.socket = false
    this.authenticated = false
    this.everAuthenticated = false
    this.closed = false
    /** @type {string|undefined} */
    this.userId = undefined
    /** @type {Outbox|null} */
    this.outbox = null
    /** the retry timer is set */
    this.retrying = false
    /** the pump timer is set */
    this.pumping = false
    /** @type {number|null} */
    this.lastPingAt = null
    /** @type {number|null} */
    this.pingGap = null
    /** @type {ConnectionState|null} */
    this.state = null
    /** @type {OpenPanelError|undefined} why the coming close is final */
    this.finalError = undefined
    /** @type {OpenPanelError|null} the loss the consumers are being told about */
    this.lost = null
  }

  /** True while there is a connection to queue messages on. */
  get canSend() {
    return this.outbox !== null
  }

  /** @param {Carried} consumer @param {number} now @returns {ConnectionAction[]} */
  attach(consumer, now) {
    this.consumers.push(consumer)
    /** @type {ConnectionAction[]} */
    const out = []
    if (this.authenticated) {
      for (const m of consumer.subscribeMessages()) this.outbox?.push(m)
      out.push(...this.pump(now))
    }
    if (!this.socket && !this.retrying) out.push(...this.open(now))
    return out
  }

  /** @param {Carried} consumer @param {boolean} sendUnsubscribe @param {number} now @returns {ConnectionAction[]} */
  detach(consumer, sendUnsubscribe, now) {
    const i = this.consumers.indexOf(consumer)
    if (i >= 0) this.consumers.splice(i, 1)
    if (!this.consumers.length) return this.close()
    if (!sendUnsubscribe || !this.authenticated) return []
    // Keep what another consumer (same container, same kind) still uses.
    // Kept while another consumer (same kind, same container on the same host) uses it.
    const key = (/** @type {any} */ m) => `${m.type}\u0000${m.containerId ?? ''}\u0000${m.host ?? ''}`
    const still = new Set(this.consumers.flatMap(c => c.unsubscribeMessages()).map(key))
    for (const m of consumer.unsubscribeMessages()) if (!still.has(key(m))) this.outbox?.push(m)
    return this.pump(now)
  }

  /** Queue a message (or `{input}`) behind the rate-limit mirror. @param {any} item @param {number} now @returns {ConnectionAction[]} */
  send(item, now) {
    if (!this.outbox) return []
    this.outbox.push(item)
    return this.pump(now)
  }

  /** @param {number} now @returns {ConnectionAction[]} */
  pump(now) {
    if (this.pumping || !this.outbox || !this.socket) return []
    /** @type {ConnectionAction[]} */
    const out = []
    for (;;) {
      const [msg, wait] = this.outbox.pop(now)
      if (msg) {
        out.push(act({ kind: 'send', text: JSON.stringify(msg) }))
        continue
      }
      if (wait !== Infinity) {
        this.pumping = true
        out.push(act({ kind: 'set-timer', timer: 'pump', delay: wait }))
      }
      return out
    }
  }

  /** @param {number} now @returns {ConnectionAction[]} */
  open(now) {
    if (this.closed) return []
    this.retrying = false
    this.generation += 1
    this.socket = true
    this.outbox = new Outbox(this.rateLimit, now)
    return [
      ...this.setState(this.everAuthenticated || this.backoff.attempts ? 'reconnecting' : 'connecting'),
      act({ kind: 'open', url: this.url, generation: this.generation })
    ]
  }

  /** A text (or binary) message of socket `generation`. @param {number} generation @param {any} data @param {number} now @returns {ConnectionAction[]} */
  received(generation, data, now) {
    if (generation !== this.generation || !this.socket) return []
    const out = this.armIdle()
    if (typeof data !== 'string') return out
    /** @type {any} */
    let msg
    try {
      msg = JSON.parse(data)
    } catch {
      return out
    }
    if (!msg || typeof msg !== 'object') return out
    switch (msg.type) {
      case 'connected':
        return [...out, act({ kind: 'fetch-token', generation })]
      case 'authenticated':
        return [...out, ...this.onAuthenticated(msg, now)]
      case 'ping':
        return [...out, ...this.onPing(now)]
      case 'pong':
        return out
      case 'error': {
        const err = errorFromMessage(msg)
        if (err.code === 'AUTH_FAILED' || err.code === 'AUTH_TIMEOUT') {
          this.finalError = err // the 4001 close that follows is final
          return out
        }
        return [...out, act({ kind: 'route-error', err })]
      }
      default:
        return [...out, act({ kind: 'route', msg })]
    }
  }

  /** Heartbeat: answered ahead of everything, never counted against the limit. @param {number} now */
  onPing(now) {
    if (this.lastPingAt !== null) this.pingGap = now - this.lastPingAt
    this.lastPingAt = now
    if (!this.outbox) return []
    this.outbox.pushFree({ type: 'pong', timestamp: new Date(this.wallClock()).toISOString() })
    return this.pump(now)
  }

  /** @param {any} msg @param {number} now @returns {ConnectionAction[]} */
  onAuthenticated(msg, now) {
    const first = !this.authenticated
    this.userId = msg.userId
    if (!first) return [] // a token refresh on the open connection
    this.authenticated = true
    this.everAuthenticated = true
    this.backoff.reset()
    const out = this.setState('authenticated')
    for (const c of this.consumers) for (const m of c.subscribeMessages()) this.outbox?.push(m)
    return [...out, ...this.pump(now)]
  }

  /**
   * Browsers cannot send ping frames: a server that went silent (its host gone, a
   * half-open TCP) is noticed by missing heartbeats: 2.5 of its observed intervals.
   * @returns {ConnectionAction[]}
   */
  armIdle() {
    const limit = this.idleTimeout ?? (this.pingGap ? this.pingGap * 2.5 : null)
    if (!limit || !this.socket) return [act({ kind: 'clear-timer', timer: 'idle' })]
    return [act({ kind: 'set-timer', timer: 'idle', delay: limit })]
  }

  /** The token for socket `generation` arrived. @param {number} generation @param {string} token @param {number} now @returns {ConnectionAction[]} */
  tokenReady(generation, token, now) {
    if (generation !== this.generation || !this.outbox) return []
    this.outbox.push({ type: 'auth', token })
    const out = this.pump(now)
    // Re-authenticate on the open connection before the token's `exp`.
    const exp = this.refreshes ? tokenExpiry(token) : null
    if (exp === null) return [...out, act({ kind: 'clear-timer', timer: 'refresh' })]
    return [...out, act({ kind: 'set-timer', timer: 'refresh', delay: refreshDelay(exp, this.wallClock()) })]
  }

  /** getToken() threw: the coming close is final. @param {number} generation @param {unknown} error @returns {ConnectionAction[]} */
  tokenFailed(generation, error) {
    if (generation !== this.generation) return []
    const why = /** @type {any} */ (error)?.message ?? error
    this.finalError = new OpenPanelError('TOKEN_ERROR', `cannot obtain a token: ${why}`)
    return this.socket ? [act({ kind: 'close-socket', code: CLOSE.NORMAL, reason: '' })] : []
  }

  /** @param {TimerName} timer @param {number} now @returns {ConnectionAction[]} */
  timerFired(timer, now) {
    switch (timer) {
      case 'pump':
        this.pumping = false
        return this.pump(now)
      case 'retry':
        return this.open(now)
      case 'refresh':
        return this.authenticated ? [act({ kind: 'fetch-token', generation: this.generation })] : []
      case 'idle': {
        if (!this.socket) return []
        const reason = 'no heartbeat from the server'
        return [
          act({ kind: 'close-socket', code: 4000, reason }),
          ...this.socketClosed(this.generation, CLOSE.ABNORMAL, reason)
        ]
      }
    }
  }

  /**
   * Socket `generation` closed (or failed to open). A final close fails the consumers; a
   * transient one returns `disconnected`: the shell tells the consumers, then calls
   * afterDisconnect() for the reconnect decision.
   * @param {number} generation @param {number} code @param {string} reason @returns {ConnectionAction[]}
   */
  socketClosed(generation, code, reason) {
    if (generation !== this.generation) return []
    this.generation += 1 // ignore anything else from that socket
    this.socket = false
    this.outbox = null
    this.authenticated = false
    this.pumping = false
    /** @type {ConnectionAction[]} */
    const out = TIMERS.filter(t => t !== 'retry').map(timer => act({ kind: 'clear-timer', timer }))
    if (this.closed) return out
    let final = this.finalError
    this.finalError = undefined
    const detail = `code ${code}${reason ? `: ${reason}` : ''}`
    if (!final && code === CLOSE.AUTH_FAILED) {
      final = new OpenPanelError('AUTH_FAILED', reason || 'Invalid token', { closeCode: code })
    }
    if (!final && !shouldReconnect(code)) {
      final = new OpenPanelError('CONNECTION_CLOSED', `connection closed by the server (${detail})`, {
        closeCode: code
      })
    }
    if (final) {
      if (final.closeCode === undefined) final.closeCode = code
      return [...out, ...this.fail(final)]
    }
    this.lost = new OpenPanelError('CONNECTION_LOST', `connection to ${this.url} lost (${detail})`, { closeCode: code })
    return [...out, act({ kind: 'disconnected', err: this.lost })]
  }

  /** The consumers were told of the loss: reconnect after a backoff, or give up. @returns {ConnectionAction[]} */
  afterDisconnect() {
    const lost = this.lost
    this.lost = null
    if (!lost || this.closed) return []
    if (!this.consumers.length) return this.close()
    if (!this.reconnect) return this.fail(lost)
    const delay = this.backoff.nextDelay()
    if (delay === null) {
      return this.fail(
        new OpenPanelError('CONNECTION_CLOSED', `${this.url}: gave up after ${this.backoff.attempts} attempts`, {
          closeCode: lost.closeCode
        })
      )
    }
    this.retrying = true
    return [...this.setState('reconnecting'), act({ kind: 'set-timer', timer: 'retry', delay })]
  }

  /** Close, then fail every consumer with `err`. @param {OpenPanelError} err @returns {ConnectionAction[]} */
  fail(err) {
    const consumers = this.consumers.slice()
    return [...this.close(), act({ kind: 'fail', err, consumers })]
  }

  /** For good: nothing reconnects afterwards. @returns {ConnectionAction[]} */
  close() {
    if (this.closed) return []
    this.closed = true
    this.consumers.length = 0
    /** @type {ConnectionAction[]} */
    const out = [act({ kind: 'forget' }), ...TIMERS.map(timer => act({ kind: 'clear-timer', timer }))]
    this.retrying = this.pumping = false
    if (this.socket) out.push(act({ kind: 'close-socket', code: CLOSE.NORMAL, reason: '' }))
    this.socket = false
    this.outbox = null
    this.generation += 1
    return [...out, ...this.setState('closed')]
  }

  /** @param {ConnectionState} state @returns {ConnectionAction[]} */
  setState(state) {
    if (this.state === state) return []
    this.state = state
    return [act({ kind: 'state', state })]
  }
}
