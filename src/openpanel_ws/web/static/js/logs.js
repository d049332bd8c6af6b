// Logs view: a capped ring of lines, a virtualised DOM (only the rows on screen exist),
// rendering batched once per animation frame, so a container printing thousands of lines
// per second costs one small DOM update per frame. Every byte is text (textContent).

import { parseAnsi, stripAnsi } from './ansi.js'
import { debounce, download, el, escapeRegExp, formatClock } from './util.js'

const MAX_LINES = 20000 // kept in memory; older lines are dropped (the status line says so)
const ROW = 20 // px, fixed row height (matches .log-row in app.css)
const MAX_RENDER_CHARS = 4000 // a longer line is cut on screen (downloads keep it whole)
const TAILS = [
  ['100', '100'],
  ['1000', '1 000'],
  ['5000', '5 000'],
  ['all', 'all']
]

export class LogView {
  constructor(panel, { client, container }) {
    this.panel = panel
    this.client = client
    this.container = container
    this.lines = [] // {seq, ts, stream, data, plain?, node?, nodeKey?}
    this.view = [] // lines passing the filters, same order
    this.pending = []
    this.held = [] // arrivals while paused
    this.seq = 0
    this.dropped = 0
    this.follow = true
    this.paused = false
    this.showTs = false
    this.stream = 'all'
    this.query = ''
    this.onlyMatching = true
    this.tail = '100'
    this.rate = 0
    this.rateCount = 0
    this.frame = 0
    this.sub = null
    this.build()
    this.rateTimer = setInterval(() => this.tickRate(), 1000)
    this.subscribe()
  }

