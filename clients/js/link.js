// link.js: the Link, the shell around a ClientConnection (connection.js): it owns the
// WebSocket and the timers, feeds their events to the connection, and carries out the
// connection's actions in one place, apply() (as the Python client's Link does).

import { ClientConnection } from './connection.js'
import { CLOSE } from './errors.js'
import { gatewayUrl, makeEvent, now, SERVER_RATE_LIMITS } from './pure.js'

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
  constructor(client, endpoint, { reconnect = true } = {}) {
    this.client = client
    this.endpoint = endpoint
    this.connection = new ClientConnection({
      url: gatewayUrl(client.url, endpoint, client.hostRoute),
      rateLimit: client.rateLimits[endpoint] || SERVER_RATE_LIMITS.containers,
      backoff: client.backoffOptions,
      reconnect,
      refreshes: Boolean(client.getToken),
      idleTimeout: client.idleTimeout
    })
    /** @type {WebSocket|null} the latest socket */
    this.ws = null
    /** @type {Map<TimerName, ReturnType<typeof setTimeout>>} */
    this.timers = new Map()
    /** @type {string|undefined} the client's key for a shared link */
    this.key = undefined
  }

  get url() {
    return this.connection.url
  }
  /** @returns {Consumer[]} */
  get consumers() {
    return /** @type {Consumer[]} */ (this.connection.consumers)
  }
  get closed() {
    return this.connection.closed
  }
  get authenticated() {
    return this.connection.authenticated
  }
  get state() {
    return this.connection.state
  }
  get userId() {
    return this.connection.userId
  }

  /** @param {Consumer} consumer */
  attach(consumer) {
    consumer.link = this
    this.apply(this.connection.attach(consumer, now()))
  }

  /** @param {Consumer} consumer @param {boolean} sendUnsubscribe */
  detach(consumer, sendUnsubscribe) {
    this.apply(this.connection.detach(consumer, sendUnsubscribe, now()))
  }

  /** Queue a message (or `{input}`); false when there is no connection. @param {any} item */
  send(item) {
    if (!this.connection.canSend) return false
    this.apply(this.connection.send(item, now()))
    return true
  }

  close() {
    this.apply(this.connection.close())
  }

  /** Carries out the connection's actions, in order. @param {ConnectionAction[]} actions */
  apply(actions) {
    for (const action of actions) {
      switch (action.kind) {
        case 'open':
          this.openSocket(action.generation, action.url)
          break
        case 'send':
          try {
            this.ws?.send(action.text)
          } catch {} // closing: the close event follows
          break
        case 'close-socket':
          try {
            if (action.reason) this.ws?.close(action.code, action.reason)
            else this.ws?.close(action.code)
          } catch {}
          break
        case 'set-timer':
          // A listener called back during this batch may have closed the link meanwhile.
          if (!this.connection.closed) this.setTimer(action.timer, action.delay)
          break
        case 'clear-timer':
          clearTimeout(this.timers.get(action.timer))
          this.timers.delete(action.timer)
          break
        case 'fetch-token':
          this.fetchToken(action.generation)
          break
        case 'state':
          this.client.dispatchEvent(makeEvent('state', { endpoint: this.endpoint, state: action.state }))
          break
        case 'route':
          for (const c of this.consumers.slice()) if (c.handle(action.msg)) break
          break
        case 'route-error':
          if (!this.consumers.slice().some(c => c.handleError(action.err))) {
            this.client.dispatchEvent(makeEvent('error', action.err))
          }
          break
        case 'disconnected':
          for (const c of this.consumers.slice()) c.onDisconnect(action.err)
          this.apply(this.connection.afterDisconnect())
          break
        case 'fail':
          this.failConsumers(/** @type {Consumer[]} */ (action.consumers), action)
          break
        case 'forget':
          this.client.forget(this)
          break
        default:
          assertNever(action) // tsc --checkJs fails here when a kind is not handled
      }
    }
  }

  /** @param {number} generation @param {string} url */
  openSocket(generation, url) {
    const WS = this.client.WebSocket
    /** @type {WebSocket} */
    let ws
    try {
      ws = new WS(url)
    } catch (e) {
      this.apply(this.connection.socketClosed(generation, CLOSE.ABNORMAL, String(e)))
      return
    }
    this.ws = ws
    ws.onmessage = ev => this.apply(this.connection.received(generation, ev.data, now()))
    ws.onclose = ev => this.apply(this.connection.socketClosed(generation, ev.code, ev.reason))
    // Browsers follow an error with a close event; Node 20's WebSocket does not when
    // the connection is refused (it stays CONNECTING): treat that as a 1006.
    ws.onerror = () => {
      setTimeout(() => {
        if (generation === this.connection.generation && ws.readyState !== 1) {
          try {
            ws.close()
          } catch {}
          this.apply(this.connection.socketClosed(generation, CLOSE.ABNORMAL, 'connection failed'))
        }
      }, 0)
    }
  }

  /** @param {TimerName} timer @param {number} delay */
  setTimer(timer, delay) {
    clearTimeout(this.timers.get(timer))
    this.timers.set(
      timer,
      setTimeout(() => {
        this.timers.delete(timer)
        this.apply(this.connection.timerFired(timer, now()))
      }, delay)
    )
  }

  /** @param {number} generation */
  fetchToken(generation) {
    this.client.token().then(
      token => this.apply(this.connection.tokenReady(generation, token, now())),
      error => this.apply(this.connection.tokenFailed(generation, error))
    )
  }

  /** @param {Consumer[]} consumers @param {{err: import('./errors.js').OpenPanelError}} action */
  failConsumers(consumers, { err }) {
    if (!consumers.length) this.client.dispatchEvent(makeEvent('error', err))
    for (const c of consumers) {
      c.link = this // report() falls back to the client's 'error' event
      c.fail(err)
    }
  }
}

/** @param {never} action @returns {never} */
function assertNever(action) {
  throw new Error(`unknown link action ${JSON.stringify(action)}`)
}
