// consumers.js: what a link carries: log lines, stats, host metrics and events. Each
// consumer builds its (re)subscribe messages and picks its own messages and errors.

import { EventCursor, LogCursor } from './cursors.js'
import { OpenPanelError } from './errors.js'
import { makeEvent } from './pure.js'

/** What every consumer of a link implements. */
export class Consumer {
  /** @param {((err: OpenPanelError) => void)|undefined} onError */
  constructor(onError) {
    this.onError = onError
    this.ended = false
    /** @type {import('./link.js').Link|null} */
    this.link = null
  }

  /** Messages to (re)send once the connection is authenticated. @returns {object[]} */
  subscribeMessages() {
    return []
  }
  /** @returns {object[]} */
  unsubscribeMessages() {
    return []
  }
  /** @param {any} _msg @returns {boolean} true when the message was this consumer's alone */
  handle(_msg) {
    return false
  }
  /** @param {OpenPanelError} _err @returns {boolean} */
  handleError(_err) {
    return false
  }
  /** The link lost its connection (it reconnects unless told otherwise). @param {OpenPanelError} _err */
  onDisconnect(_err) {}

  /** @param {OpenPanelError} err */
  fail(err) {
    if (this.ended) return
    this.ended = true
    if (this.link) this.link.detach(this, false)
    this.report(err)
  }

  /** @param {OpenPanelError} err */
  report(err) {
    if (this.onError) {
      try {
        this.onError(err)
      } catch (e) {
        console.error(e)
      }
    } else if (this.link) {
      this.link.client.dispatchEvent(makeEvent('error', err))
    }
  }

  unsubscribe() {
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
export function refuses(err, confirmed, fields) {
  return !confirmed && err.code === 'INVALID_MESSAGE' && fields.includes(/** @type {any} */ (err.raw)?.field)
}

/** @param {Function} cb @param {any} value */
export function deliver(cb, value) {
  try {
    cb(value)
  } catch (e) {
    console.error(e)
  }
}

/** The error a `subscription_ended` message ends a container's subscription with.
 * @param {any} msg @param {string} containerId */
function subscriptionEnded(msg, containerId) {
  return new OpenPanelError('SUBSCRIPTION_ENDED', msg.message || msg.reason || 'subscription ended', {
    containerId,
    raw: msg
  })
}

export class LogsConsumer extends Consumer {
  /** @param {string} containerId @param {{tail?: number|'all', since?: string|number}} opts @param {Function} onLine @param {any} onError */
  constructor(containerId, opts, onLine, onError) {
    super(onError)
    this.containerId = containerId
    this.tail = opts.tail
    this.since = opts.since
    this.onLine = onLine
    this.cursor = new LogCursor()
    this.confirmed = false // the server answered our subscribe (ack or a line)
  }

  subscribeMessages() {
    /** @type {any} */
    const msg = { type: 'subscribe_logs', containerId: this.containerId }
    if (this.tail !== undefined && this.tail !== null) msg.tail = this.tail
    if (this.since !== undefined && this.since !== null) msg.since = this.since
    Object.assign(msg, this.cursor.resume())
    return [msg]
  }

  unsubscribeMessages() {
    return [{ type: 'unsubscribe_logs', containerId: this.containerId }]
  }

  /** @param {any} msg */
  handle(msg) {
    if (msg.containerId !== this.containerId) return false
    if (msg.type === 'log' || msg.type === 'subscribed_logs') this.confirmed = true
    if (msg.type === 'log') {
      if (this.cursor.accept(msg.timestamp, msg.stream, msg.data)) {
        deliver(this.onLine, {
          containerId: msg.containerId,
          timestamp: msg.timestamp,
          stream: msg.stream,
          data: msg.data
        })
      }
      return false // another consumer of the same container may want it too
    }
    if (msg.type === 'subscription_ended' && (msg.subscription || 'logs') === 'logs') {
      this.fail(subscriptionEnded(msg, this.containerId))
      return false
    }
    return msg.type === 'subscribed_logs' || msg.type === 'unsubscribed_logs'
  }

  /** @param {OpenPanelError} err */
  handleError(err) {
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
  onDisconnect(_err) {
    this.confirmed = false
  } // asked again on the next connection
}

export class StatsConsumer extends Consumer {
  /** @param {string} containerId @param {{interval?: number}} opts @param {Function} onStats @param {any} onError */
  constructor(containerId, opts, onStats, onError) {
    super(onError)
    this.containerId = containerId
    this.interval = opts.interval
    this.onStats = onStats
    this.confirmed = false
  }

  subscribeMessages() {
    /** @type {any} */
    const msg = { type: 'subscribe_stats', containerId: this.containerId }
    if (this.interval !== undefined && this.interval !== null) msg.interval = this.interval
    return [msg]
  }

  unsubscribeMessages() {
    return [{ type: 'unsubscribe_stats', containerId: this.containerId }]
  }

  /** @param {any} msg */
  handle(msg) {
    if (msg.containerId !== this.containerId) return false
    if (msg.type === 'stats' || msg.type === 'subscribed_stats') this.confirmed = true
    if (msg.type === 'stats') {
      deliver(this.onStats, msg)
      return false
    }
    if (msg.type === 'subscription_ended' && (msg.subscription || 'stats') === 'stats') {
      this.fail(subscriptionEnded(msg, this.containerId))
      return false
    }
    return msg.type === 'subscribed_stats' || msg.type === 'unsubscribed_stats'
  }

  /** @param {OpenPanelError} err */
  handleError(err) {
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
  onDisconnect(_err) {
    this.confirmed = false
  }
}

export class MetricsConsumer extends Consumer {
  /** @param {{interval?: number}} opts @param {Function} onMetrics @param {any} onError */
  constructor(opts, onMetrics, onError) {
    super(onError)
    this.interval = opts.interval
    this.onMetrics = onMetrics
    this.confirmed = false
  }

  subscribeMessages() {
    /** @type {any} */
    const msg = { type: 'subscribe' }
    if (this.interval !== undefined && this.interval !== null) msg.interval = this.interval
    return [msg]
  }

  unsubscribeMessages() {
    return [{ type: 'unsubscribe' }]
  }

  /** @param {any} msg */
  handle(msg) {
    if (msg.type === 'metrics' || msg.type === 'subscribed') this.confirmed = true
    if (msg.type === 'metrics') {
      deliver(this.onMetrics, msg)
      return false
    }
    return false
  }

  /** @param {OpenPanelError} err */
  handleError(err) {
    if (refuses(err, this.confirmed, ['interval'])) {
      this.fail(err)
      return true
    }
    return false
  }

  /** @param {OpenPanelError} _err */
  onDisconnect(_err) {
    this.confirmed = false
  }
}

export class EventsConsumer extends Consumer {
  /** @param {{filters?: object, since?: string|number}} opts @param {Function} onEvent @param {any} onError */
  constructor(opts, onEvent, onError) {
    super(onError)
    this.filters = opts.filters
    this.since = opts.since
    this.onEvent = onEvent
    this.cursor = new EventCursor()
    // With filters nothing is passed on before the server accepted them: until then
    // the connection still gets every event.
    this.confirmed = !this.filters
  }

  subscribeMessages() {
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
  handle(msg) {
    if (msg.type === 'subscribed') this.confirmed = true
    if (msg.type === 'docker_event' || msg.type === 'system_log') {
      if (this.confirmed && this.cursor.accept(msg)) deliver(this.onEvent, msg)
      return false
    }
    return false
  }

  /** @param {OpenPanelError} err */
  handleError(err) {
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
  onDisconnect(_err) {
    this.confirmed = !this.filters
  }
}
