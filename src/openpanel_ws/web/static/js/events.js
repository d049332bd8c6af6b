// Events view: the live /ws/logs feed (docker_event + system_log, and host_status: a
// Docker host changed state), filtered in the page; the host column names each line's host.

import { debounce, el, formatClock } from './util.js'

const MAX_ROWS = 2000
const TYPES = ['container', 'image', 'network', 'volume', 'daemon', 'plugin']
const LEVELS = ['debug', 'info', 'warning', 'error']

/** One feed entry -> a flat, searchable row description. */
export function describe(msg) {
  const host = typeof msg.host === 'string' ? msg.host : ''
  if (msg.type === 'host_status') {
    const level = msg.state === 'down' ? 'error' : msg.state === 'up' ? 'info' : 'warning'
    return {
      kind: 'log',
      host,
      time: msg.timestamp,
      type: 'host',
      action: String(msg.state),
      level,
      name: host,
      text: String(msg.error ?? '')
    }
  }
  if (msg.type === 'system_log') {
    return {
      kind: 'log',
      host,
      time: msg.timestamp,
      type: msg.source || 'system',
      action: msg.level || 'info',
      level: msg.level || 'info',
      name: '',
      text: String(msg.message ?? '')
    }
  }
  const e = msg.event || {}
  const attrs = e.Actor?.Attributes || {}
  const id = String(e.Actor?.ID || e.id || '')
  const name = attrs.name || (id.length > 20 ? id.slice(0, 12) : id)
  const extra = []
  if (attrs.image && e.Type === 'container') extra.push(attrs.image)
  if (attrs.exitCode !== undefined) extra.push(`exit ${attrs.exitCode}`)
  if (attrs.signal !== undefined) extra.push(`signal ${attrs.signal}`)
  return {
    kind: 'event',
    host,
    time: msg.timestamp,
    type: String(e.Type || '?'),
    action: String(e.Action || e.status || ''),
    level: null,
    name: String(name),
    text: extra.join(' · ')
  }
}

