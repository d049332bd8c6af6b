// Stats view (one container) and host metrics view: uPlot charts fed by the JS client.

import { Chart, Rate } from './charts.js'
import { el, formatBytes, formatPercent, formatRate } from './util.js'

const seconds = iso => {
  const t = Date.parse(iso)
  return (Number.isNaN(t) ? Date.now() : t) / 1000
}

export class StatsView {
  constructor(panel, { hub, container }) {
    this.panel = panel
    this.container = container
    const running = container.state === 'running'
    this.note = el('p', {
      class: 'muted small',
      text: running
        ? 'Waiting for the first sample…'
        : `The container is ${container.state}: the engine sends stats while it runs.`
    })
    const grid = el('div', { class: 'charts' })
    panel.replaceChildren(this.note, grid)
    this.cpu = new Chart(grid, { title: 'CPU', series: [{ label: 'CPU %' }], format: formatPercent, max: 1 })
    this.mem = new Chart(grid, {
      title: 'Memory',
      series: [{ label: 'used' }],
      format: v => formatBytes(v, 0),
      max: 1024 * 1024
    })
    this.net = new Chart(grid, {
      title: 'Network',
      series: [{ label: 'rx' }, { label: 'tx' }],
      format: formatRate,
      max: 1024
    })
    this.blk = new Chart(grid, {
      title: 'Block I/O',
      series: [{ label: 'read' }, { label: 'write' }],
      format: formatRate,
      max: 1024
    })
    this.rates = { rx: new Rate(), tx: new Rate(), rd: new Rate(), wr: new Rate() }
    this.unwatch = hub.watch(
      container.id,
      msg => this.sample(msg),
      err => {
        this.note.textContent = `Stats unavailable: ${err.message}`
      },
      container.host
    )
  }

  sample(msg) {
    const s = msg.stats || {}
    const t = seconds(msg.timestamp)
    const mem = s.memory || {}
    const net = s.network || {}
    const blk = s.blkio || {}
    const r = this.rates
    this.note.textContent = `Every 2 s · last ${new Date(t * 1000).toLocaleTimeString()}`
    this.cpu.push(t, [s.cpu?.percent ?? null])
    const limit = mem.limit && mem.limit < 2 ** 60 ? mem.limit : null
    this.mem.push(
      t,
      [mem.usage ?? null],
      `${formatBytes(mem.usage)}${limit ? ` of ${formatBytes(limit, 0)} (${formatPercent(mem.percent)})` : ''}`
    )
    const rx = r.rx.next(t, net.rx_bytes)
    const tx = r.tx.next(t, net.tx_bytes)
    const rd = r.rd.next(t, blk.read_bytes)
    const wr = r.wr.next(t, blk.write_bytes)
    this.net.push(t, [rx, tx], `↓ ${formatRate(rx)}  ↑ ${formatRate(tx)}`)
    this.blk.push(t, [rd, wr], `read ${formatRate(rd)}  write ${formatRate(wr)}`)
    this.panel.dataset.samples = String(this.cpu.samples)
  }

  destroy() {
    this.unwatch()
    for (const c of [this.cpu, this.mem, this.net, this.blk]) c.destroy()
    this.panel.replaceChildren()
  }
}

export class MetricsView {
  constructor(panel, { client }) {
    this.panel = panel
    this.tiles = el('div', { class: 'tiles' })
    const grid = el('div', { class: 'charts' })
    this.note = el('p', { class: 'muted small', text: 'Waiting for the first sample…' })
    panel.replaceChildren(el('h2', { class: 'view-title', text: 'Host metrics' }), this.note, this.tiles, grid)
    this.cpu = new Chart(grid, { title: 'CPU', series: [{ label: 'CPU %' }], format: formatPercent, max: 100 })
    this.mem = new Chart(grid, { title: 'Memory', series: [{ label: 'used' }], format: v => formatBytes(v, 0) })
    this.disk = new Chart(grid, { title: 'Disk', series: [{ label: 'used %' }], format: formatPercent, max: 100 })
    this.net = new Chart(grid, {
      title: 'Network',
      series: [{ label: 'rx' }, { label: 'tx' }],
      format: formatRate,
      max: 1024
    })
    this.rx = new Rate()
    this.tx = new Rate()
    this.sub = client.subscribeMetrics(
      { interval: 2000 },
      msg => this.sample(msg),
      err => {
        this.note.textContent = `Metrics unavailable: ${err.message}`
      }
    )
  }

  sample(msg) {
    const sys = msg.system || {}
    const t = seconds(msg.timestamp)
    const cpu = sys.cpu || {}
    const mem = sys.memory || {}
    const disk = sys.disk || {}
    const net = sys.network || {}
    this.note.textContent = `Sampled every 2 s · last ${new Date(t * 1000).toLocaleTimeString()}`
    const rx = this.rx.next(t, net.rx_bytes)
    const tx = this.tx.next(t, net.tx_bytes)
    this.cpu.push(t, [cpu.usage ?? null], `${formatPercent(cpu.usage)} of ${cpu.cores ?? '?'} cores`)
    this.mem.max = mem.total
    this.mem.push(
      t,
      [mem.used ?? null],
      `${formatBytes(mem.used)} of ${formatBytes(mem.total, 0)} (${formatPercent(mem.percent)})`
    )
    this.disk.push(
      t,
      [disk.percent ?? null],
      `${formatBytes(disk.used)} of ${formatBytes(disk.total, 0)} (${formatPercent(disk.percent)})`
    )
    this.net.push(t, [rx, tx], `↓ ${formatRate(rx)}  ↑ ${formatRate(tx)}`)
    this.tiles.replaceChildren(
      tile('CPU', formatPercent(cpu.usage), `${cpu.cores ?? '?'} cores`),
      tile('Memory', formatPercent(mem.percent), `${formatBytes(mem.used)} / ${formatBytes(mem.total, 0)}`),
      tile('Disk', formatPercent(disk.percent), `${formatBytes(disk.free)} free`),
      tile('Network', `↓ ${formatRate(rx)}`, `↑ ${formatRate(tx)}`)
    )
    this.panel.dataset.samples = String(this.cpu.samples)
  }

  destroy() {
    this.sub?.unsubscribe()
    for (const c of [this.cpu, this.mem, this.disk, this.net]) c.destroy()
    this.panel.replaceChildren()
  }
}

function tile(label, value, sub) {
  return el(
    'div',
    { class: 'card tile' },
    el('div', { class: 'tile-label', text: label }),
    el('div', { class: 'tile-value', text: value }),
    el('div', { class: 'tile-sub muted', text: sub })
  )
}
