// Time-series charts on uPlot (vendored): a rolling window, resized with its element.

import uPlot from '../vendor/uplot/uPlot.esm.js'
import { el } from './util.js'

export const WINDOW_SECONDS = 5 * 60
export const COLORS = ['#58a6ff', '#f778ba', '#3fb950', '#d29922']

const clock = v => new Date(v * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })

const axis = (format, space, size) => ({
  stroke: '#8b949e',
  grid: { stroke: 'rgba(139,148,158,0.15)', width: 1 },
  ticks: { stroke: 'rgba(139,148,158,0.25)', width: 1 },
  font: '11px system-ui, sans-serif',
  size,
  space,
  values: (_u, splits) => splits.map(v => format(v))
})

/** A card with a title, a current-value line and a uPlot chart of `series`. */
export class Chart {
  constructor(parent, { title, series, format, min = 0, max }) {
    this.format = format
    this.max = max // a floor for the top of the y axis (e.g. 100 %, a memory limit)
    this.value = el('span', { class: 'chart-value' })
    this.plotEl = el('div', { class: 'chart-plot' })
    this.card = el(
      'figure',
      { class: 'card chart', 'data-samples': '0' },
      el('figcaption', {}, el('span', { class: 'chart-title', text: title }), this.value),
      this.plotEl
    )
    parent.append(this.card)
    this.data = [[], ...series.map(() => [])]
    this.samples = 0
    this.series = series
    const opts = {
      width: 400,
      height: 150,
      legend: { show: true, live: false },
      cursor: { points: { size: 5 }, drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: (_u, lo, hi) => (hi - lo < 10 ? [hi - 60, hi] : [lo, hi]) },
        y: { range: (_u, _lo, hi) => [min, Math.max(this.max ?? 0, hi * 1.1 || 1)] }
      },
      axes: [axis(clock, 70, 32), axis(format, 30, 72)],
      series: [
        { value: (_u, v) => (v == null ? '–' : new Date(v * 1000).toLocaleTimeString()) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color || COLORS[i % COLORS.length],
          fill: `${s.color || COLORS[i % COLORS.length]}1f`,
          width: 1.5,
          points: { show: false },
          value: (_u, v) => (v == null ? '–' : format(v))
        }))
      ]
    }
    this.plot = new uPlot(opts, this.data, this.plotEl)
    this.observer = new ResizeObserver(() => this.resize())
    this.observer.observe(this.plotEl)
  }

  resize() {
    const width = Math.max(200, Math.floor(this.plotEl.clientWidth))
    if (width !== this.plot.width) this.plot.setSize({ width, height: 150 })
  }

  /** Add one sample: `t` in seconds since the epoch, one value per series (null = gap). */
  push(t, values, label) {
    this.data[0].push(t)
    values.forEach((v, i) => {
      this.data[i + 1].push(v)
    })
    const cutoff = t - WINDOW_SECONDS
    let drop = 0
    while (drop < this.data[0].length && this.data[0][drop] < cutoff) drop++
    if (drop) {
      for (const col of this.data) col.splice(0, drop)
    }
    this.plot.setData(this.data)
    this.samples++
    this.card.dataset.samples = String(this.samples)
    this.value.textContent = label ?? values.map(v => (v == null ? '–' : this.format(v))).join(' / ')
  }

  destroy() {
    this.observer.disconnect()
    this.plot.destroy()
    this.card.remove()
  }
}

/** Per-second rate of a monotonically increasing counter; null on the first sample or a reset. */
export class Rate {
  constructor() {
    this.last = null
  }

  next(t, value) {
    if (!Number.isFinite(value)) return null
    const prev = this.last
    this.last = { t, value }
    if (!prev || t <= prev.t || value < prev.value) return null
    return (value - prev.value) / (t - prev.t)
  }
}