export class EventsView {
  constructor(panel, { feed }) {
    this.panel = panel
    this.entries = []
    this.paused = false
    this.kind = el(
      'select',
      { class: 'input', 'aria-label': 'Kind' },
      el('option', { value: 'all', text: 'events + system logs' }),
      el('option', { value: 'event', text: 'docker events' }),
      el('option', { value: 'log', text: 'system logs' })
    )
    this.type = el(
      'select',
      { class: 'input', 'aria-label': 'Event type' },
      el('option', { value: '', text: 'any type' }),
      ...TYPES.map(t => el('option', { value: t, text: t }))
    )
    this.level = el(
      'select',
      { class: 'input', 'aria-label': 'Minimum level' },
      el('option', { value: '', text: 'any level' }),
      ...LEVELS.map(l => el('option', { value: l, text: `${l}+` }))
    )
    this.search = el('input', {
      type: 'search',
      class: 'input',
      placeholder: 'Filter: name, action, text',
      'aria-label': 'Filter events'
    })
    this.hideExec = el('input', { type: 'checkbox', checked: true, id: 'events-hide-exec' })
    this.pauseBtn = el('button', {
      type: 'button',
      class: 'btn',
      text: 'Pause',
      'aria-pressed': 'false',
      onclick: () => this.setPaused(!this.paused)
    })
    this.clearBtn = el('button', {
      type: 'button',
      class: 'btn',
      text: 'Clear',
      onclick: () => {
        this.entries = []
        this.redraw()
      }
    })
    this.body = el('tbody')
    this.count = el('span', { class: 'muted small' })
    this.empty = el('p', {
      class: 'muted empty-note',
      text: 'No events yet: start, stop or create a container to see some.'
    })
    const table = el(
      'table',
      { class: 'events' },
      el(
        'colgroup',
        {},
        el('col', { class: 'c-time' }),
        el('col', { class: 'c-type' }),
        el('col', { class: 'c-action' }),
        el('col', { class: 'c-name' }),
        el('col', { class: 'c-text' })
      ),
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          el('th', { text: 'time', scope: 'col' }),
          el('th', { text: 'host', scope: 'col' }),
          el('th', { text: 'type', scope: 'col' }),
          el('th', { text: 'action', scope: 'col' }),
          el('th', { text: 'name', scope: 'col' }),
          el('th', { text: 'details', scope: 'col' })
        )
      ),
      this.body
    )
    panel.replaceChildren(
      el('h2', { class: 'view-title', text: 'Events' }),
      el(
        'div',
        { class: 'toolbar', role: 'toolbar', 'aria-label': 'Event filters' },
        el('div', { class: 'group grow' }, this.search),
        this.kind,
        this.type,
        this.level,
        el(
          'label',
          { class: 'check', for: 'events-hide-exec', title: 'exec_create, exec_start, exec_die' },
          this.hideExec,
          ' hide exec'
        ),
        this.pauseBtn,
        this.clearBtn,
        this.count
      ),
      el(
        'div',
        { class: 'table-wrap', tabindex: '0', role: 'log', 'aria-live': 'off', 'aria-label': 'Live events' },
        table,
        this.empty
      )
    )
    const redraw = () => this.redraw()
    for (const c of [this.kind, this.type, this.level, this.hideExec]) c.addEventListener('change', redraw)
    this.search.addEventListener('input', debounce(redraw, 120))
    this.unlisten = feed.listen(msg => this.add(msg), true)
    this.redraw()
  }

  setPaused(paused) {
    this.paused = paused
    this.pauseBtn.textContent = paused ? 'Resume' : 'Pause'
    this.pauseBtn.setAttribute('aria-pressed', String(paused))
    if (!paused) this.redraw()
  }

  add(msg) {
    this.entries.push(describe(msg))
    if (this.entries.length > MAX_ROWS) this.entries.splice(0, this.entries.length - MAX_ROWS)
    if (this.paused) return
    const d = this.entries[this.entries.length - 1]
    if (this.passes(d)) {
      this.body.prepend(row(d))
      while (this.body.childElementCount > MAX_ROWS) this.body.lastElementChild.remove()
    }
    this.updateCount()
  }

  passes(d) {
    const kind = this.kind.value
    if (kind !== 'all' && d.kind !== kind) return false
    if (this.type.value && (d.kind !== 'event' || d.type !== this.type.value)) return false
    if (this.level.value) {
      if (d.kind !== 'log') return false
      if (LEVELS.indexOf(d.level) < LEVELS.indexOf(this.level.value)) return false
    }
    if (this.hideExec.checked && d.kind === 'event' && d.action.startsWith('exec_')) return false
    const q = this.search.value.trim().toLowerCase()
    if (q && !`${d.host} ${d.type} ${d.action} ${d.name} ${d.text}`.toLowerCase().includes(q)) return false
    return true
  }

  redraw() {
    const rows = this.entries
      .filter(d => this.passes(d))
      .reverse()
      .map(row)
    this.body.replaceChildren(...rows)
    this.updateCount()
  }

  updateCount() {
    this.empty.hidden = this.body.childElementCount > 0
    this.count.textContent = `${this.body.childElementCount} shown · ${this.entries.length} received`
    this.panel.dataset.entries = String(this.entries.length)
  }

  destroy() {
    this.unlisten()
    this.panel.replaceChildren()
  }
}

function row(d) {
  return el(
    'tr',
    { class: `ev ev-${d.kind} lvl-${d.level || 'none'}` },
    el('td', { class: 'mono nowrap', text: formatClock(d.time), title: d.time }),
    el('td', { class: 'mono nowrap ev-host', text: d.host }),
    el('td', {}, el('span', { class: `badge t-${d.type}`, text: d.type })),
    el('td', { class: 'clip', text: d.action, title: d.action }),
    el('td', { class: 'mono', text: d.name }),
    el('td', { class: 'wrap', text: d.text })
  )
}
