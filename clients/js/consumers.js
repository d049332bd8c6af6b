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
 * @param {any} msg @param {Target} target */
function subscriptionEnded(msg, target) {
  return new OpenPanelError('SUBSCRIPTION_ENDED', msg.message || msg.reason || 'subscription ended', {
    containerId: target.containerId,
    host: target.host,
    raw: msg
  })
}

/**
 * A container on a Docker host: what a logs or stats consumer is keyed by, so the same
 * name on two hosts is two subscriptions (docs/protocol.md "Addressing"). Without a
 * host named, the host is learned from the server's first answer about the container
 * and kept, so a resume asks the same host.
 */
export class Target {
  /** @param {string} containerId @param {string|undefined|null} host */
  constructor(containerId, host) {
    this.containerId = containerId
    /** @type {string|undefined} */
    this.host = host ?? undefined
  }

  /** `containerId` (and `host` once known) of a request about this target. */
  fields() {
    /** @type {{containerId: string, host?: string}} */
    const msg = { containerId: this.containerId }
    if (this.host !== undefined) msg.host = this.host
    return msg
  }

  /** The message is about this target (a gateway of one host names none). @param {any} msg */
  owns(msg) {
    if (msg.containerId !== this.containerId) return false
    if (typeof msg.host !== 'string') return true
    if (this.host === undefined) this.host = msg.host
    return msg.host === this.host
  }

  /** An error about this container on this host (one without `host`: any host). @param {OpenPanelError} err */
  namedBy(err) {
    if (err.containerId !== this.containerId) return false
    return err.host === undefined || this.host === undefined || err.host === this.host
  }
}

export class LogsConsumer extends Consumer {
  /** @param {string} containerId @param {{tail?: number|'all', since?: string|number, host?: string}} opts @param {Function} onLine @param {any} onError */
  constructor(containerId, opts, onLine, onError) {
    super(onError)
    this.containerId = containerId
    this.target = new Target(containerId, opts.host)
    this.tail = opts.tail
    this.since = opts.since
    this.onLine = onLine
    this.cursor = new LogCursor()
    this.confirmed = false // the server answered our subscribe (ack or a line)
  }

  subscribeMessages() {
    /** @type {any} */
    const msg = { type: 'subscribe_logs', ...this.target.fields() }
    if (this.tail !== undefined && this.tail !== null) msg.tail = this.tail
    if (this.since !== undefined && this.since !== null) msg.since = this.since
    Object.assign(msg, this.cursor.resume())
    return [msg]
  }

  unsubscribeMessages() {
    return [{ type: 'unsubscribe_logs', ...this.target.fields() }]
  }

  /** @param {any} msg */
  handle(msg) {
    if (!this.target.owns(msg)) return false
    if (msg.type === 'log' || msg.type === 'subscribed_logs') this.confirmed = true
    if (msg.type === 'log') {
      if (this.cursor.accept(msg.timestamp, msg.stream, msg.data)) {
        /** @type {any} */
        const line = { containerId: msg.containerId, timestamp: msg.timestamp, stream: msg.stream, data: msg.data }
        if (typeof msg.host === 'string') line.host = msg.host
        deliver(this.onLine, line)
      }
      return false // another consumer of the same container may want it too
    }
    if (msg.type === 'subscription_ended' && (msg.subscription || 'logs') === 'logs') {
      this.fail(subscriptionEnded(msg, this.target))
      return false
    }
    return msg.type === 'subscribed_logs' || msg.type === 'unsubscribed_logs'
  }

  /** @param {OpenPanelError} err */
  handleError(err) {
    if (refuses(err, this.confirmed, ['tail', 'since', 'host'])) {
      this.fail(err)
      return true
    }
    if (!this.target.namedBy(err)) return false
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
  /** @param {string} containerId @param {{interval?: number, host?: string}} opts @param {Function} onStats @param {any} onError */
  constructor(containerId, opts, onStats, onError) {
    super(onError)
    this.containerId = containerId
    this.target = new Target(containerId, opts.host)
    this.interval = opts.interval
    this.onStats = onStats
    this.confirmed = false
  }

  subscribeMessages() {
    /** @type {any} */
    const msg = { type: 'subscribe_stats', ...this.target.fields() }
    if (this.interval !== undefined && this.interval !== null) msg.interval = this.interval
    return [msg]
  }

  unsubscribeMessages() {
    return [{ type: 'unsubscribe_stats', ...this.target.fields() }]
  }

  /** @param {any} msg */
  handle(msg) {
    if (!this.target.owns(msg)) return false
    if (msg.type === 'stats' || msg.type === 'subscribed_stats') this.confirmed = true
    if (msg.type === 'stats') {
      deliver(this.onStats, msg)
      return false
    }
    if (msg.type === 'subscription_ended' && (msg.subscription || 'stats') === 'stats') {
      this.fail(subscriptionEnded(msg, this.target))
      return false
    }
    return msg.type === 'subscribed_stats' || msg.type === 'unsubscribed_stats'
  }

  /** @param {OpenPanelError} err */
  handleError(err) {
    if (refuses(err, this.confirmed, ['interval', 'host'])) {
      this.fail(err)
      return true
    }
    if (!this.target.namedBy(err)) return false
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
  /** @param {{interval?: number, host?: string}} opts @param {Function} onMetrics @param {any} onError */
  constructor(opts, onMetrics, onError) {
    super(onError)
    this.interval = opts.interval
    /** the machine of this Docker host (a remote host is refused) */
    this.host = opts.host
    this.onMetrics = onMetrics
    this.confirmed = false
  }

  subscribeMessages() {
    /** @type {any} */
    const msg = { type: 'subscribe' }
    if (this.interval !== undefined && this.interval !== null) msg.interval = this.interval
    if (this.host !== undefined && this.host !== null) msg.host = this.host
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
    if (refuses(err, this.confirmed, ['interval', 'host'])) {
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
  /** @param {{filters?: object, since?: string|number, onHostStatus?: Function}} opts @param {Function} onEvent @param {any} onError */
  constructor(opts, onEvent, onError) {
    super(onError)
    this.onHostStatus = opts.onHostStatus
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
    // A Docker host changed state (docs/protocol.md "The `host` field"), if asked for.
    if (msg.type === 'host_status' && this.onHostStatus) deliver(this.onHostStatus, msg)
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

/** `host_status` of `/ws/logs`: a Docker host changed state (docs/protocol.md "The `host` field"). */
export class HostStatusConsumer extends Consumer {
  /** @param {Function} onStatus @param {any} onError */
  constructor(onStatus, onError) {
    super(onError)
    this.onStatus = onStatus
  }

  /** @param {any} msg */
  handle(msg) {
    if (msg.type === 'host_status') deliver(this.onStatus, msg)
    return false
  }
}