  build() {
    const id = s => `logs-${s}`
    this.followBox = el('input', { type: 'checkbox', id: id('follow'), checked: true })
    this.tsBox = el('input', { type: 'checkbox', id: id('ts') })
    this.onlyBox = el('input', { type: 'checkbox', id: id('only'), checked: true })
    this.search = el('input', {
      type: 'search',
      class: 'input',
      id: id('search'),
      placeholder: 'Search',
      'aria-label': 'Search logs'
    })
    this.streamSel = el(
      'select',
      { class: 'input', id: id('stream'), 'aria-label': 'Stream' },
      el('option', { value: 'all', text: 'all streams' }),
      el('option', { value: 'stdout', text: 'stdout' }),
      el('option', { value: 'stderr', text: 'stderr' })
    )
    this.tailSel = el(
      'select',
      { class: 'input', id: id('tail'), 'aria-label': 'Tail (history lines)' },
      ...TAILS.map(([v, label]) => el('option', { value: v, text: `tail ${label}` }))
    )
    this.pauseBtn = el('button', { type: 'button', class: 'btn', 'aria-pressed': 'false', text: 'Pause' })
    this.clearBtn = el('button', { type: 'button', class: 'btn', text: 'Clear' })
    this.downloadBtn = el('button', { type: 'button', class: 'btn', text: 'Download' })
    this.status = el('span', { class: 'muted small log-status', 'aria-live': 'off' })
    this.matches = el('span', { class: 'muted small' })

    const toolbar = el(
      'div',
      { class: 'toolbar', role: 'toolbar', 'aria-label': 'Log controls' },
      el('div', { class: 'group grow' }, this.search, this.matches),
      el('label', { class: 'check', for: id('only') }, this.onlyBox, ' filter'),
      this.streamSel,
      this.tailSel,
      el('label', { class: 'check', for: id('follow') }, this.followBox, ' follow'),
      el('label', { class: 'check', for: id('ts') }, this.tsBox, ' timestamps'),
      this.pauseBtn,
      this.clearBtn,
      this.downloadBtn
    )

    this.sizer = el('div', { class: 'log-sizer' })
    this.rows = el('div', { class: 'log-rows' })
    this.scroller = el(
      'div',
      {
        class: 'log-scroller',
        tabindex: '0',
        role: 'log',
        'aria-live': 'off',
        'aria-label': `Logs of ${this.container.name}`
      },
      this.sizer,
      this.rows
    )
    this.panel.replaceChildren(toolbar, this.scroller, el('div', { class: 'statusbar' }, this.status))

    this.followBox.addEventListener('change', () => {
      this.follow = this.followBox.checked
      if (this.follow) this.scrollToEnd()
    })
    this.tsBox.addEventListener('change', () => {
      this.showTs = this.tsBox.checked
      this.invalidate()
    })
    this.onlyBox.addEventListener('change', () => {
      this.onlyMatching = this.onlyBox.checked
      this.refilter()
    })
    this.streamSel.addEventListener('change', () => {
      this.stream = this.streamSel.value
      this.refilter()
    })
    this.tailSel.addEventListener('change', () => {
      this.tail = this.tailSel.value
      this.subscribe()
    })
    this.search.addEventListener(
      'input',
      debounce(() => {
        this.query = this.search.value
        this.refilter()
      }, 120)
    )
    this.pauseBtn.addEventListener('click', () => this.setPaused(!this.paused))
    this.clearBtn.addEventListener('click', () => this.clear())
    this.downloadBtn.addEventListener('click', () => this.download())
    this.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true })
    this.resizeObserver = new ResizeObserver(() => this.schedule())
    this.resizeObserver.observe(this.scroller)
  }

  subscribe() {
    this.sub?.unsubscribe()
    this.clear()
    const tail = this.tail === 'all' ? 'all' : Number(this.tail)
    this.status.textContent = 'subscribing…'
    this.sub = this.client.subscribeLogs(
      this.container.id,
      { tail, host: this.container.host },
      line => this.push(line),
      err => {
        this.error = err.message
        this.schedule()
      }
    )
  }

  push(line) {
    this.pending.push(line)
    this.rateCount++
    this.schedule()
  }

  schedule() {
    if (!this.frame)
      this.frame = requestAnimationFrame(() => {
        this.frame = 0
        this.render()
      })
  }

  tickRate() {
    this.rate = this.rateCount
    this.rateCount = 0
    this.updateStatus(true)
  }

  setPaused(paused) {
    this.paused = paused
    this.pauseBtn.setAttribute('aria-pressed', String(paused))
    this.pauseBtn.classList.toggle('active', paused)
    if (!paused && this.held.length) {
      this.pending = this.held.concat(this.pending)
      this.held = []
    }
    this.pauseBtn.textContent = paused ? 'Resume' : 'Pause'
    this.schedule()
  }

  clear() {
    this.lines = []
    this.view = []
    this.pending = []
    this.held = []
    this.dropped = 0
    this.error = null
    this.schedule()
  }

  matcher() {
    if (!this.query) return null
    return new RegExp(escapeRegExp(this.query), 'gi')
  }

  passes(line, re) {
    if (this.stream !== 'all' && line.stream !== this.stream) return false
    if (re && this.onlyMatching) {
      re.lastIndex = 0
      return re.test(plainOf(line))
    }
    return true
  }

  refilter() {
    const re = this.matcher()
    this.view = this.lines.filter(l => this.passes(l, re))
    this.invalidate()
  }

  invalidate() {
    this.renderKey = `${this.query}\u0000${this.showTs}`
    this.schedule()
    this.updateStatus(true)
  }

  ingest(batch) {
    const re = this.matcher()
    for (const raw of batch) {
      const line = { seq: ++this.seq, ts: raw.timestamp, stream: raw.stream, data: String(raw.data ?? '') }
      this.lines.push(line)
      if (this.passes(line, re)) this.view.push(line)
    }
    const excess = this.lines.length - MAX_LINES
    if (excess > 0) {
      // Drop in chunks (amortised O(1) per line) rather than one shift per line.
      const cut = excess + Math.floor(MAX_LINES / 10)
      const firstKept = this.lines[cut]?.seq ?? Infinity
      this.lines.splice(0, cut)
      this.dropped += cut
      let i = 0
      while (i < this.view.length && this.view[i].seq < firstKept) i++
      if (i) this.view.splice(0, i)
    }
  }

  render() {
    if (this.pending.length) {
      if (this.paused) {
        this.held.push(...this.pending)
        if (this.held.length > MAX_LINES) this.held.splice(0, this.held.length - MAX_LINES)
      } else {
        this.ingest(this.pending)
      }
      this.pending = []
    }
    const total = this.view.length
    this.sizer.style.height = `${total * ROW}px`
    if (this.follow && !this.paused) this.scrollToEnd()
    const height = this.scroller.clientHeight || 400
    const top = this.scroller.scrollTop
    const first = Math.max(0, Math.floor(top / ROW) - 5)
    const last = Math.min(total, Math.ceil((top + height) / ROW) + 5)
    const re = this.matcher()
    const key = this.renderKey ?? ''
    const fragment = document.createDocumentFragment()
    for (let i = first; i < last; i++) fragment.append(this.rowFor(this.view[i], re, key))
    this.rows.style.transform = `translateY(${first * ROW}px)`
    this.rows.replaceChildren(fragment)
    this.panel.dataset.lines = String(this.lines.length)
    this.updateStatus()
  }

  rowFor(line, re, key) {
    if (line.node && line.nodeKey === key) return line.node
    const row = el('div', { class: `log-row ${line.stream === 'stderr' ? 'err' : 'out'}` })
    if (this.showTs) row.append(el('span', { class: 'log-ts', text: formatClock(line.ts), title: line.ts }))
    row.append(el('span', { class: 'log-stream', text: line.stream === 'stderr' ? 'err' : 'out', title: line.stream }))
    const msg = el('span', { class: 'log-msg' })
    let budget = MAX_RENDER_CHARS
    for (const seg of parseAnsi(line.data)) {
      if (budget <= 0) break
      const text = seg.text.length > budget ? `${seg.text.slice(0, budget)}…` : seg.text
      budget -= seg.text.length
      msg.append(styledSegment(text, seg.style, re))
    }
    row.append(msg)
    line.node = row
    line.nodeKey = key
    return row
  }

  onScroll() {
    if (this.programmaticScroll) {
      this.programmaticScroll = false
      this.schedule()
      return
    }
    const atEnd = this.scroller.scrollTop + this.scroller.clientHeight >= this.scroller.scrollHeight - ROW
    if (atEnd !== this.follow) {
      this.follow = atEnd
      this.followBox.checked = atEnd
    }
    this.schedule()
  }

  scrollToEnd() {
    const target = this.scroller.scrollHeight - this.scroller.clientHeight
    if (Math.abs(this.scroller.scrollTop - target) > 1) {
      this.programmaticScroll = true
      this.scroller.scrollTop = target
    }
  }

  updateStatus(countMatches = false) {
    const parts = [`${this.lines.length.toLocaleString()} lines`]
    if (this.view.length !== this.lines.length) parts.push(`${this.view.length.toLocaleString()} shown`)
    parts.push(`${this.rate.toLocaleString()} lines/s`)
    if (this.dropped) parts.push(`${this.dropped.toLocaleString()} oldest dropped (cap ${MAX_LINES.toLocaleString()})`)
    if (this.paused) parts.push(`paused, ${this.held.length.toLocaleString()} new`)
    if (this.error) parts.push(`error: ${this.error}`)
    this.status.textContent = parts.join(' · ')
    if (!this.query) {
      this.matches.textContent = ''
    } else if (this.onlyMatching) {
      this.matches.textContent = `${this.view.length.toLocaleString()} matching`
    } else if (countMatches) {
      // a full scan: at most once a second
      const re = this.matcher()
      let n = 0
      for (const l of this.view) {
        re.lastIndex = 0
        if (re.test(plainOf(l))) n++
      }
      this.matches.textContent = `${n.toLocaleString()} matching`
    }
  }

  download() {
    const text = this.view.map(l => `${this.showTs ? `${l.ts} ` : ''}${l.stream}\t${plainOf(l)}`).join('\n')
    const stamp = new Date().toISOString().replace(/[:.]/g, '-')
    download(`${this.container.name}-logs-${stamp}.txt`, `${text}\n`)
  }

  destroy() {
    this.sub?.unsubscribe()
    this.sub = null
    clearInterval(this.rateTimer)
    if (this.frame) cancelAnimationFrame(this.frame)
    this.resizeObserver.disconnect()
    this.panel.replaceChildren()
  }
}

