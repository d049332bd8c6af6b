// Live sources shared by the console's views: stats per container (on its host) and the
// /ws/logs feed.

/** One stats subscription per container (on its host), shared by the list and the stats view. */
export class StatsHub {
  constructor(client) {
    this.client = client
    this.entries = new Map() // host + id -> {sub, listeners:Set, last}
  }

  watch(id, onSample, onError, host = undefined) {
    const key = hostKey(host, id)
    let entry = this.entries.get(key)
    if (!entry) {
      entry = { listeners: new Set(), errors: new Set(), last: null }
      entry.sub = this.client.subscribeStats(
        id,
        { interval: 2000, host },
        msg => {
          entry.last = msg
          for (const fn of entry.listeners) fn(msg)
        },
        err => {
          for (const fn of entry.errors) fn(err)
        }
      )
      this.entries.set(key, entry)
    }
    entry.listeners.add(onSample)
    if (onError) entry.errors.add(onError)
    if (entry.last) queueMicrotask(() => onSample(entry.last))
    return () => {
      entry.listeners.delete(onSample)
      if (onError) entry.errors.delete(onError)
      if (!entry.listeners.size) {
        entry.sub.unsubscribe()
        this.entries.delete(key)
      }
    }
  }
}

/** A container's key across hosts: the same id may be on two hosts. */
export const hostKey = (host, id) => `${host ?? ''}\u0000${id}`

/** The /ws/logs feed, subscribed once; views listen and may replay the recent history.
 * host_status lines (a Docker host changed state) are in it too. */
export class Feed {
  constructor(client) {
    this.client = client
    this.history = []
    this.listeners = new Set()
    // Start with what the engine still holds of the last 15 minutes (it keeps 256 events).
    const since = new Date(Date.now() - 15 * 60 * 1000).toISOString()
    const push = msg => {
      this.history.push(msg)
      if (this.history.length > 500) this.history.splice(0, 100)
      for (const fn of this.listeners) fn(msg)
    }
    this.sub = client.subscribeEvents({ since, onHostStatus: push }, push)
  }

  listen(fn, replay = false) {
    if (replay) for (const msg of this.history) fn(msg)
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }
}
