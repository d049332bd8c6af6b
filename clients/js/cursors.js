// cursors.js: where a logs or events subscription stands, so that a resumed one shows
// no gap and no duplicate.

import { parseTimestampNanos, rfc3339FromNanos } from './pure.js'

/**
 * Where a logs subscription stands, so a resumed one shows no gap and no duplicate.
 * The engine's `since` is inclusive and may be rounded, so a resume asks for a little
 * before the last line seen and drops what was already shown: every line older than
 * the last timestamp, and at that very timestamp the lines already delivered
 * (counted: two identical lines may share a timestamp).
 */
export class LogCursor {
  static RESUME_OVERLAP_NS = 1000000000n

  constructor() {
    /** @type {bigint|null} */
    this.lastNs = null
    /** @type {Map<string, number>} */
    this.atLast = new Map()
    /** @type {Map<string, number>} */
    this.replay = new Map()
    this.dropped = 0
  }

  /** True when the line is new and should be shown. @param {string} timestamp @param {string} stream @param {string} data */
  accept(timestamp, stream, data) {
    const ns = parseTimestampNanos(timestamp)
    if (ns === null) return true // no usable time: cannot be a replay we asked for
    const key = `${stream}\u0000${data}`
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
  resume() {
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

  constructor() {
    /** @type {bigint|null} */
    this.newestNs = null
    /** @type {Map<string, bigint>} identity -> time, for the last MEMORY_NS */
    this.seen = new Map()
    this.dropped = 0
  }

  /** The identity of a message: the same event of two hosts is two events.
   * @param {any} msg a `docker_event` or `system_log` message */
  static key(msg) {
    const host = msg.host ?? ''
    if (msg.type === 'docker_event') {
      const e = msg.event || {}
      return ['e', host, e.timeNano ?? e.time ?? msg.timestamp, e.Type, e.Action, e.Actor?.ID, e.id].join('\u0000')
    }
    return ['s', host, msg.timestamp, msg.source, msg.level, msg.message].join('\u0000')
  }

  /** True when the message is new. @param {any} msg */
  accept(msg) {
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
  resumeSince() {
    if (this.newestNs === null) return undefined
    const since = this.newestNs - EventCursor.RESUME_MARGIN_NS
    return rfc3339FromNanos(since < 0n ? 0n : since)
  }
}