function plainOf(line) {
  if (line.plain === undefined) line.plain = stripAnsi(line.data)
  return line.plain
}

/** One ANSI segment as a span; search matches inside it become <mark> (text only). */
function styledSegment(text, style, re) {
  const span = document.createElement('span')
  if (style.fg || style.bg) {
    const fg = style.inverse ? style.bg : style.fg
    const bg = style.inverse ? style.fg || '#d7dae0' : style.bg
    if (fg) span.style.color = fg
    if (bg) span.style.backgroundColor = bg
  } else if (style.inverse) {
    span.classList.add('ansi-inverse')
  }
  if (style.bold) span.classList.add('ansi-bold')
  if (style.dim) span.classList.add('ansi-dim')
  if (style.italic) span.classList.add('ansi-italic')
  if (style.underline) span.classList.add('ansi-underline')
  if (style.strike) span.classList.add('ansi-strike')
  if (!re) {
    span.textContent = text
    return span
  }
  re.lastIndex = 0
  let last = 0
  let m
  // biome-ignore lint/suspicious/noAssignInExpressions: the usual exec loop
  while ((m = re.exec(text)) !== null) {
    if (m[0] === '') {
      re.lastIndex++
      continue
    }
    if (m.index > last) span.append(document.createTextNode(text.slice(last, m.index)))
    const mark = document.createElement('mark')
    mark.textContent = m[0]
    span.append(mark)
    last = m.index + m[0].length
  }
  if (last < text.length) span.append(document.createTextNode(text.slice(last)))
  return span
}
