// Docker hosts of the gateway: the host switcher, fed by GET /api/hosts and kept current
// by the host_status lines of /ws/logs (docs/protocol.md "Hosts").

import { $, el } from './util.js'

/** GET /api/hosts, or null when the gateway has no such route (one host, older gateway). */
export async function apiHosts(token) {
  const res = await fetch('/api/hosts', {
    headers: { Authorization: `Bearer ${token}` },
    cache: 'no-store',
    credentials: 'omit'
  })
  if (res.status === 404) return null
  if (res.status === 401) throw Object.assign(new Error((await res.json()).error || 'Invalid token'), { status: 401 })
  if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || `HTTP ${res.status}`)
  const body = await res.json()
  return Array.isArray(body) ? body : (body.hosts ?? [])
}

/** One line for a host's state: "up", "down: connection refused", ... */
export function hostStateText(host) {
  return host.state === 'down' && host.error ? `down: ${host.error}` : String(host.state || 'unknown')
}

/**
 * The host picker: a <select> whose options show each host's state, the state dot of
 * the selected one, and its error. `onChange(id)` when the user picks another host.
 */
export class HostSwitcher {
  constructor(onChange) {
    this.hosts = new Map() // id -> {id, state, error, ...}
    this.selected = null
    this.node = $('host-switcher')
    this.select = $('host-select')
    this.dot = $('host-state')
    this.note = $('host-error')
    this.select.addEventListener('change', () => onChange(this.select.value))
  }

  /** The rows of GET /api/hosts (null: no hosts route). With one host the switcher
   * stays hidden: the page is the one of a gateway of one host. */
  set(rows) {
    this.hosts = new Map((rows || []).map(h => [h.id, { ...h }]))
    this.render()
  }

  several() {
    return this.hosts.size > 1
  }

  has(id) {
    return this.hosts.has(id)
  }

  first() {
    return this.hosts.keys().next().value ?? null
  }

  /** Make `id` the selected host (no onChange). */
  choose(id) {
    this.selected = id
    this.render()
  }

  /** A host_status message: the host's new state (and error). */
  update(msg) {
    const host = this.hosts.get(msg.host) || { id: msg.host }
    host.state = msg.state
    host.error = msg.error ?? null
    this.hosts.set(msg.host, host)
    this.render()
  }

  render() {
    this.node.hidden = !this.several()
    const options = [...this.hosts.values()].map(h =>
      el('option', {
        value: h.id,
        text: `${h.id} — ${h.state || 'unknown'}`,
        'data-state': h.state || 'unknown',
        selected: h.id === this.selected ? '' : null
      })
    )
    this.select.replaceChildren(...options)
    if (this.selected !== null) this.select.value = this.selected
    const h = this.hosts.get(this.selected)
    const state = h?.state || 'unknown'
    this.dot.className = `dot host-dot host-${state}`
    this.dot.textContent = state
    this.dot.title = h ? hostStateText(h) : ''
    this.node.dataset.state = state
    this.note.hidden = !(h && h.state === 'down' && h.error)
    this.note.textContent = h?.error || ''
  }
}
