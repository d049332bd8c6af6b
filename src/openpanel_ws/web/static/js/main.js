// Console entry point: token hand-off, routing (deep links), container list, shared feeds.

import { OpenPanelClient } from '/client/openpanel-ws.js'
import { EventsView } from './events.js'
import { Feed, hostKey, StatsHub } from './feeds.js'
import { apiHosts, HostSwitcher } from './hosts.js'
import { LogView } from './logs.js'
import { MetricsView, StatsView } from './stats.js'
import { TerminalView } from './terminal.js'
import { $, debounce, el, formatBytes, formatDuration, formatPercent, toast } from './util.js'

const TOKEN_KEY = 'openpanel-ws.token'
const CONTAINER_VIEWS = ['logs', 'stats', 'terminal']
const LIST_STATS_MAX = 24 // live CPU/memory in the list for at most this many running containers

// --- token hand-off -------------------------------------------------------------------

/** Move a `#token=` fragment into sessionStorage and out of the address bar (and history). */
function takeTokenFromFragment() {
  const hash = location.hash.startsWith('#') ? location.hash.slice(1) : ''
  if (!hash) return
  const params = new URLSearchParams(hash)
  const token = params.get('token')
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token.trim())
    params.delete('token')
  }
  const rest = params.toString()
  history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`)
}

const getToken = () => sessionStorage.getItem(TOKEN_KEY)

/** The containers of one Docker host (null: the gateway's default host). */
async function apiContainers(host = null) {
  const query = host === null ? '' : `?host=${encodeURIComponent(host)}`
  const res = await fetch(`/api/containers${query}`, {
    headers: { Authorization: `Bearer ${getToken()}` },
    cache: 'no-store',
    credentials: 'omit'
  })
  if (res.status === 401) throw Object.assign(new Error((await res.json()).error || 'Invalid token'), { status: 401 })
  if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || `HTTP ${res.status}`)
  return (await res.json()).containers
}

// --- the app --------------------------------------------------------------------------

class Console {
  constructor() {
    this.client = new OpenPanelClient({ getToken: async () => getToken() })
    this.stats = new StatsHub(this.client)
    this.feed = new Feed(this.client)
    this.containers = []
    this.byId = new Map()
    this.listWatches = new Map() // id -> unwatch
    this.live = new Map() // id -> {cpu, mem, limit}
    this.current = null // {kind, name?, tab?, view}
    this.endpointState = {}
    this.host = null // the Docker host shown (null: the gateway's default, or a single host)
    this.hosts = new HostSwitcher(id => this.switchHost(id, true))
    this.refresh = debounce(() => this.loadContainers(), 300)
    this.placeholder = [...$('detail-placeholder').childNodes]

    this.client.addEventListener('state', e => this.onState(e.detail))
    this.client.addEventListener('error', e => {
      const err = e.detail
      if (err?.closeCode === 4001 || err?.code === 'AUTH_FAILED') {
        signOut(err.message)
        return
      }
      // A host that is down is shown by the switcher (and its host_status row), not a toast.
      if (err?.code === 'DOCKER_UNAVAILABLE' && err.host && this.hosts.several()) return
      toast(err?.message || 'Error', 'error')
    })
    this.feed.listen(msg => {
      if (msg.type === 'host_status') {
        this.hosts.update(msg)
        if (msg.host === this.host && msg.state === 'up') this.refresh()
        return
      }
      if (msg.host !== undefined && this.host !== null && msg.host !== this.host) return
      if (msg.type === 'docker_event' && msg.event?.Type === 'container') {
        const action = String(msg.event.Action || '')
        if (!action.startsWith('exec_') && action !== 'top' && action !== 'attach') this.refresh()
      }
    })
    $('show-all').addEventListener('change', () => this.renderList())
    $('container-filter').addEventListener(
      'input',
      debounce(() => this.renderList(), 100)
    )
    this.uptimeTimer = setInterval(() => this.tickUptime(), 1000)
    window.addEventListener('popstate', () => this.route())
    document.addEventListener('click', e => this.onLinkClick(e))
  }

  async start(initial, hosts) {
    this.hosts.set(hosts)
    const wanted = new URLSearchParams(location.search).get('host')
    if (hosts?.length) {
      this.host = wanted && this.hosts.has(wanted) ? wanted : this.hosts.first()
      this.hosts.choose(this.host)
      if (initial?.some(c => c.host !== undefined && c.host !== this.host)) initial = null
      if (initial?.length === 0 && wanted && wanted !== this.host) initial = null
    }
    if (initial) this.setContainers(initial)
    else await this.loadContainers().catch(err => toast(`Cannot list containers: ${err.message}`, 'error'))
    this.route()
  }

  onState({ endpoint, state }) {
    this.endpointState[endpoint] = state
    const node = $('conn')
    node.replaceChildren(
      ...Object.entries(this.endpointState).map(([name, st]) =>
        el('span', { class: `dot dot-${st}`, title: `/ws/${name}: ${st}`, text: name })
      )
    )
  }

  // Containers ---------------------------------------------------------------------

  /** Show the containers of another Docker host (`push`: a new history entry). */
  async switchHost(id, push) {
    if (id === this.host) return
    this.host = id
    this.hosts.choose(id)
    this.teardown()
    this.current = null
    if (push) history.pushState(null, '', `/?host=${encodeURIComponent(id)}`)
    this.setContainers([])
    await this.loadContainers().catch(err => toast(`Cannot list containers of ${id}: ${err.message}`, 'error'))
    this.route()
  }

  /** The query of a link on the current host (`host=ID&` when there are several). */
  hostQuery() {
    return this.host === null || !this.hosts.several() ? '' : `host=${encodeURIComponent(this.host)}&`
  }

  async loadContainers() {
    const host = this.host
    const list = await apiContainers(host).catch(err => {
      if (err.status === 401) signOut(err.message)
      throw err
    })
    if (host === this.host) this.setContainers(list) // not a late answer about another host
  }

  setContainers(list) {
    this.containers = list
    this.byId = new Map(list.map(c => [c.id, c]))
    this.renderList()
    this.syncListStats()
    if (this.current?.kind === 'container') {
      if (this.current.id) this.renderDetailHead()
      else if (this.find(this.current.name)) {
        this.current = null
        this.route()
      } // deep link, now listed
    }
  }

  find(ref) {
    if (!ref) return null
    return (
      this.containers.find(c => c.name === ref) ||
      this.containers.find(c => c.id === ref) ||
      this.containers.find(c => c.id.startsWith(ref)) ||
      null
    )
  }

  syncListStats() {
    const running = this.containers.filter(c => c.state === 'running').slice(0, LIST_STATS_MAX)
    const want = new Set(running.map(c => hostKey(c.host, c.id)))
    for (const [key, unwatch] of this.listWatches) {
      if (!want.has(key)) {
        unwatch()
        this.listWatches.delete(key)
        this.live.delete(key)
      }
    }
    // Stagger new subscriptions: the containers endpoint allows 10 messages/s.
    let delay = 0
    for (const c of running) {
      const key = hostKey(c.host, c.id)
      if (this.listWatches.has(key)) continue
      this.listWatches.set(key, () => {}) // placeholder until subscribed
      setTimeout(() => {
        if (!this.listWatches.has(key)) return
        this.listWatches.set(
          key,
          this.stats.watch(c.id, msg => this.onListSample(c, msg), undefined, c.host)
        )
      }, delay)
      delay += 150
    }
  }

  onListSample(c, msg) {
    const s = msg.stats || {}
    const key = hostKey(c.host, c.id)
    this.live.set(key, { cpu: s.cpu?.percent, mem: s.memory?.usage, limit: s.memory?.limit })
    const row = document.querySelector(`[data-container-id="${CSS.escape(c.id)}"]`)
    if (row && c.host === this.host) fillLive(row, this.live.get(key))
  }

  renderList() {
    const showAll = $('show-all').checked
    const q = $('container-filter').value.trim().toLowerCase()
    const shown = this.containers.filter(
      c =>
        (showAll || c.state === 'running') &&
        (!q || c.name.toLowerCase().includes(q) || c.image.toLowerCase().includes(q))
    )
    const running = this.containers.filter(c => c.state === 'running').length
    $('container-count').textContent = `${running}/${this.containers.length}`
    const tab = this.current?.tab || 'logs'
    $('container-list').replaceChildren(
      ...shown.map(c => {
        const selected = this.current?.kind === 'container' && this.current.id === c.id
        const link = el(
          'a',
          {
            class: `crow${selected ? ' selected' : ''}`,
            role: 'listitem',
            href: `/?${this.hostQuery()}container=${encodeURIComponent(c.name)}&view=${tab}`,
            'data-container-id': c.id,
            'data-name': c.name,
            'aria-current': selected ? 'page' : null
          },
          el(
            'div',
            { class: 'crow-main' },
            el('span', { class: `state-dot st-${c.state}`, title: c.state }),
            el('span', { class: 'crow-name', text: c.name }),
            el('span', { class: 'crow-uptime muted small', 'data-started': c.startedAt || '', text: uptimeText(c) })
          ),
          el(
            'div',
            { class: 'crow-sub' },
            el('span', { class: 'crow-image muted small', text: c.image }),
            el(
              'span',
              { class: 'crow-live small' },
              el('span', { class: 'cpu', text: '' }),
              el('span', { class: 'mem', text: '' })
            )
          )
        )
        link.dataset.state = c.state
        if (this.live.has(hostKey(c.host, c.id))) fillLive(link, this.live.get(hostKey(c.host, c.id)))
        return link
      })
    )
    $('container-empty').hidden = this.containers.length !== 0
  }

  tickUptime() {
    for (const node of document.querySelectorAll('.crow-uptime')) {
      const c = this.byId.get(node.closest('[data-container-id]')?.dataset.containerId)
      if (c) node.textContent = uptimeText(c)
    }
  }

  // Routing --------------------------------------------------------------------------

  onLinkClick(e) {
    const a = e.target.closest('a[href]')
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return
    const url = new URL(a.href, location.href)
    if (url.origin !== location.origin || url.pathname !== '/') return
    e.preventDefault()
    if (url.search !== location.search) history.pushState(null, '', url.pathname + url.search)
    this.route()
  }

  route() {
    const params = new URLSearchParams(location.search)
    const view = params.get('view')
    const name = params.get('container')
    const host = params.get('host')
    if (host && host !== this.host && this.hosts.has(host)) {
      this.switchHost(host, false)
      return
    }
    if (view === 'metrics' || view === 'events') return this.show({ kind: view })
    if (name) {
      const tab = CONTAINER_VIEWS.includes(view) ? view : 'logs'
      return this.show({ kind: 'container', name, tab })
    }
    return this.show({ kind: 'containers' })
  }

  show(target) {
    const c = target.kind === 'container' ? this.find(target.name) : null
    const key = target.kind === 'container' ? `container:${c?.id ?? target.name}:${target.tab}` : target.kind
    if (this.current?.key === key) return
    this.teardown()
    this.current = { ...target, key, id: c?.id }
    const isContainers = target.kind === 'container' || target.kind === 'containers'
    $('view-containers').hidden = !isContainers
    $('view-metrics').hidden = target.kind !== 'metrics'
    $('view-events').hidden = target.kind !== 'events'
    $('view-containers').classList.toggle('has-detail', target.kind === 'container')
    for (const a of document.querySelectorAll('[data-nav]')) {
      const active = a.dataset.nav === (isContainers ? 'containers' : target.kind)
      if (active) a.setAttribute('aria-current', 'page')
      else a.removeAttribute('aria-current')
    }
    if (target.kind === 'metrics') {
      this.viewObj = new MetricsView($('view-metrics'), { client: this.client })
      document.title = 'Host metrics · openpanel-ws'
    } else if (target.kind === 'events') {
      this.viewObj = new EventsView($('view-events'), { feed: this.feed })
      document.title = 'Events · openpanel-ws'
    } else if (target.kind === 'container') {
      this.showContainer(c, target)
    } else {
      $('detail-placeholder').replaceChildren(...this.placeholder)
      $('detail-placeholder').hidden = false
      $('detail-body').hidden = true
      document.title = 'openpanel-ws console'
    }
    this.renderList()
  }

  showContainer(c, target) {
    $('detail-placeholder').hidden = !!c
    $('detail-body').hidden = !c
    if (!c) {
      $('detail-placeholder').replaceChildren(
        el('p', { class: 'error', text: `No container named “${target.name}” is visible to this token.` })
      )
      return
    }
    document.title = `${c.name} · ${target.tab} · openpanel-ws`
    this.renderDetailHead()
    for (const tab of CONTAINER_VIEWS) $(`panel-${tab}`).hidden = tab !== target.tab
    const panel = $(`panel-${target.tab}`)
    const View = { logs: LogView, stats: StatsView, terminal: TerminalView }[target.tab]
    this.viewObj = new View(panel, { client: this.client, hub: this.stats, container: c })
  }

  renderDetailHead() {
    const c = this.byId.get(this.current?.id)
    if (!c) return
    $('detail-name').textContent = c.name
    $('detail-name').title = c.host ? `on host ${c.host}` : ''
    const badge = $('detail-state')
    badge.textContent = c.state + (c.exitCode !== null && c.state !== 'running' ? ` (${c.exitCode})` : '')
    badge.dataset.kind = c.state === 'running' ? 'ok' : c.state === 'exited' ? 'idle' : 'pending'
    $('detail-image').textContent = c.image
    for (const a of document.querySelectorAll('[data-tab]')) {
      a.href = `/?${this.hostQuery()}container=${encodeURIComponent(c.name)}&view=${a.dataset.tab}`
      if (a.dataset.tab === this.current.tab) a.setAttribute('aria-current', 'page')
      else a.removeAttribute('aria-current')
    }
  }

  teardown() {
    this.viewObj?.destroy()
    this.viewObj = null
  }
}

function uptimeText(c) {
  if (c.state === 'running' && c.startedAt) return `up ${formatDuration((Date.now() - Date.parse(c.startedAt)) / 1000)}`
  if (c.state === 'exited' && c.exitCode !== null) return `exited (${c.exitCode})`
  return c.state
}

function fillLive(row, live) {
  row.querySelector('.cpu').textContent = `CPU ${formatPercent(live.cpu)}`
  row.querySelector('.mem').textContent = `MEM ${formatBytes(live.mem, 0)}`
}

// --- boot -----------------------------------------------------------------------------

function showLogin(message) {
  $('app').hidden = true
  document.querySelector('.topnav').hidden = true
  $('logout').hidden = true
  $('conn').hidden = true
  $('login').hidden = false
  const err = $('login-error')
  err.hidden = !message
  err.textContent = message || ''
  $('token-input').focus()
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY)
  // A full reload drops every socket and subscription of the old token.
  if (message) sessionStorage.setItem(`${TOKEN_KEY}.message`, message)
  location.reload()
}

async function boot() {
  takeTokenFromFragment()
  $('login-form').addEventListener('submit', e => {
    e.preventDefault()
    const token = $('token-input').value.trim()
    if (!token) return
    sessionStorage.setItem(TOKEN_KEY, token)
    location.reload()
  })
  $('logout').addEventListener('click', () => signOut())
  const message = sessionStorage.getItem(`${TOKEN_KEY}.message`)
  sessionStorage.removeItem(`${TOKEN_KEY}.message`)
  if (!getToken()) {
    showLogin(message)
    return
  }
  // Check the token once over HTTP before opening any socket with it.
  let initial = null
  let hosts = null
  const wanted = new URLSearchParams(location.search).get('host')
  try {
    initial = await apiContainers(wanted)
  } catch (err) {
    if (err.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY)
      showLogin(`Token refused: ${err.message}`)
      return
    }
    toast(`Cannot list containers: ${err.message}`, 'error')
  }
  try {
    hosts = await apiHosts(getToken())
  } catch (err) {
    toast(`Cannot list hosts: ${err.message}`, 'error')
  }
  $('login').hidden = true
  $('app').hidden = false
  document.querySelector('.topnav').hidden = false
  $('logout').hidden = false
  $('conn').hidden = false
  const app = new Console()
  window.openpanelConsole = app // for debugging from the devtools console
  app.start(initial, hosts)
}

boot()
